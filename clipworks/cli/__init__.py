"""The `clipworks` command line: one subcommand per module, an action per subcommand, flags per action.

An entry point, like `clipworks.demo` and `clipworks.experiments`: it may import anything, applications
included, but imports them inside the command that needs them so `clipworks --help` stays fast. Nothing in the
core or an application imports it."""
