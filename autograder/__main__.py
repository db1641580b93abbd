"""Command line: `python -m autograder grade SUBMISSION_DIR [--assignment A]` (TAs). Students check their own work with
`python -m vitcourse check` (vitcourse/__main__.py): the grader is not theirs.

Exit status of `grade`: 0 whenever grading completed, whatever the score; 2 when the grader itself could
not run (missing folder, no reference, sandbox failure), with the reason on stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coursecore.parts import ASSIGNMENT_PARTS, POINTS, parts_for

EXIT_OK, EXIT_GRADER_FAILED = 0, 2


def _use_course_reference(course) -> None:
    """Grade against the reference of `--course`, else of the course around the current folder, else the package's.

    `VITCOURSE_SOLUTIONS` (a grading machine) wins over both. A course found upward without `solutions/` (a
    scratch nbgrader course) keeps the reference already in use. Raises CourseNotFound for a wrong --course.
    """
    from coursecore import course_root, settings

    if settings.SOLUTIONS.is_set():
        return
    if course is not None:
        course_root.activate(course_root.find(course))
        return
    try:
        found = course_root.find()
    except course_root.CourseNotFound:
        return
    if found.solutions.is_dir():
        course_root.activate(found)


def _grade(args) -> int:
    from autograder import grader, sandbox
    from coursecore.course_root import CourseNotFound

    try:
        _use_course_reference(args.course)
    except CourseNotFound as err:
        print(f"autograder: {err}", file=sys.stderr)
        return EXIT_GRADER_FAILED
    limits = sandbox.Limits()
    if args.part_timeout:
        limits.part_timeout = args.part_timeout
    if args.total_timeout:
        limits.total_timeout = args.total_timeout
    if args.assignment:
        from autograder import datacheck

        if args.assignment in datacheck.DATA_ASSIGNMENTS:
            try:
                datacheck.check_submissions([Path(args.submission)])
            except datacheck.DataCheckError as err:
                print(f"autograder: {err}", file=sys.stderr)
                return EXIT_GRADER_FAILED
    try:
        hide = (Path(args.json).resolve().parent,) if args.json else ()
        report = grader.grade(args.submission, only=args.only or None, limits=limits,
                              use_namespaces=not args.no_namespaces, hide=hide, assignment=args.assignment)
    except (FileNotFoundError, KeyError, sandbox.SandboxError, OSError) as err:
        print(f"autograder: could not grade {args.submission}: {err}", file=sys.stderr)
        return EXIT_GRADER_FAILED
    print(report.table())
    if args.json:
        report.write_json(args.json, args.visibility)
        print(f"\nwrote {args.json}")
    return EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="grade a submission folder (transformer.py + ViT.py) against the reference")
    grade.add_argument("submission", help="folder holding the student's transformer.py and ViT.py")
    grade.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json here")
    grade.add_argument("--assignment", choices=list(ASSIGNMENT_PARTS),
                       help="grade only this assignment's parts, out of its own maximum (default: every part)")
    grade.add_argument("--only", action="append", choices=list(POINTS), metavar="PART",
                       help=f"grade only this part (repeatable); parts: {', '.join(POINTS)}")
    grade.add_argument("--visibility", default="visible", choices=["visible", "hidden", "after_due_date",
                                                                   "after_published"],
                       help="Gradescope visibility of the results (default: visible)")
    grade.add_argument("--part-timeout", type=float, help="wall-clock seconds per part (default 20)")
    grade.add_argument("--total-timeout", type=float, help="wall-clock seconds per submission (default 240)")
    grade.add_argument("--course", type=Path, default=None,
                       help="the course whose solutions/ is the reference (default: the nearest one upward from "
                            "here that has solutions/, else the installed package's)")
    grade.add_argument("--no-namespaces", action="store_true",
                       help="do not use Linux namespaces (weaker isolation; for debugging the grader)")
    grade.set_defaults(func=_grade)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
