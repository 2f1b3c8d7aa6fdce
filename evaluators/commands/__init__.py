"""`guardstream` subcommands that belong to the evaluators room (eval, train, check-data)."""
