"""One bad notebook never stops the class: renamed cell ids, edited read-only cells and changed cell types,
through the real `nbgrader autograde` on a scratch a5 course.

Every student below solved everything and then tampered with their notebook in one way; the oracle is the
student who solved everything and tampered with nothing. Each must be graded (no nbgrader crash, no
student left out) with the oracle's score on every test cell: the tampered cells are put back from the
source notebook (coursetools/overwrite.py, nbgrader's OverwriteCells).
"""
from __future__ import annotations

import nbformat
import pytest

from coursetools import grading, term, progress, release

A = "a5_analysis"
pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # make test-e2e (CI runs it)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def rename_ids(nb):
    _cell(nb, "test_attention_flops").metadata["nbgrader"]["grade_id"] = "my_flops_test"
    _cell(nb, "counting").metadata["nbgrader"]["grade_id"] = "my_counting"


def edit_read_only(nb):
    _cell(nb, "setup_1").source = "print('no setup today')"
    _cell(nb, "test_num_tokens").source = "print('this test passes')"
    _cell(nb, "test_mc_locality").source = ""


def change_types(nb):
    for gid, kind in (("test_mc_locality", "markdown"), ("setup_1", "markdown"), ("q_locality", "code")):
        cell = _cell(nb, gid)
        new = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(cell.source)
        new.metadata = cell.metadata
        nb.cells[nb.cells.index(cell)] = new


TAMPER = {"ren": rename_ids, "edit": edit_read_only, "type": change_types}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("edited")
    course = term.make_course(scratch, [A])
    release.release(course, [A], zip_=False, log=lambda _: None)
    for sid in ["ada", *TAMPER]:
        term.make_submission(term.Student(sid, "solved everything"), A, course, scratch / "students")
    release.nbgrader(course, "zip_collect", A, "--force")
    for sid, tamper in TAMPER.items():
        path = course / "submitted" / sid / A / f"{A}.ipynb"
        nb = nbformat.read(path, as_version=4)
        tamper(nb)
        nbformat.write(nb, path)
    run = grading.autograde(course, A, collect=False, log=lambda _: None)
    return course, run


@pytest.mark.parametrize("student", list(TAMPER))
def test_a_tampered_notebook_is_graded_like_an_untouched_one(graded, student):
    course, run = graded
    assert student in run.graded and not run.failed
    assert not progress.unfinished(course, A, [student])
    scores = grading.read_scores(course, A)
    assert scores[student]["cells"] == scores["ada"]["cells"], (scores[student], scores["ada"])
    assert scores["ada"]["cells"] and sum(scores["ada"]["cells"].values()) > 0
