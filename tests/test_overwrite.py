"""RestoringOverwriteCells: a deleted setup cell (or any read-only / test cell) comes back, in place.

The gradebook is a stand-in with the fields nbgrader's OverwriteCells reads (source, grade and solution
cells of one notebook); the control is nbgrader's own OverwriteCells on the same notebook.
"""
from types import SimpleNamespace as NS

import nbformat
import pytest
from nbgrader.preprocessors import OverwriteCells

from coursetools.overwrite import RestoringOverwriteCells

SOURCE = [  # name, cell_type, locked, grade points (None: not a grade cell), solution
    ("intro", "markdown", True, None, False),
    ("setup_1", "code", True, None, False),
    ("answer_1", "code", False, None, True),
    ("test_1", "code", True, 2.0, False),
    ("answer_2", "code", False, None, True),
    ("test_2", "code", True, 3.0, False),
]


def _source_cell(name, kind, locked):
    return NS(name=name, cell_type=kind, locked=locked, checksum=f"sum-{name}", source=f"# source of {name}\n")


def _preprocessor(cls):
    cells = {n: _source_cell(n, k, l) for n, k, l, _, _ in SOURCE}
    notebook = NS(source_cells=list(cells.values()),
                  grade_cells=[NS(name=n, max_score=p) for n, _, _, p, _ in SOURCE if p is not None],
                  solution_cells=[NS(name=n) for n, *_, s in SOURCE if s])
    pre = cls(add_missing_cells=True)
    pre.gradebook = NS(find_notebook=lambda nb_id, a_id: notebook)
    pre.notebook_id, pre.assignment_id = "nb", "a"
    return pre


def _submission(deleted):
    nb = nbformat.v4.new_notebook()
    for name, kind, locked, points, solution in SOURCE:
        if name in deleted:
            continue
        cell = nbformat.v4.new_code_cell(f"student {name}") if kind == "code" else nbformat.v4.new_markdown_cell("x")
        cell.metadata["nbgrader"] = {"grade_id": name, "locked": locked, "grade": points is not None,
                                     "solution": solution, "points": points or 0, "schema_version": 3}
        nb.cells.append(cell)
    return nb


@pytest.mark.parametrize("deleted", [{"setup_1", "test_1"}, {"setup_1"}, {"test_1", "answer_2", "test_2"},
                                     {"intro", "setup_1"}])
def test_deleted_cells_come_back_in_source_order(deleted):
    nb, _ = _preprocessor(RestoringOverwriteCells).add_missing_grade_cells(_submission(deleted), {})
    kept = [n for n, *_, s in SOURCE if not (s and n in deleted)]  # deleted answers stay deleted
    assert [c.metadata["nbgrader"]["grade_id"] for c in nb.cells] == kept
    setup = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "setup_1")
    if "setup_1" in deleted:
        assert setup.source == "# source of setup_1\n" and setup.metadata["nbgrader"]["locked"]
    for cell in nb.cells:
        if cell.metadata["nbgrader"]["grade_id"] in {"test_1", "test_2"} & deleted:
            assert cell.metadata["nbgrader"]["grade"] and "# source of" in cell.source
    nbformat.validate(nb)


def test_control_nbgrader_crashes_on_a_missing_cell_after_the_setup_cell():
    with pytest.raises(KeyError):
        _preprocessor(OverwriteCells).add_missing_grade_cells(_submission({"answer_1", "test_1"}), {})
