"""vitcourse demo: the course's whole life, offline, in a scratch folder."""
HELP = "Train the reference ViT on digits, then release, hand in, autograde, feed back and export a simulated class."

import shutil
import sys
import tempfile
import time
from pathlib import Path

from coursecore import course_root

from coursetools import term, release


def add_arguments(parser):
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for the simulated course (default: a new temporary folder, kept for inspection)")
    parser.add_argument("--assignments", nargs="+", default=None,
                        help="assignments to run (default: all of the course's course/source)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the reference training on digits (default: the course recipe)")
    parser.add_argument("--jobs", type=int, default=2, help="students autograded in parallel (2 cores: 2)")
    parser.add_argument("--seed", type=int, default=0)
    course_root.add_argument(parser)


def run(args) -> int:
    start = time.perf_counter()
    try:
        course_root.resolve(args.course)  # the demo copies this course's notebooks, reference and library
    except course_root.CourseNotFound as err:
        print(f"vitcourse demo: {err}", file=sys.stderr)
        return 2
    known = release.source_assignments()
    unknown = sorted(set(args.assignments or []) - set(known))
    if unknown:
        print(f"unknown assignment(s) {unknown}: choose among {' '.join(known)}", file=sys.stderr)
        return 2
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="vitcourse-demo-"))
    if scratch.exists() and any(scratch.iterdir()):
        if not (scratch / "course" / "nbgrader_config.py").is_file():
            print(f"{scratch} is not empty and is not a previous demo's folder: choose an empty or new --scratch "
                  "folder (the demo replaces its contents)", file=sys.stderr)
            return 2
        shutil.rmtree(scratch)  # a previous demo's folder: the demo owns it
    scratch.mkdir(parents=True, exist_ok=True)
    names = args.assignments or known
    print("== 1. the reference ViT, trained on the embedded digits (what a good student hands in for a3)")
    ckpt = term.train_reference_checkpoint(scratch / "reference" / term.VIT_CHECKPOINT, args.epochs, args.seed)
    extra = {a: {term.VIT_CHECKPOINT: ckpt["path"]} for a in term.grades_checkpoint(names)}
    print(f"\n== 2. release, a class of {len(term.STUDENTS)} hands in, TA collects, autogrades, feeds back, exports")
    result = term.run_term(scratch, names, jobs=args.jobs, extra_files=extra)
    print("\n== 3. the class's grades (autograded points / max; +N TA: written answers awaiting a TA)\n")
    print(result.table())
    print(f"\nfeedback for the students: {result.course_dir / 'feedback'}/<student>/<assignment>/<assignment>.html")
    print(f"grades CSV:               {result.grades_csv}")
    print(f"gradebook backups:        {', '.join(str(b) for b in result.backups if b)}")
    print(f"student release (zips):   {result.course_dir / 'release'}")
    problems = result.mismatches()
    print(f"\n{len(result.students)} students x {len(names)} assignments in {time.perf_counter() - start:.0f} s; "
          + ("every score as expected" if not problems else f"{len(problems)} UNEXPECTED score(s):"))
    for line in problems:
        print("  " + line, file=sys.stderr)
    return 0 if not problems else 1
