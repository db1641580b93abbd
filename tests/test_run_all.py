"""Issue 9, item 6: Run All goes past a failing check cell, as in the browser (nbclient without allow_errors)."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from vitcourse.course import nbbuild

REPO = Path(__file__).resolve().parents[1]
SOURCE = '''# %%
x = 1

# %% tests=test_x points=1
from vitcourse.course import nbchecks
raise nbchecks.CheckFailed("x is not implemented yet: write it above")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("choice", x, points=1, name="x", choices=[1, 2], correct=1)
### END HIDDEN TESTS

# %%
print("after the check", x + 1)
'''


def test_every_check_cell_is_tagged_raises_exception():
    for a in nbbuild.assignments():
        nb = nbformat.read(REPO / "course" / "source" / a / f"{a}.ipynb", as_version=4)
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
                 and not c.metadata["nbgrader"].get("solution")]
        assert tests and all("raises-exception" in c.metadata.get("tags", []) for c in tests), a


def test_run_all_continues_past_a_failing_check(tmp_path):
    nb = nbbuild.build_notebook("a0_demo", SOURCE)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and "Setup" not in c.source]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(REPO)}}).execute()
    check, last = nb.cells[1], nb.cells[2]
    assert check.outputs[0]["output_type"] == "error" and "not implemented yet" in check.outputs[0]["evalue"]
    assert "contextlib" not in "".join(check.outputs[0]["traceback"])
    assert "after the check 2" in last.outputs[0]["text"]
