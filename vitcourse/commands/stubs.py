"""vitcourse stubs: generate student_src/ from solutions/."""
HELP = "Write student_src/*.py from solutions/*.py (or --check that they are in sync)."

from pathlib import Path

from vitcourse.impl import REPO_ROOT
from vitcourse.stubs import generate, todos


def add_arguments(parser):
    parser.add_argument("--check", action="store_true", help="fail if student_src/ differs from a fresh generation")
    parser.add_argument("--src", type=Path, default=REPO_ROOT / "solutions", help="folder with the solution files")
    parser.add_argument("--dst", type=Path, default=REPO_ROOT / "student_src", help="folder to write the stubs to")


def run(args) -> int:
    problems = generate(args.src, args.dst, check=args.check)
    if problems:
        print("\n".join(problems))
        return 1
    parts = todos(args.src)
    verb = "are in sync" if args.check else "written"
    print(f"{args.dst}: {len(parts)} student-owed parts {verb}: " + ", ".join(t.name for t in parts))
    return 0
