"""krux-export: the Beam pipeline, its command line and its jobs."""
