"""The command line: one module per subcommand; errors become exit codes here and nowhere else."""
