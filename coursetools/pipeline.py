"""The course's nbgrader pipeline, assembled in one place.

`course/nbgrader_config.py` is five lines: it calls `configure(c, course_dir)`. Everything nbgrader does for
this course is set here, in the order nbgrader runs it; `summary(c)` renders the effective configuration as the
table of docs/grading.md, and tests/test_pipeline.py loads the real config file and compares the two.

The steps themselves live with what they concern: the sandboxed kernel and the regrade outside it in
`autograder/` (kernel_sandbox, nbgrader_plugin), the TA's side (progress, regrade, overwrite, collect,
permissions, export, feedback, release) in `coursetools/`.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from coursecore.registry import STUDENT_FILES

CELL_TIMEOUT_S = 300  # one notebook cell on a busy CPU grader; fast mode keeps training cells to seconds
# Files a student hands in (zip of the assignment folder): the notebook, their code, checkpoint, metrics.
SUBMISSION_FILE_RE = "|".join([r"[^/]+\.ipynb", *(re.escape(f) for f in STUDENT_FILES), r"[^/]+\.pt", r"metrics\.json"])
# Build artefacts and caches never go into a release or a submission; nor do the student's copies of the course
# library (a folder handed in through the exchange holds them: in the grading kernel they would shadow the
# grader's, and the hidden cells' `autograder.nb` is not in the student edition) or training checkpoints.
IGNORED = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store", "*.bak",
           "coursecore", "vitcourse", "data_utils", "autograder", "runs"]


def assignments(course_dir: Path) -> list[str]:
    """Every assignment of source/, so that exclude_overwriting covers a new one as soon as it exists."""
    source = Path(course_dir) / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else []


def autograde_steps() -> list:
    """Autograde.autograde_preprocessors, in order (autograder/nbgrader_plugin.py says what each one does)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import CheckCellMetadata, IgnorePattern, LimitOutput

    from autograder.nbgrader_plugin import (RegradeHiddenCells, ResilientExecute, RestoreHandedInFiles,
                                            SnapshotSubmission)
    from coursetools.lateness import CourseLatePenalties
    from coursetools.regrade import KeepManualGrades

    # KeepManualGrades is nbgrader's SaveAutoGrades keeping what a TA graded by hand (coursetools/regrade.py);
    # CourseLatePenalties is AssignLatePenalties with the due date and policy of deadlines.toml (lateness.py).
    return [SnapshotSubmission, ResilientExecute, RegradeHiddenCells, RestoreHandedInFiles, IgnorePattern,
            ClearMetadataPreprocessor, LimitOutput, KeepManualGrades, CourseLatePenalties, CheckCellMetadata]


# nbgrader's sanitize steps, with OverwriteCells replaced by coursetools/overwrite.py's subclass: a deleted setup
# cell (or any read-only or test cell) comes back in place instead of crashing with KeyError.
SANITIZE_STEPS = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "coursetools.overwrite.RestoringOverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
FEEDBACK_STEPS = [
    "nbgrader.preprocessors.GetGrades",
    "coursetools.feedback.HideHiddenTests",
    # Lines of hidden tests or mark schemes a student cell copied into an output (an IPython hook can).
    "coursetools.feedback.ScrubHiddenText",
    # When it was due, when it came and what the late policy took (coursetools/lateness.py).
    "coursetools.lateness.ExplainLateness",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]


