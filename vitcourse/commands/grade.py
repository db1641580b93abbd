"""vitcourse grade: collect, autograde and give feedback for one assignment; re-run it after any crash."""
HELP = "Collect, back up, autograde and give feedback for an assignment; a re-run redoes only unfinished students."

from pathlib import Path

from vitcourse.course import lifecycle, permissions, release


def course_folder(path) -> Path:
    """--course, else the folder it runs in when that is a course (has nbgrader_config.py), else course/."""
    if path:
        return Path(path)
    return Path.cwd() if (Path.cwd() / "nbgrader_config.py").is_file() else release.COURSE_DIR


def add_arguments(parser):
    parser.add_argument("assignment", help="assignment id, e.g. a2_transformer")
    parser.add_argument("--course", type=Path, default=None,
                        help="the nbgrader course folder (default: this folder if it has nbgrader_config.py, else course/)")
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
    course = course_folder(args.course)
    try:
        permissions.guard(course, f"grade {args.assignment}", args.allow_open_files)
        if args.feedback_only:
            lifecycle.generate_feedback(course, args.assignment, args.student, force=args.force)
        else:
            lifecycle.autograde(course, args.assignment, args.student, jobs=args.jobs, force=args.force,
                                collect=not args.no_collect)
    except permissions.OpenToOthers as err:
        print(err)
        return 1
    except (lifecycle.LifecycleError, release.ReleaseError) as err:
        print(f"vitcourse grade {args.assignment}: {err}")
        return 1
    return 0
