"""Issue 25, item 3: Run All of every fresh release notebook reaches the last cell, in any front end.

The notebooks are the real release (`vitcourse release` of a copy of this course), run from their release
folder in a kernel of this environment that cannot import the installed course (tests/notebook_runs.py:
only the release folder's own copy of the library is there, as for a student), with `raises-exception`
ignored (Colab, VS Code and Positron ignore it). A module the release forgets to ship, an answer cell whose
stub raises, a check that raises: each stops Run All, and this test with it. `make test-colab` runs the same
notebooks in the Colab replica, and finished ones too.
"""
from __future__ import annotations

import os
import shutil
import sys

import nbformat
import pytest

import notebook_runs as R
from coursetools import nbbuild
from vitcourse.course import colab

ASSIGNMENTS = nbbuild.assignments()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return R.release_with_public_repo(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def kernel():
    # `make test-hub` sets VITCOURSE_STUDENT_PYTHON to a JupyterHub student's environment on Python 3.12.
    return R.student_kernel(os.environ.get("VITCOURSE_STUDENT_PYTHON", sys.executable), env={"VITCOURSE_FAST": "1"})


def test_the_student_kernel_cannot_import_the_installed_course(tmp_path, kernel):
    """The kernel the test runs in is a student's: what the release does not ship is not importable."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import importlib.util\n"
                                          "print([importlib.util.find_spec(m) is None for m in ('vitcourse', 'autograder', 'torch')])")]
    R.run_all(nb, tmp_path, kernel, tmp_path)
    assert R.text(nb.cells[0]).strip() == "[True, True, False]"


# `make test` runs the cheapest notebook here, in this environment; `make test-hub` (CI) runs all seven in a
# JupyterHub student's environment on Python 3.12, and `make test-colab` again in the Colab replica.
RUN_ALL = ASSIGNMENTS if os.environ.get("VITCOURSE_STUDENT_PYTHON") else ["a2_transformer"]


@pytest.mark.parametrize("assignment", RUN_ALL)
def test_fresh_release_run_all_reaches_the_last_cell(released, tmp_path, kernel, assignment):
    folder = tmp_path / assignment
    shutil.copytree(released.folder(assignment), folder)
    nb = R.run_all(nbformat.read(folder / f"{assignment}.ipynb", as_version=4), folder, kernel, tmp_path)
    assert not R.errors(nb), "\n".join(R.errors(nb))
    checks = R.check_cells(nb)
    assert checks
    for cell in checks:
        out = R.text(cell)
        assert colab.NOT_IMPLEMENTED_MARK in out and colab.FAILED_MARK in out, (cell.source[:80], out)
    assert "write your student id" in R.text(nb.cells[-1]), "the hand-in cell is the last one and it ran"
    text = "\n".join(R.text(c) for c in nb.cells if c.cell_type == "code")
    assert "<torch._C.Generator" not in text and "Traceback" not in text


def test_every_check_cell_keeps_the_raises_exception_tag():
    """Where the tag is honoured it costs nothing (no check raises); kept for a student's own cell edits."""
    for a in ASSIGNMENTS:
        nb = nbformat.read(R.REPO / "course" / "source" / a / f"{a}.ipynb", as_version=4)
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
                 and not c.metadata["nbgrader"].get("solution")]
        assert tests and all("raises-exception" in c.metadata.get("tags", []) for c in tests), a


def test_the_release_stub_of_an_answer_cell_does_not_raise():
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(R.REPO / "course")).load_config()
    stub = cfg.ClearSolutions.code_stub["python"]
    compile(stub, "<stub>", "exec")
    assert "raise" not in stub


def test_answer_cells_must_leave_a_runnable_cell():
    top = "# %% solution=q\nX = None\n### BEGIN SOLUTION\nX = 3\n### END SOLUTION\n\n# %%\nprint(X)\n"
    nbbuild.parse(top)
    with pytest.raises(nbbuild.NotebookSourceError, match="add `X = None` above"):
        nbbuild.parse(top.replace("X = None\n", ""))
    with pytest.raises(nbbuild.NotebookSourceError, match="indented"):
        nbbuild.parse("# %% solution=q\ndef f():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION\n")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_release_imports_only_what_it_ships_and_its_setup_cell_provides(released, assignment):
    """Item 5 and the a7 finding: every module the notebook reaches is shipped, in the standard library or in
    the requirements its setup cell installs (Colab) or names (elsewhere)."""
    from coursetools import release

    third, problems = release.release_imports(released.folder(assignment))
    assert not problems
    assert third <= set(colab.requirements(assignment)), third - set(colab.requirements(assignment))


def test_the_import_check_finds_an_instructor_only_module(released, tmp_path):
    from coursetools import release

    folder = tmp_path / "a7_cnn"
    shutil.copytree(released.folder("a7_cnn"), folder)
    nb = nbformat.read(folder / "a7_cnn.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("from coursetools.commands.profile import run"))
    nbformat.write(nb, folder / "a7_cnn.ipynb")
    assert release.release_imports(folder)[1] == ["a7_cnn.ipynb imports coursetools.commands.profile, which a7_cnn/ does not ship"]
