"""Execute a course notebook as a student or nbgrader would (CI and the tests): errors, hidden scores."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import nbformat

from coursecore import course_root, impl
from coursecore.registry import files_for
from coursetools.term import cells_by_id


# ---- executing notebooks (CI) ---------------------------------------------------------------------------

@dataclass
class CellError:
    """An error output of an executed cell."""

    index: int
    grade_id: Optional[str]
    kind: str  # 'tests', 'solution' or 'plain'
    ename: str
    evalue: str


def execute_notebook(path: Path, timeout: int = 300, fast: bool = True) -> tuple[object, list[CellError]]:
    """Execute a notebook in its own folder (as a student or nbgrader would), errors allowed; save it back.

    Returns the executed notebook and its errors. `fast` sets VITCOURSE_FAST=1 for the kernel.
    """
    from nbclient import NotebookClient

    from vitcourse.training.runtime import FAST_ENV

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved = os.environ.get(FAST_ENV)
    if fast:
        os.environ[FAST_ENV] = "1"
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        if saved is None:
            os.environ.pop(FAST_ENV, None)
        else:
            os.environ[FAST_ENV] = saved
    nbformat.write(nb, path)
    return nb, cell_errors(nb)


def cell_errors(nb) -> list[CellError]:
    """The cells that raised, and the checks that failed: a check prints its verdict instead of raising
    (vitcourse.course.nbchecks), a line starting with FAILED_MARK on stderr."""
    from vitcourse.course.colab import FAILED_MARK

    errors = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        kind = "tests" if meta.get("grade") and not meta.get("solution") else "solution" if meta.get("solution") else "plain"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(CellError(index, meta.get("grade_id"), kind, out.get("ename", ""), out.get("evalue", "")))
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                failed = [l for l in out.get("text", "").splitlines() if l.startswith(FAILED_MARK)]
                errors += [CellError(index, meta.get("grade_id"), kind, "CheckFailed", l) for l in failed]
    return errors


def prepare_source_run(assignment: str, dest: Path, course_dir: Optional[Path] = None) -> Path:
    """Copy a source notebook next to the reference (`solutions/*.py`) in `dest`; return the notebook path.

    The source notebook's checks must all pass with the reference as the student's files. The copy lives
    in a scratch folder: nothing with a solution in it is ever written under course/source/.
    """
    course_dir = Path(course_dir or course_root.current().course)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{assignment}.ipynb"
    shutil.copy2(course_dir / "source" / assignment / f"{assignment}.ipynb", target)
    for name in files_for(assignment):
        shutil.copy2(impl.solutions_dir() / name, dest / name)
    return target


def hidden_scores(nb) -> dict[str, tuple[float, float]]:
    """(score shown, points) of every test cell whose last output is a number (grade_part's partial credit)."""
    out = {}
    for gid, cell in cells_by_id(nb).items():
        meta = cell.metadata["nbgrader"]
        if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
            for o in cell.get("outputs", []):
                if o.get("output_type") == "execute_result":
                    try:
                        out[gid] = (float(o["data"]["text/plain"]), float(meta["points"]))
                    except (KeyError, ValueError):
                        pass
    return out




def _output_text(cell) -> str:
    """Everything a cell showed as text: streams, plain-text, Markdown and HTML results."""
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        for mime in ("text/plain", "text/markdown", "text/html"):
            parts.append(str(o.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def answers_shown_early(nb, min_digits: int = 3) -> list[str]:
    """Autograded numeric answers that an executed notebook printed before the student's own answer cell.

    For each test cell's `grade_answer(...)` call with a correct value (`answers.answer_key`), every output of the
    cells above the answer's solution cell is searched for that number, written as Python would print it
    (94538, 94,538, 94_538, 94 538). Values under `min_digits` digits (a 2, a 0.5) appear in any output and are
    not searched: no table of the course prints such an answer. Returns one line per leak."""
    import re

    from autograder import answers

    leaks = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        for call in answers.calls(cell.source):
            key = answers.answer_key(call)
            if not isinstance(key, int) or len(str(abs(key))) < min_digits:
                continue
            given = max((j for j in range(i) if cells[j].metadata.get("nbgrader", {}).get("solution")
                         and cells[j].cell_type == "code"), default=i)  # the student's answer cell above
            forms = {f"{key}", f"{key:,}", f"{key:_}", f"{key:,}".replace(",", " "), f"{key:,}".replace(",", "\u202f")}
            pattern = re.compile(r"(?<![\d.,_])(" + "|".join(map(re.escape, forms)) + r")(?![\d_]|[.,]\d)")
            for j in range(given):
                if pattern.search(_output_text(cells[j])):
                    name = call.params.get("name", call.check)
                    leaks.append(f"{name} = {key:,} is printed by cell {j} (before its answer cell {given}): "
                                 f"{cells[j].source.strip().splitlines()[0][:80] if cells[j].source.strip() else ''}")
    return leaks
