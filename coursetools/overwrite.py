"""nbgrader's OverwriteCells: a deleted read-only cell comes back in place, and no false checksum warnings.

nbgrader 0.9's `add_missing_cells` puts a deleted grade cell after "the previous cell" of the source
notebook and looks that cell up among the submission's grade and solution cells only: when the previous
cell is a read-only cell (the setup cell), the lookup fails (`KeyError: 'setup_1'`) and that student is not
graded at all. It also never brings back a deleted read-only cell, though later cells depend on it (the
setup cell's imports). This subclass restores every missing grade cell and every missing read-only cell,
in source order, each right after the nearest earlier source cell the submission still has (or first).

nbgrader also warns "Attribute 'checksum' for cell ... has changed!" for *every* test cell with hidden tests
of an untouched submission (jupyter/nbgrader#1961): generate_assignment saves the checksum of the cell
with its hidden tests in the gradebook, while the release cell has them cleared, so autograde always
finds a different checksum (and puts the hidden tests back). A TA then cannot tell a student who edited
a test cell from everyone else. Here a read-only cell that is exactly its released form (the gradebook's
source with the hidden tests cleared, as generate_assignment does) gets its hidden tests back silently;
any other change still warns, and is overwritten, as before.

A cell whose grade_id the released notebook does not have (a student renamed it, or removed the id) made
nbgrader drop only the id and keep the rest of the nbgrader metadata, and its own add_missing_cells then
crashed on that cell (`KeyError: 'grade_id'`). Such a cell becomes an ordinary cell here (its code still
runs, so a renamed answer still counts for the tests after it; it is never scored) and the released cell of
that id is restored in its place like a deleted one. Edited read-only cells and changed cell types are put
back by nbgrader's own checks (checksum, cell_type), which this class keeps.
"""
from __future__ import annotations

import nbformat
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, OverwriteCells


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


class RestoringOverwriteCells(OverwriteCells):
    """OverwriteCells whose add_missing_cells restores grade and read-only cells and never raises, and which
    warns about a changed checksum only when the student changed the cell."""

    def _released_source(self, source_cell) -> str:
        """The source cell as the release shows it: hidden tests cleared with the course's own delimiters."""
        released = nbformat.v4.new_code_cell(source_cell.source)
        ClearHiddenTests(config=self.config)._remove_hidden_test_region(released)
        return released.source

    def _restored_locked_cell(self, source_cell):
        new = nbformat.v4.new_code_cell if source_cell.cell_type == "code" else nbformat.v4.new_markdown_cell
        cell = new(source_cell.source)
        cell.metadata.update({"deletable": False, "editable": False, "nbgrader": {
            "grade": False, "solution": False, "locked": True, "task": False, "grade_id": source_cell.name,
            "checksum": source_cell.checksum, "schema_version": 3}})
        return cell

    def preprocess_cell(self, cell, resources, cell_index):
        if "nbgrader" in cell.metadata:
            grade_id = _grade_id(cell)
            try:
                if grade_id is None:
                    raise MissingEntry()
                self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except MissingEntry:
                self.log.warning("Cell %s (cell %d) is not a cell of the released notebook (renamed, or its id "
                                 "removed): graded as an ordinary cell, and the released cells come back in place",
                                 grade_id, cell_index)
                del cell.metadata["nbgrader"]
                return cell, resources
            source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            if (source_cell.locked and cell.source != source_cell.source
                    and cell.source == self._released_source(source_cell)):
                cell.source = source_cell.source  # untouched: the hidden tests go back without a warning
        return super().preprocess_cell(cell, resources, cell_index)

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = list(source_nb.source_cells)
        grade_cells = {cell.name: cell for cell in source_nb.grade_cells}
        solution_ids = {cell.name for cell in source_nb.solution_cells}
        for k, source_cell in enumerate(source_cells):
            present = {_grade_id(c): i for i, c in enumerate(nb.cells) if _grade_id(c)}
            if source_cell.name in present:
                continue
            if source_cell.name in grade_cells:
                cell = self.missing_cell_transform(source_cell, grade_cells[source_cell.name].max_score,
                                                   is_solution=source_cell.name in solution_ids)
            elif source_cell.locked and source_cell.name not in solution_ids:
                cell = self._restored_locked_cell(source_cell)
            else:
                continue  # a deleted answer cell: its test cell (restored) gives the student 0 for it
            self.log.warning("Missing cell %s encountered, adding it back to the notebook", source_cell.name)
            before = next((present[s.name] for s in reversed(source_cells[:k]) if s.name in present), -1)
            nb.cells.insert(before + 1, cell)
        return nb, resources
