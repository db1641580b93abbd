"""Which students of an assignment are completely autograded and have their feedback, so that a re-run after
a crash redoes exactly the unfinished ones.

nbgrader decides what to (re)do from folders alone: `nbgrader autograde` without `--force` skips every
student whose `autograded/<student>/<assignment>/` exists, `generate_feedback` every one whose
`feedback/<student>/<assignment>/` exists. A SIGKILL mid-run leaves those folders half made (autograde
writes the sanitised, never executed notebook there first; the gradebook rows keep NULL scores; the
feedback HTML is missing or cut short), so a plain re-run skips the student and `export` reports 0.0.

nbgrader's own per-student hooks keep a record instead, `<course>/.grading/<assignment>/<student>.json`
(outside every student's folder: the sandboxed kernel can write its autograded folder, never this one):

    {"graded": true, "run": "<id of that autograde>", "submission": "<sha256 of the handed-in files>",
     "answers": {"<notebook>": {"<grade_id>": "<sha256 of the answer's source>"}}, "feedback": "<run id>"}

* before a student is autograded `graded` becomes false (the student is in flight); after all of their
  notebooks were executed, scored and written, true with a fresh run id;
* before their feedback is generated `feedback` becomes null; after it was written, the run id it shows.

`unfinished` reads it, with the gradebook and the folders as a second opinion: a student is done only if the
record says so, every notebook is in autograded/, no test cell's score is NULL and the handed-in files are
the ones that were graded. `answers` is what `coursetools.regrade.KeepManualGrades` compares a re-graded
answer with. Writes are atomic (temporary name + rename), so a kill never leaves a torn record.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Optional

import nbformat

from coursecore import files

STATE_DIR = ".grading"  # in the course folder, next to gradebook.db
SKIP_PARTS = ("__pycache__", ".ipynb_checkpoints")


# ---- the record ------------------------------------------------------------------------------------------

def record_path(root: Path, assignment: str, student: str) -> Path:
    return Path(root) / STATE_DIR / assignment / f"{student}.json"


def read(root: Path, assignment: str, student: str) -> dict:
    """The student's record ({} when there is none, or it cannot be read)."""
    try:
        return json.loads(record_path(root, assignment, student).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _update(root: Path, assignment: str, student: str, **fields) -> None:
    data = {**read(root, assignment, student), **fields}
    files.write_json(record_path(root, assignment, student), data, indent=1, sort_keys=True)


def fingerprint(folder: Path) -> Optional[str]:
    """sha256 over the relative paths and bytes of every file in `folder` (None if it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not set(SKIP_PARTS) & set(p.parts)):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def answer_digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def answers_of(notebook_path: Path) -> dict[str, str]:
    """grade_id -> digest of every solution (answer) cell of a notebook."""
    nb = nbformat.read(notebook_path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: answer_digest(c.source) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution") and "grade_id" in c.metadata["nbgrader"]}


# ---- nbgrader's hooks (installed by `install`) -------------------------------------------------------------

def _who(notebooks) -> Optional[tuple[str, str]]:
    """(assignment, student) from the notebooks nbgrader is converting: <dir>/<student>/<assignment>/<nb>.ipynb.

    nbgrader passes the hook `student="*"` on a whole-class run, so the path is the only reliable source.
    """
    if not notebooks:
        return None
    folder = Path(notebooks[0]).parent
    return folder.name, folder.parent.name


def autograde_started(root, assignment=None, student=None, notebooks=None, **_) -> None:
    who = _who(notebooks)
    if who:
        _update(root, *who, graded=False, feedback=None)


def autograde_finished(root, assignment=None, student=None, notebooks=None, **_) -> None:
    who = _who(notebooks)
    if not who:
        return
    a, s = who
    autograded = Path(root) / "autograded" / s / a
    answers = {Path(nb).stem: answers_of(autograded / Path(nb).name) for nb in notebooks}
    _update(root, a, s, graded=True, run=uuid.uuid4().hex, answers=answers,
            submission=fingerprint(Path(root) / "submitted" / s / a))


def feedback_started(root, assignment=None, student=None, notebooks=None, **_) -> None:
    who = _who(notebooks)
    if who:
        _update(root, *who, feedback=None)


def feedback_finished(root, assignment=None, student=None, notebooks=None, **_) -> None:
    who = _who(notebooks)
    if who:
        _update(root, *who, feedback=read(root, *who).get("run"))


def install_hooks(c, root: Path) -> None:
    """Set the per-student hooks in an nbgrader config (coursetools/pipeline.py calls it)."""
    root = str(Path(root).resolve())
    c.Autograde.pre_convert_hook = functools.partial(autograde_started, root)
    c.Autograde.post_convert_hook = functools.partial(autograde_finished, root)
    c.GenerateFeedback.pre_convert_hook = functools.partial(feedback_started, root)
    c.GenerateFeedback.post_convert_hook = functools.partial(feedback_finished, root)


# ---- what is left to do -----------------------------------------------------------------------------------

def submitted_students(root: Path, assignment: str) -> list[str]:
    """Every student with a handed-in `submitted/<student>/<assignment>/` folder."""
    submitted = Path(root) / "submitted"
    return sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.is_dir() else []


def _missing_scores(root: Path, assignment: str, students: list[str]) -> dict[str, str]:
    """Students whose gradebook submission is missing or has a test cell without a score."""
    from nbgrader.api import Gradebook, MissingEntry

    db = Path(root) / "gradebook.db"
    if not db.exists():
        return {s: "no gradebook.db" for s in students}
    out = {}
    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            answers = {nb.name: {c.name for c in nb.solution_cells} for nb in gb.find_assignment(assignment).notebooks}
        except MissingEntry:
            return {s: f"assignment {assignment} is not in the gradebook" for s in students}
        for s in students:
            try:
                sub = gb.find_submission(assignment, s)
            except MissingEntry:
                out[s] = "no submission in the gradebook"
                continue
            empty = [g.name for nb in sub.notebooks for g in nb.grades
                     if g.name not in answers.get(nb.name, ()) and g.auto_score is None and g.manual_score is None]
            if empty:
                out[s] = "no score in the gradebook for " + ", ".join(sorted(empty))
    return out


def unfinished(root: Path, assignment: str, students: list[str]) -> dict[str, str]:
    """Student -> why their autograde is missing or incomplete (students absent are done)."""
    root = Path(root)
    notebooks = sorted(p.name for p in (root / "release" / assignment).glob("*.ipynb")) \
        or sorted(p.name for p in (root / "source" / assignment).glob("*.ipynb"))
    out = {}
    for s in students:
        record = read(root, assignment, s)
        autograded = root / "autograded" / s / assignment
        if not record and not autograded.exists():
            out[s] = "never autograded"
        elif not record.get("graded"):
            out[s] = "autograde did not finish (interrupted or failed)"
        elif any(not (autograded / nb).is_file() for nb in notebooks):
            out[s] = f"a notebook is missing in {autograded}"
        elif record.get("submission") != fingerprint(root / "submitted" / s / assignment):
            out[s] = "handed in again since it was graded"
    done = [s for s in students if s not in out]
    out.update(_missing_scores(root, assignment, done))
    return out


def feedback_unfinished(root: Path, assignment: str, students: list[str]) -> dict[str, str]:
    """Student -> why their feedback is missing or stale (only for students whose autograde is done)."""
    root = Path(root)
    out = {}
    for s in students:
        record = read(root, assignment, s)
        folder = root / "feedback" / s / assignment
        if not record.get("feedback") or record.get("feedback") != record.get("run"):
            out[s] = "no feedback for the latest autograde" if not folder.exists() else \
                "feedback did not finish (interrupted or failed) or predates the latest autograde"
        elif not any(folder.glob("*.html")):
            out[s] = f"no HTML in {folder}"
    return out
