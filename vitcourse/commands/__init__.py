"""Sub-commands of the `vitcourse` CLI, one module each (see vitcourse/cli.py)."""
