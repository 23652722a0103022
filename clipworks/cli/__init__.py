"""The `clipworks` command line: one subcommand per module."""
