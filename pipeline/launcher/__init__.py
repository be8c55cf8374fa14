"""One export end to end on the launcher: Beam options, the graph, running it, publishing."""
