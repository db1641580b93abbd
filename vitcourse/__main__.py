"""`python -m vitcourse check [FOLDER] [--assignment A]`: the student's self-check, in a terminal.

Which parts of my transformer.py / ViT.py / finetune.py / cnn.py look done? It runs the public checks of every part
(vitcourse/course/selfcheck.py): no hidden reference, so it works in the release folder a student has.
"""
from __future__ import annotations

import argparse
import sys

from coursecore.parts import ASSIGNMENT_PARTS, parts_for


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="which parts of your files look done (public checks, no hidden reference)")
    check.add_argument("folder", nargs="?", default=".", help="the folder holding your .py files (default: here)")
    check.add_argument("--assignment", choices=list(ASSIGNMENT_PARTS),
                       help="check only this assignment's parts (default: every part of your files)")
    args = parser.parse_args(argv)
    from vitcourse.course import selfcheck

    print(selfcheck.format_results(selfcheck.check_all(args.folder, parts_for(args.assignment) if args.assignment else None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
