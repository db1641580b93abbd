"""An nbgrader feedback preprocessor that keeps hidden tests hidden.

After autograde, a submission's test cells hold the hidden tests again (nbgrader restores them to grade).
`nbgrader generate_feedback` would print them into the HTML the student receives, and an error's traceback
would quote the failing hidden line. `HideHiddenTests` (registered in `course/nbgrader_config.py`) removes
the hidden region from every cell and reduces the tracebacks of grade cells to the error's message, which
our checks write to be helpful on their own ("max error 0.3 at index (0, 1, 2) ... Hint: ...").
"""
from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
HIDDEN_NOTE = "# (hidden tests ran here; their code is not shown)"


def strip_hidden(source: str) -> str:
    """The source without its hidden-test regions (each replaced by one comment line)."""
    out, inside = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + HIDDEN_NOTE)
        elif HIDDEN_END in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


class HideHiddenTests(Preprocessor):
    """Remove hidden tests and the tracebacks that would quote them from a graded notebook."""

    # nbconvert registers configured preprocessors disabled unless they say otherwise.
    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        had_hidden = HIDDEN_BEGIN in cell.source
        cell.source = strip_hidden(cell.source)
        is_grade = cell.metadata.get("nbgrader", {}).get("grade", False)
        if had_hidden or is_grade:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
