"""Cost of scoring every grade cell outside the kernel (issue 10, items 3 and 4), side by side in one run.

Two scratch courses with the same class (reference answers) of one assignment, graded by the real
`nbgrader autograde` and `generate_feedback`:

* before: the pipeline of the previous release: only grade_part cells regraded (answer cells keep the
  kernel's verdict), only transformer.py / ViT.py snapshotted, nothing restored, no feedback scrub;
* after: `configure()`'s pipeline: every grade cell regraded, the whole folder snapshotted and restored,
  outputs scrubbed of hidden lines before the feedback HTML.

    python benchmarks/bench_regrade.py [--assignment a5_analysis] [--students 4]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import header  # noqa: F401 - also puts the repository on sys.path

from coursetools import grading, term, release

BEFORE_CONFIG = f'''
# ---- bench_regrade.py: the pipeline before issue 10 items 3 and 4 ----
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from _before_pipeline import PartsOnly, SnapshotCodeOnly
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern, LimitOutput, SaveAutoGrades
c.Autograde.autograde_preprocessors = [SnapshotCodeOnly, Execute, PartsOnly, IgnorePattern, ClearMetadataPreprocessor,
                                       LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.GenerateFeedback.preprocessors = ["nbgrader.preprocessors.GetGrades", "coursetools.feedback.HideHiddenTests",
                                    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]
'''


def grade_class(scratch: Path, assignment: str, students: int, before: bool) -> tuple[float, float, dict]:
    course = term.make_course(scratch, [assignment])
    if before:
        with (course / "nbgrader_config.py").open("a") as f:
            f.write(BEFORE_CONFIG)
    release.release(course, zip_=False, log=lambda _: None)
    for i in range(students):
        student = term.Student(f"s{i}", "reference answers")
        term.make_submission(student, assignment, course, scratch / "work")
        shutil.copytree(scratch / "work" / student.id / assignment, course / "submitted" / student.id / assignment)
    start = time.perf_counter()
    release.nbgrader(course, "autograde", assignment, "--force")
    graded = time.perf_counter() - start
    start = time.perf_counter()
    release.nbgrader(course, "generate_feedback", assignment, "--force")
    return graded / students, (time.perf_counter() - start) / students, grading.read_scores(course, assignment)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assignment", default="a5_analysis")
    ap.add_argument("--students", type=int, default=4)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, before in (("before", True), ("after", False), ("before (again)", True), ("after (again)", False)):
            auto, fb, scores = grade_class(Path(tmp) / label.replace(" ", "_"), args.assignment, args.students, before)
            rows.append((label, auto, fb, sorted({s["score"] for s in scores.values()})))
            print(f"{label:16s} autograde {auto:6.1f} s/notebook   generate_feedback {fb:5.2f} s/notebook   scores {rows[-1][3]}",
                  flush=True)


if __name__ == "__main__":
    main()
