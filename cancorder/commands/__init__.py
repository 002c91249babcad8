"""One module per subcommand: ``add_subparser(subparsers, common)`` and ``_do_<name>(args)``."""
