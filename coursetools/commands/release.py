"""vitcourse release: build the notebooks, generate the student release with nbgrader, check for leaks."""
HELP = "Build course/source notebooks, run nbgrader generate_assignment, add stubs + library + zip, refuse leaks."

from coursecore import course_root

from coursetools import nbbuild, permissions, release


def add_arguments(parser):
    parser.add_argument("assignments", nargs="*", help="assignments to release (default: all)")
    course_root.add_argument(parser)
    parser.add_argument("--build-only", action="store_true",
                        help="only rebuild course/source/<a>/<a>.ipynb from course/notebooks/<a>.py")
    parser.add_argument("--check", action="store_true",
                        help="fail if a committed source notebook differs from a fresh build (CI); releases nothing")
    parser.add_argument("--no-zip", action="store_true", help="skip the per-assignment zip for Colab/Drive")
    permissions.add_argument(parser)


def run(args) -> int:
    try:
        course = course_root.resolve(args.course)
    except course_root.CourseNotFound as err:
        print(f"vitcourse release: {err}")
        return 2
    if args.check:
        problems = nbbuild.build(check=True)
        print("\n".join(problems) or f"{course.source} notebooks are up to date with {course.notebooks}")
        return 1 if problems else 0
    nbbuild.build()
    print(f"built {len(nbbuild.assignments())} source notebooks from {course.notebooks}")
    if args.build_only:
        return 0
    try:
        permissions.guard(course.course, "release", args.allow_open_files, names=("source", "../solutions"))
    except permissions.OpenToOthers as err:
        print(err)
        return 1
    try:
        folders = release.release(course.course, args.assignments or None, zip_=not args.no_zip)
    except release.ReleaseError as err:
        print(f"release failed: {err}")
        return 1
    print(f"release ready: {len(folders)} assignment(s) in {course.course / 'release'}; publish that folder (not course/)")
    return 0
