"""One export end to end on the launcher: Beam options, planning, the graph, running it, cleaning up."""
