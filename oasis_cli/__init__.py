"""The `oasis` command: one entry point over the project's own command modules (see oasis_cli.main)."""
