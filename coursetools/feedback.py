"""An nbgrader feedback preprocessor that keeps hidden tests hidden.

After autograde, a submission's test cells hold the hidden tests again (nbgrader restores them to grade).
`nbgrader generate_feedback` would print them into the HTML the student receives, and an error's traceback
would quote the failing hidden line. `HideHiddenTests` (registered in `course/nbgrader_config.py`) removes
the hidden region from every cell and reduces the tracebacks of grade cells to the error's message, which
our checks write to be helpful on their own ("max error 0.3 at index (0, 1, 2) ... Hint: ...").
"""
from __future__ import annotations

from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from coursetools.release import _region_lines  # the leak check's reader of marked regions: one definition

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


# ---- hidden text in outputs ------------------------------------------------------------------------------
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
SCRUB_NOTE = "[a line of the hidden tests or the mark scheme was removed here]"
MIN_SECRET_CHARS = 12  # shorter lines ("else:", "_result.score") say nothing and would match honest output
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/javascript")


def normalise(line: str) -> str:
    """A line with runs of whitespace collapsed: a re-indented or re-wrapped copy still matches."""
    return " ".join(line.split())




def secret_lines(cells) -> set[str]:
    """Normalised lines of hidden tests (every cell) and of model answers / mark schemes (markdown answer
    cells' solution regions), from (cell_type, source) pairs of the source notebook."""
    secret = set()
    for cell_type, source in cells:
        lines = (source or "").splitlines()
        found = _region_lines(lines, HIDDEN_BEGIN, HIDDEN_END)
        if cell_type == "markdown":
            found += _region_lines(lines, SOLUTION_BEGIN, SOLUTION_END)
        secret |= {n for n in map(normalise, found) if len(n) >= MIN_SECRET_CHARS}
    return secret


def scrub_text(text: str, secret: set[str]) -> tuple[str, int]:
    """`text` with every line that contains a secret line replaced by SCRUB_NOTE; (text, lines removed)."""
    if not secret or not text:
        return text, 0
    out, removed = [], 0
    for line in text.splitlines(keepends=True):
        flat = normalise(line)
        if len(flat) >= MIN_SECRET_CHARS and any(s in flat for s in secret):
            out.append(SCRUB_NOTE + ("\n" if line.endswith("\n") else ""))
            removed += 1
        else:
            out.append(line)
    return "".join(out), removed


class ScrubHiddenText(Preprocessor):
    """Remove hidden-test and mark-scheme lines from every output of the notebook before the feedback HTML.

    The student's kernel runs the hidden test cells, so a student cell (an IPython hook, a printed `In[...]`)
    can copy their text into an output. The texts are taken from the gradebook's copy of the source
    notebook (the grader's process, never the kernel) and matched line by line, whitespace-normalised,
    anywhere inside an output line (a repr or a prefix does not hide a copy). A copy in another encoding
    (base64, one character per line) is not recognised: that text was in the kernel all along.
    """

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        secret = self._secret(resources)
        removed = 0
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                removed += self._scrub_output(output, secret)
        if removed:
            self.log.warning("feedback for %s: removed %d line(s) of hidden tests or mark schemes from outputs",
                             resources.get("nbgrader", {}).get("student", "?"), removed)
        return nb, resources

    @staticmethod
    def _scrub_output(output, secret) -> int:
        removed = 0
        if "text" in output:
            text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
            output["text"], n = scrub_text(text, secret)
            removed += n
        for mime in TEXT_MIMES:
            data = output.get("data", {})
            if mime in data:
                text = "".join(data[mime]) if isinstance(data[mime], list) else str(data[mime])
                data[mime], n = scrub_text(text, secret)
                removed += n
        if output.get("output_type") == "error":
            output["evalue"], n = scrub_text(str(output.get("evalue", "")), secret)
            removed += n
            lines = []
            for line in output.get("traceback", []):
                line, n = scrub_text(line, secret)
                lines.append(line)
                removed += n
            output["traceback"] = lines
        return removed

    def _secret(self, resources) -> set[str]:
        """From the gradebook (hidden tests) and the source notebook (its mark schemes: nbgrader saves the
        gradebook's copy after clearing the solutions, so the model answers are only in source/)."""
        import nbformat
        from nbgrader.api import Gradebook
        from nbgrader.coursedir import CourseDirectory

        info = resources.get("nbgrader", {})
        cells = []
        if info.get("db_url"):
            with Gradebook(info["db_url"]) as gb:
                notebook = gb.find_notebook(info["notebook"], info["assignment"])
                cells += [(c.cell_type, c.source) for c in notebook.source_cells]
        if info.get("assignment"):
            coursedir = CourseDirectory(config=self.config)
            path = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"])) / f"{info['notebook']}.ipynb"
            if path.is_file():
                cells += [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]
            else:
                self.log.warning("no source notebook %s: mark-scheme lines are not scrubbed from the feedback", path)
        return secret_lines(cells)
