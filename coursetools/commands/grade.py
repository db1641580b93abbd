"""vitcourse grade: collect, autograde and give feedback for one assignment; re-run it after any crash."""
HELP = "Collect, back up, autograde and give feedback for an assignment; a re-run redoes only unfinished students."

from pathlib import Path

from coursecore import course_root
from coursetools import grading, permissions, release


def course_folder(path) -> Path:
    """The nbgrader course folder of the course `course_root` resolves (--course, else upward from here)."""
    return course_root.resolve(path).course


def add_arguments(parser):
    parser.add_argument("assignment", help="assignment id, e.g. a2_transformer")
    course_root.add_argument(parser)
    parser.add_argument("--student", action="append", default=None, metavar="ID",
                        help="only this student (repeatable); default: everyone in submitted/")
    parser.add_argument("--jobs", type=int, default=1,
                        help="nbgrader processes side by side, each over a slice of the class (one per core)")
    parser.add_argument("--force", action="store_true",
                        help="autograde and give feedback again to every chosen student, finished or not "
                             "(manual grades and their graded state are kept)")
    parser.add_argument("--feedback-only", action="store_true",
                        help="only (re)generate feedback, e.g. after manual grading (with --force: for everyone)")
    parser.add_argument("--no-collect", action="store_true",
                        help="do not run nbgrader zip_collect on downloaded/<assignment>/archive/ first")
    permissions.add_argument(parser)


def run(args) -> int:
    try:
        course = course_folder(args.course)
    except course_root.CourseNotFound as err:
        print(f"vitcourse grade: {err}")
        return 1
    try:
        permissions.guard(course, f"grade {args.assignment}", args.allow_open_files)
        if args.feedback_only:
            grading.generate_feedback(course, args.assignment, args.student, force=args.force)
        else:
            grading.autograde(course, args.assignment, args.student, jobs=args.jobs, force=args.force,
                                collect=not args.no_collect)
    except permissions.OpenToOthers as err:
        print(err)
        return 1
    except (grading.LifecycleError, release.ReleaseError) as err:
        print(f"vitcourse grade {args.assignment}: {err}")
        return 1
    return 0
