"""vitcourse similarity: rank the class's pairs of students by the code they share, part by part."""
HELP = "Write an HTML report of the pairs of students whose graded code is most alike (stub excluded; copydetect)."

from pathlib import Path

from coursecore import course_root, impl
from coursecore.parts import ASSIGNMENT_PARTS
from coursetools.commands.grade import course_folder


def add_arguments(parser):
    parser.add_argument("assignment", choices=list(ASSIGNMENT_PARTS), help="an assignment with graded code")
    course_root.add_argument(parser)
    parser.add_argument("--from", dest="source", default="submitted", choices=["submitted", "autograded"],
                        help="nbgrader folder the students' modules are read from (default: submitted)")
    parser.add_argument("--out", type=Path,
                        help="the report (default: similarity/<assignment>.html in the course folder)")
    parser.add_argument("--top", type=int, default=30, help="pairs shown side by side (the table lists all)")


def run(args) -> int:
    from coursetools import similarity

    try:
        course = course_folder(args.course)
    except course_root.CourseNotFound as err:
        print(f"vitcourse similarity: {err}")
        return 1
    folders = similarity.student_folders(course, args.assignment, args.source)
    if len(folders) < 2:
        print(f"vitcourse similarity: {course / args.source} holds {len(folders)} submission(s) of "
              f"{args.assignment}; run `vitcourse grade {args.assignment}` (or nbgrader collect) first")
        return 1
    # The released stubs of this course are what every student was given: excluded from the comparison.
    pairs = similarity.compare(folders, args.assignment, impl.stubs_dir())
    out = similarity.write_report(pairs, args.assignment, args.out or course / "similarity" / f"{args.assignment}.html",
                                  len(folders), args.top)
    print(f"compared {len(folders)} submissions of {args.assignment}; report: {out}")
    for rank, pair in enumerate(pairs[:5], 1):
        print(f"  {rank}. {pair.a} - {pair.b}: {pair.score:.0%} of one side's own code found in the other's")
    return 0
