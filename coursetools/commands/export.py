"""vitcourse export: grades.csv of the course, or the LMS's grade-import file; refused while grading is unfinished."""
HELP = ("Write grades.csv (nbgrader export, atomic), or with --lms the LMS's import file from its roster; "
        "refuses while a submission is not completely graded.")

from pathlib import Path

from coursecore import course_root
from coursetools import grading, lms, permissions, release
from coursetools.commands.grade import course_folder


def add_arguments(parser):
    course_root.add_argument(parser)
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="export anyway; students whose autograde did not finish appear with 0 points "
                             "(with --lms: also answers still waiting for a TA's grade count 0)")
    parser.add_argument("--lms", choices=lms.LMSES, default=None,
                        help="write that LMS's grade-import CSV instead of grades.csv (needs --roster)")
    parser.add_argument("--roster", type=Path, default=None, metavar="CSV",
                        help="the roster the LMS exported (Canvas: the gradebook export; Moodle: the gradebook's "
                             "plain-text export or a grading worksheet); read only, never overwritten")
    parser.add_argument("--out", type=Path, default=None, metavar="CSV",
                        help="where the import file goes (default: grades-<lms>.csv in the course folder)")
    parser.add_argument("--assignment", action="append", default=None, metavar="A",
                        help="only this assignment's column (repeatable); default: every assignment in the gradebook")
    parser.add_argument("--allow-unmatched", action="store_true",
                        help="write the import file although graded students are missing from the roster "
                             "(they are listed, and their grades are not in the file)")
    permissions.add_argument(parser)


def _export_lms(course: Path, args) -> Path:
    """The LMS file; raises LifecycleError / RosterError with what is wrong and what to do."""
    if args.roster is None:
        raise lms.RosterError(f"--lms {args.lms} needs --roster: the CSV the LMS exports (see docs/grading.md)")
    missing = grading.incomplete_grading(course)
    if missing and not args.allow_incomplete:
        raise grading.LifecycleError("not exporting: these submissions are not completely autograded and would be "
                                     "exported as 0 — run `vitcourse grade <assignment>` first:\n" + "\n".join(
                                         f"  {a}/{s}: {why}" for a, by in missing.items() for s, why in by.items()))
    roster = lms.read_roster(args.roster, args.lms)
    grades = lms.read_grades(course, args.assignment)
    if grades.needs_manual and not args.allow_incomplete:
        raise grading.LifecycleError(
            "not exporting: written answers still need a TA's grade (they would count 0) — grade them in the "
            "formgrader, or pass --allow-incomplete:\n" + "\n".join(
                f"  {a}: {', '.join(sorted(s))}" for a, s in sorted(grades.needs_manual.items())))
    not_in_roster, _ = lms.match(roster, grades)
    if not_in_roster and not args.allow_unmatched:
        raise lms.RosterError(
            f"not exporting: {len(not_in_roster)} graded student(s) have no row in the roster {args.roster}, so "
            f"their grades would be lost: {', '.join(not_in_roster)}. Export the roster again from the LMS (with "
            "inactive and concluded enrollments shown), or pass --allow-unmatched to write the file without them.")
    written = lms.write_lms_file(roster, grades, args.out or course / f"grades-{args.lms}.csv")
    print(f"{args.lms} grades for {', '.join(written.assignments)} written to {written.path} "
          f"({len(roster.rows)} roster rows)")
    if written.not_in_roster:
        print(f"NOT in the file (graded, no roster row): {', '.join(written.not_in_roster)}")
    if written.nothing_graded:
        names = [f"{roster.name(roster.ids.index(s))} ({s})" for s in written.nothing_graded]
        print(f"left blank (nothing graded for them): {'; '.join(names)}")
    return written.path


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
        if args.lms:
            _export_lms(course, args)
            return 0
        out = grading.export_grades(course, allow_incomplete=args.allow_incomplete)
    except (grading.LifecycleError, release.ReleaseError, lms.RosterError) as err:
        print(f"vitcourse export: {err}")
        return 1
    print(f"grades written to {out}")
    return 0
