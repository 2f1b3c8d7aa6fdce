"""`guardstream` subcommands that belong to the evaluators room (train, check-data); the ones that read the
proxy's config file (eval, finetune, promote) are in proxy/commands/."""
