"""Sub-commands of the `vitcourse` CLI, one module each (see coursetools/cli.py)."""
