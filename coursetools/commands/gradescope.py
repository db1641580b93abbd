"""vitcourse gradescope: write Gradescope's autograder.zip for one assignment."""
HELP = "Write DIR/autograder.zip: Gradescope's setup.sh + run_autograder for one assignment (docs/gradescope.md)."

from pathlib import Path

from coursecore.parts import ASSIGNMENT_PARTS
from coursecore import course_root


def add_arguments(parser):
    parser.add_argument("--assignment", choices=list(ASSIGNMENT_PARTS),
                        help="grade this assignment's parts, out of its own maximum (default: every part)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write autograder.zip to")
    parser.add_argument("--data-root", type=Path,
                        help="CIFAR python-layout folder: its test split goes into the bundle (a3_vit grades "
                             "a checkpoint's accuracy on it)")
    parser.add_argument("--visibility", default="visible", choices=["visible", "hidden", "after_due_date",
                                                                   "after_published"],
                        help="Gradescope visibility of the results (default: visible)")
    course_root.add_argument(parser)


def run(args) -> int:
    from coursetools.gradescope import build

    try:
        course = course_root.resolve(args.course)  # the bundle carries this course's reference and library
        bundle = build(args.out, args.assignment, args.data_root, args.visibility, repo=course.root)
    except (course_root.CourseNotFound, FileNotFoundError) as err:
        print(f"vitcourse gradescope: {err}")
        return 2
    for warning in bundle.warnings:
        print(f"warning: {warning}")
    print(f"wrote {bundle.path} ({bundle.size / 1e6:.2f} MB, {len(bundle.members)} files) for "
          f"{args.assignment or 'every part'}: upload it on Gradescope (Configure Autograder → Zip file upload)")
    return 0
