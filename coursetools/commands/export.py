"""vitcourse export: grades.csv of the course, refused while any submission is not completely autograded."""
HELP = "Write grades.csv (nbgrader export, atomic); refuses while a submission is not completely autograded."

from pathlib import Path

from coursecore import course_root
from coursetools import grading, permissions, release
from coursetools.commands.grade import course_folder


def add_arguments(parser):
    course_root.add_argument(parser)
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="export anyway; students whose autograde did not finish appear with 0 points")
    permissions.add_argument(parser)


def run(args) -> int:
    try:
        course = course_folder(args.course)
    except course_root.CourseNotFound as err:
        print(f"vitcourse export: {err}")
        return 1
    try:
        permissions.guard(course, "export", args.allow_open_files)
    except permissions.OpenToOthers as err:
        print(err)
        return 1
    try:
        out = grading.export_grades(course, allow_incomplete=args.allow_incomplete)
    except (grading.LifecycleError, release.ReleaseError) as err:
        print(f"vitcourse export: {err}")
        return 1
    print(f"grades written to {out}")
    return 0
