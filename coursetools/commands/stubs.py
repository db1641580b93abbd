"""vitcourse stubs: generate student_src/ from solutions/."""
HELP = "Write student_src/*.py from solutions/*.py (or --check that they are in sync)."

from pathlib import Path

from coursecore import course_root
from coursetools.stubs import generate, todos


def add_arguments(parser):
    parser.add_argument("--check", action="store_true", help="fail if student_src/ differs from a fresh generation")
    course_root.add_argument(parser)
    parser.add_argument("--src", type=Path, default=None, help="folder with the solution files (default: the course's solutions/)")
    parser.add_argument("--dst", type=Path, default=None, help="folder to write the stubs to (default: the course's student_src/)")


def run(args) -> int:
    if args.src is None or args.dst is None:
        try:
            course = course_root.resolve(args.course)
        except course_root.CourseNotFound as err:
            print(f"vitcourse stubs: {err}")
            return 2
        args.src, args.dst = args.src or course.solutions, args.dst or course.student_src
    problems = generate(args.src, args.dst, check=args.check)
    if problems:
        print("\n".join(problems))
        return 1
    parts = todos(args.src)
    verb = "are in sync" if args.check else "written"
    print(f"{args.dst}: {len(parts)} student-owed parts {verb}: " + ", ".join(t.name for t in parts))
    return 0
