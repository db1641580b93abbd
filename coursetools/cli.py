"""`vitcourse` command line: one sub-command per module in `coursetools.commands`.

Each module `coursetools/commands/<name>.py` defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`. Modules are imported only when their command runs, so `vitcourse --help` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import coursetools.commands as commands


def _command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def _help_line(name: str) -> str:
    # Read HELP without importing heavy dependencies: it is the first assignment of the module.
    module_file = importlib.util.find_spec(f"coursetools.commands.{name}").origin
    for line in open(module_file, encoding="utf-8"):
        if line.startswith("HELP = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="vitcourse", description="Vision Transformer course tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = _command_names()
    for name in names:
        sub.add_parser(name, help=_help_line(name), add_help=False)
    if not argv or argv[0] not in names:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"coursetools.commands.{name}")
    cmd_parser = argparse.ArgumentParser(prog=f"vitcourse {name}", description=module.HELP)
    module.add_arguments(cmd_parser)
    return int(module.run(cmd_parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())
