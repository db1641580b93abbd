"""vitcourse answers_pdf: the written answers of a class (or one notebook) as PDFs for Gradescope's manual grading."""
HELP = "One PDF per student, each written answer on its own page with its figures, and Gradescope's outline.json."

from pathlib import Path

from coursecore import course_root
from coursetools.commands.grade import course_folder


def add_arguments(parser):
    parser.add_argument("assignment", help="assignment id, e.g. a5_analysis")
    course_root.add_argument(parser)
    parser.add_argument("--student", action="append", default=None, metavar="ID",
                        help="only this student (repeatable); default: everyone in submitted/")
    parser.add_argument("--notebook", type=Path, help="one notebook file instead of the class (named by --student)")
    parser.add_argument("--from", dest="source", default="submitted", choices=["submitted", "autograded"],
                        help="nbgrader folder the notebooks are read from (default: submitted, the student's outputs)")
    parser.add_argument("--out", type=Path, help="folder for the PDFs (default: answers/<assignment>/ in the course)")


def run(args) -> int:
    from coursetools import answers_pdf

    try:
        course = course_folder(args.course)
    except course_root.CourseNotFound as err:
        print(f"vitcourse answers_pdf: {err}")
        return 1
    if args.notebook:
        notebooks = {(args.student or [args.notebook.stem])[0]: args.notebook}
    else:
        notebooks = answers_pdf.class_notebooks(course, args.assignment, args.source, args.student)
    if not notebooks:
        print(f"vitcourse answers_pdf: no {args.assignment}.ipynb under {course / args.source}/<student>/"
              f"{args.assignment}/; collect the submissions first (vitcourse grade {args.assignment}) or pass --notebook")
        return 1
    out = args.out or course / "answers" / args.assignment
    try:
        pages = answers_pdf.build(course, args.assignment, notebooks, out)
    except (FileNotFoundError, ValueError) as err:
        print(f"vitcourse answers_pdf: {err}")
        return 1
    longer = sorted(s for s, qs in pages.items() if any(first != last for first, last in qs.values()))
    print(f"wrote {len(pages)} PDF(s) and outline.json to {out}")
    if longer:
        print(f"answers running over one page (their pages differ from outline.json; see pages.json): {', '.join(longer)}")
    return 0
