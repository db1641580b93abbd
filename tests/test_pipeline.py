"""The nbgrader pipeline has one owner (coursetools/pipeline.py), and docs/grading.md says what it is."""
import re
from pathlib import Path

from coursetools import pipeline

REPO = Path(__file__).resolve().parents[1]


def test_the_course_config_is_the_pipeline_and_docs_show_what_loads():
    """Load course/nbgrader_config.py as nbgrader does: its effective settings are docs/grading.md's table."""
    c = pipeline.load(REPO / "course")
    docs = (REPO / "docs" / "grading.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- pipeline:begin -->\n(.*?)\n<!-- pipeline:end -->", docs, re.S)
    assert table, "docs/grading.md lost its pipeline table (between <!-- pipeline:begin/end -->)"
    assert table[1].strip() == pipeline.summary(c), (
        "docs/grading.md's pipeline table is not what nbgrader loads: paste `python -m coursetools.pipeline course`")


def test_the_config_file_only_calls_the_owner():
    """Nothing else sets nbgrader configuration: the file is a call, not a second copy of the pipeline."""
    text = (REPO / "course" / "nbgrader_config.py").read_text()
    assert not re.search(r"^\s*c\.", text, re.M), "course/nbgrader_config.py sets options of its own"
    code = [l for l in text.split('"""')[-1].splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert len(code) <= 6, code


def test_every_assignment_keeps_its_student_files_and_scores_stay_outside_the_kernel():
    from coursecore.registry import STUDENT_FILES

    c = pipeline.load(REPO / "course")
    source = sorted(p.name for p in (REPO / "course" / "source").iterdir() if p.is_dir())
    assert c.Autograde.exclude_overwriting == {a: list(STUDENT_FILES) for a in source}
    assert c.SandboxedKernelManager.scores_outside is True
    assert c.KeepManualGrades.course_root == str((REPO / "course").resolve())
