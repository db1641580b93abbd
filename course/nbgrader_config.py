"""nbgrader configuration of the Vision Transformer course (run nbgrader from this folder, `course/`).

Students write their code in `transformer.py` and `ViT.py`, next to the notebook. nbgrader's autograde
copies every non-notebook file of `source/<assignment>/` over the submission; those two files must never be
overwritten (they *are* the submission), hence `exclude_overwriting`. Nothing with a solution in it lives
in `source/` anyway: `vitcourse release` adds the generated stubs to the student release.
"""
import os
import re
import sys
from pathlib import Path

COURSE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(COURSE_DIR.parent))  # so that `vitcourse` resolves when nbgrader runs from course/
from autograder.nbgrader_plugin import configure  # noqa: E402
from vitcourse.course.colab import COURSE_ID  # noqa: E402

from autograder.registry import STUDENT_FILES  # noqa: E402 - the student's code: never overwritten by autograde
# Every assignment of source/, so exclude_overwriting covers a new one as soon as it exists.
ASSIGNMENTS = sorted(p.name for p in (COURSE_DIR / "source").iterdir() if p.is_dir()) if (COURSE_DIR / "source").is_dir() else []
CELL_TIMEOUT_S = 300  # one cell on a busy CPU grader; fast mode keeps training cells to seconds
# Files a student hands in (zip of the assignment folder): the notebook, their code, checkpoint, metrics.
SUBMISSION_FILE_RE = "|".join([r"[^/]+\.ipynb", *(re.escape(f) for f in STUDENT_FILES), r"[^/]+\.pt", r"metrics\.json"])

c = get_config()  # noqa: F821 (nbgrader provides get_config)

c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.root = os.environ.get("VITCOURSE_COURSE_ROOT", str(COURSE_DIR))
# Build artefacts and caches never go into a release or a submission; nor do the student's copies of the course
# library (a folder handed in through the exchange holds them: in the grading kernel they would shadow the
# grader's, and the hidden cells' `autograder.nb` is not in the student edition) or training checkpoints.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store", "*.bak",
                            "vitcourse", "data_utils", "autograder", "runs"]

# ---- generate_assignment: what a student gets instead of a solution --------------------------------------
# A comment, not a `raise`: Colab, VS Code and Positron ignore the raises-exception tag, and a raising stub would
# stop Run All at the first answer cell. Every answer cell gives its names a placeholder above the region
# (`BLOCK_PARAMS = None`, enforced by vitcourse/course/nbbuild.py) and its check cell says "not implemented yet".
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Every Generate (`vitcourse release`, the formgrader's button, plain `nbgrader generate_assignment`) leaves a
# complete release/<assignment>/: the notebook, the stubs, the course library, checked for imports and leaks.
c.GenerateAssignment.post_convert_hook = __import__("vitcourse.course.release").course.release.generate_hook(
    Path(c.CourseDirectory.root))
c.ClearSolutions.enforce_metadata = True

# ---- autograde ------------------------------------------------------------------------------------------
# The autograder's plugin: exclude_overwriting for the student files, add_missing_cells (a student who
# deleted a test cell gets it back, graded, instead of silently losing its points), and a preprocessor that
# recomputes every grade_part(...) cell outside the student's kernel, in the sandbox.
configure(c, assignments=ASSIGNMENTS)
__import__("autograder.datacheck").datacheck.check_before_autograde(Path(c.CourseDirectory.root))  # data first
__import__("autograder.kernel_sandbox").kernel_sandbox.check_before_autograde()  # and a kernel that can start
# Resumable and keeping the TA's work (vitcourse/course/progress.py, vitcourse/course/regrade.py): nbgrader's
# per-student hooks record in .grading/ who is completely autograded and has feedback, so `vitcourse grade`
# after a crash redoes exactly the unfinished students; SaveAutoGrades is replaced by KeepManualGrades, so
# `--force` no longer flags every answer a TA already graded as ungraded again.
__import__("vitcourse.course.progress").course.progress.install(c, c.CourseDirectory.root)
c.Autograde.exclude_overwriting = {name: list(STUDENT_FILES) for name in ASSIGNMENTS}
c.OverwriteCells.add_missing_cells = True
# nbgrader's sanitize steps, with OverwriteCells replaced by vitcourse/course/overwrite.py's subclass: a deleted
# setup cell (or any read-only or test cell) comes back in place instead of crashing with KeyError.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "vitcourse.course.overwrite.RestoringOverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Execute.timeout = CELL_TIMEOUT_S
c.Execute.interrupt_on_timeout = True
# nbgrader sets NBGRADER_EXECUTION while it executes: notebooks switch to fast mode (a few steps, tiny data).

# ---- zip_collect: submissions downloaded as <student_id>.zip from the LMS / Drive -------------------------
c.ZipCollectApp.archive_directory = "archive"
c.ZipCollectApp.extracted_directory = "extracted"
# nbgrader's FileNameCollectorPlugin, except that a file a zip holds twice (at its top level and in the
# assignment folder) is collected once by a fixed rule instead of aborting the class (vitcourse/course/collect.py).
c.ZipCollectApp.collector_plugin = "vitcourse.course.collect.OneCopyCollectorPlugin"
c.ZipCollectApp.downloaded_directory = "downloaded"
# Anchored at this course's own extracted/ folder (nbgrader extracts <id>.zip to downloaded/<a>/extracted/<id>/):
# the student id is the zip's name, never a folder inside it, so a member path ".../extracted/<other id>/..."
# cannot name another student or create a new one.
c.FileNameCollectorPlugin.named_regexp = (
    "^" + re.escape(os.path.abspath(c.CourseDirectory.root)) + r"/downloaded/[^/]+/extracted/"
    r"(?P<student_id>[A-Za-z0-9\-]+)(?:/[^/]+)?/(?P<file_id>" + SUBMISSION_FILE_RE + r")$"
)
c.FileNameCollectorPlugin.valid_ext = [".ipynb", ".py", ".pt", ".json"]

# ---- the exchange (a shared server): a collected submission is closed to other users as it lands --------
c.ExchangeFactory.collect = "vitcourse.course.permissions.PrivateCollect"

# ---- export ---------------------------------------------------------------------------------------------
# nbgrader's CSV, written to a temporary name and renamed when complete (vitcourse/course/export.py): a killed or
# failing export leaves the previous grades.csv intact, never a truncated or partial one.
c.ExportApp.plugin_class = "vitcourse.course.export.AtomicCsvExportPlugin"

# ---- generate_feedback: the student sees their grades and messages, never the hidden tests --------------
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "vitcourse.course.feedback.HideHiddenTests",
    # Lines of hidden tests or mark schemes a student cell copied into an output (an IPython hook can).
    "vitcourse.course.feedback.ScrubHiddenText",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
