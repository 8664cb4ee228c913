"""The command line: ``python -m generator [SUBCOMMAND] ...`` (see :mod:`generator.cli.main`)."""