def configure(c, course_dir: str | os.PathLike, *, argv=None) -> None:
    """Set everything nbgrader needs for this course in `c` (course/nbgrader_config.py's `get_config()`).

    Before `nbgrader autograde` of a notebook that needs CIFAR or a kernel, it checks once that the data and a
    sandboxed kernel are there and exits with one sentence when not (else every student would get 0).
    """
    from autograder import datacheck, kernel_sandbox
    from coursetools import progress, release
    from vitcourse.course.colab import COURSE_ID

    course_dir = Path(course_dir).resolve()
    root = str(course_dir)
    names = assignments(course_dir)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.root = root
    c.CourseDirectory.ignore = list(IGNORED)

    # ---- generate_assignment: what a student gets instead of a solution ----------------------------------
    # A comment, not a `raise`: Colab, VS Code and Positron ignore the raises-exception tag, and a raising stub
    # would stop Run All at the first answer cell. Every answer cell gives its names a placeholder above the
    # region (`BLOCK_PARAMS = None`, enforced by coursetools/nbbuild.py) and its check says "not implemented yet".
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.ClearSolutions.enforce_metadata = True
    # Every Generate (`vitcourse release`, the formgrader's button, plain `nbgrader generate_assignment`) leaves
    # a complete release/<assignment>/: the notebook, the stubs, the course library, checked for imports and leaks.
    c.GenerateAssignment.post_convert_hook = release.generate_hook(course_dir)

    # ---- autograde ---------------------------------------------------------------------------------------
    # The student's files are the submission: autograde never copies source/'s over them. A deleted test cell
    # comes back, graded, instead of silently losing its points.
    c.Autograde.exclude_overwriting = {name: list(STUDENT_FILES) for name in names}
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.sanitize_preprocessors = list(SANITIZE_STEPS)
    c.Autograde.autograde_preprocessors = autograde_steps()
    c.RegradeHiddenCells.enabled = True
    c.KeepManualGrades.course_root = root
    # Late penalties: the due date and policy of deadlines.toml, the time zip_collect recorded (lateness.py).
    c.CourseLatePenalties.course_root = root
    c.ExplainLateness.course_root = root
    # Each student's kernel runs in the allow-list sandbox (autograder/kernel_sandbox.py), over ipc sockets, and
    # leaves the scores of grade_part cells to RegradeHiddenCells (nothing scored where the student's code runs).
    c.Execute.kernel_manager_class = "autograder.kernel_sandbox.SandboxedKernelManager"
    c.SandboxedKernelManager.scores_outside = True
    c.Execute.timeout = CELL_TIMEOUT_S
    c.Execute.interrupt_on_timeout = True
    # nbgrader sets NBGRADER_EXECUTION while it executes: notebooks switch to fast mode (a few steps, tiny data).
    # Resumable: per-student hooks record in .grading/ who is completely autograded and has feedback, so
    # `vitcourse grade` after a crash redoes exactly the unfinished students (coursetools/progress.py).
    progress.install_hooks(c, course_dir)

    # ---- zip_collect: submissions downloaded as <student_id>.zip from the LMS / Drive, or Canvas's bulk names ----
    c.ZipCollectApp.archive_directory = "archive"
    c.ZipCollectApp.extracted_directory = "extracted"
    c.ZipCollectApp.downloaded_directory = "downloaded"
    # nbgrader's FileNameCollectorPlugin, except that a file a zip holds twice (at its top level and in the
    # assignment folder) is collected once by a fixed rule instead of aborting the class (coursetools/collect.py).
    # It also reads the names of Canvas's and Moodle's bulk downloads (coursetools/lms_names.py): the student is
    # the LMS identity's nbgrader id (coursetools/lms.py), under this course's extracted/ folders only. And every
    # submission gets its time, for the late policy of deadlines.toml (coursetools/lateness.py).
    c.ZipCollectApp.collector_plugin = "coursetools.lateness.TimedCollectorPlugin"
    c.OneCopyCollectorPlugin.course_root = root  # traitlets: a subclass (TimedCollectorPlugin) reads these too
    c.OneCopyCollectorPlugin.submission_file_re = SUBMISSION_FILE_RE
    # Anchored at this course's own extracted/ folder: the student id is the zip's name, never a folder inside
    # it, so a member path ".../extracted/<other id>/..." cannot name another student or create a new one (LMS
    # download names are read by the collector itself).
    c.FileNameCollectorPlugin.named_regexp = (
        "^" + re.escape(root) + r"/downloaded/[^/]+/extracted/"
        r"(?P<student_id>[A-Za-z0-9\-]+)(?:/[^/]+)?/(?P<file_id>" + SUBMISSION_FILE_RE + r")$")
    c.FileNameCollectorPlugin.valid_ext = [".ipynb", ".py", ".pt", ".json"]

    # ---- the exchange (a shared server): a collected submission is closed to other users as it lands ------
    c.ExchangeFactory.collect = "coursetools.permissions.PrivateCollect"
    # ---- export: written to a temporary name and renamed when complete (never a truncated grades.csv) ------
    c.ExportApp.plugin_class = "coursetools.export.AtomicCsvExportPlugin"
    # ---- generate_feedback: the student sees their grades and messages, never the hidden tests ------------
    c.GenerateFeedback.preprocessors = list(FEEDBACK_STEPS)

    # ---- before autograde: the data the checkpoints need, and a kernel that can start ---------------------
    argv = sys.argv if argv is None else argv
    datacheck.check_before_autograde(course_dir, argv)
    kernel_sandbox.check_before_autograde(argv)


def _name(step) -> str:
    return step if isinstance(step, str) else f"{step.__module__}.{step.__name__}"


def summary(c) -> str:
    """The effective configuration that matters for grades, as the markdown of docs/grading.md's table."""
    rows = ["| setting | value |", "|---|---|"]
    for i, step in enumerate(c.Autograde.sanitize_preprocessors, 1):
        rows.append(f"| sanitize step {i} | `{_name(step)}` |")
    for i, step in enumerate(c.Autograde.autograde_preprocessors, 1):
        rows.append(f"| autograde step {i} | `{_name(step)}` |")
    for i, step in enumerate(c.GenerateFeedback.preprocessors, 1):
        rows.append(f"| feedback step {i} | `{_name(step)}` |")
    rows += [f"| `Execute.timeout` (one cell, s) | {c.Execute.timeout} |",
             f"| `Execute.interrupt_on_timeout` | {c.Execute.interrupt_on_timeout} |",
             f"| `Execute.kernel_manager_class` | `{c.Execute.kernel_manager_class}` |",
             f"| `SandboxedKernelManager.scores_outside` | {c.SandboxedKernelManager.scores_outside} |",
             f"| `OverwriteCells.add_missing_cells` | {c.OverwriteCells.add_missing_cells} |",
             "| `Autograde.exclude_overwriting` (every assignment) | "
             + ", ".join(f"`{f}`" for f in STUDENT_FILES) + " |",
             f"| `ClearSolutions.code_stub` | `{c.ClearSolutions.code_stub['python']}` |",
             f"| `CourseDirectory.ignore` | {', '.join(f'`{p}`' for p in c.CourseDirectory.ignore)} |"]
    return "\n".join(rows)


def load(course_dir: str | os.PathLike):
    """The configuration nbgrader loads from `course_dir`/nbgrader_config.py (argv empty: no pre-autograde check)."""
    from traitlets.config import PyFileConfigLoader

    saved = sys.argv
    sys.argv = [saved[0]]
    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
    finally:
        sys.argv = saved


if __name__ == "__main__":  # python -m coursetools.pipeline [COURSE_DIR]: the table of docs/grading.md
    from coursecore import course_root

    print(summary(load(sys.argv[1] if len(sys.argv) > 1 else course_root.find().course)))
