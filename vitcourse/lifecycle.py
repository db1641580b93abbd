"""The course's whole life in a scratch folder: release, a simulated class, collect, autograde, feedback, export.

This is what an instructor and a TA do in a term, run end to end and offline:

1. copy the course (nbgrader_config.py and source notebooks) into a scratch folder, never touching `course/`;
2. release: `nbgrader generate_assignment` + stubs + library + zip (`vitcourse.release`);
3. a class hands in zips: students who copied the reference, who left the stubs, who have a bug, who deleted
   a test cell, whose cells ran out of order (`STUDENTS`);
4. `nbgrader zip_collect`, a timestamped backup of `gradebook.db`, `nbgrader autograde`,
   `nbgrader generate_feedback`, `nbgrader export` (grades CSV);
5. compare every autograded score with what the student's work deserves, computed from the notebook's
   points (a student who broke `attention` loses exactly the points of the attention test cell).

`vitcourse demo` runs it and prints the class's grade table; the lifecycle tests run it on two assignments.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import sqlite3
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nbformat

from vitcourse import impl, release
from vitcourse.stubs import STUB_FILES

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
BACKUP_DIR = "backups"
GRADES_CSV = "grades.csv"
LOCK_RETRIES = 2  # parallel autograde: times a student is graded again after an SQLite lock
SCORE_TOLERANCE = 1e-6
SCORE_DIGITS = 2  # the grade table shows points to two decimals (partial credit by accuracy is continuous)
# Test cells whose points depend on how well a handed-in model was trained (partial credit by accuracy):
# a correct submission must earn some of their points, not necessarily all.
DATA_DEPENDENT = {"test_accuracy"}  # scores are sums of a few points; compare them exactly up to float noise


class LifecycleError(RuntimeError):
    """A step of the simulated term failed; the message says which and where its log is."""


# ---- course folder and notebooks --------------------------------------------------------------------------

def make_course(scratch: Path, assignments: Optional[list[str]] = None, course_dir: Path = release.COURSE_DIR) -> Path:
    """A fresh course folder in `scratch/course` with the config and the chosen source notebooks."""
    dest = Path(scratch) / "course"
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "source").mkdir(parents=True)
    shutil.copy2(course_dir / "nbgrader_config.py", dest / "nbgrader_config.py")
    for name in assignments or release.source_assignments(course_dir):
        shutil.copytree(course_dir / "source" / name, dest / "source" / name)
    return dest


def cells_by_id(nb) -> dict:
    """nbgrader cells of a notebook by grade_id."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata and "grade_id" in c.metadata["nbgrader"]}


def test_points(nb) -> dict[str, float]:
    """Points of every autograded test cell (grade and not solution), by grade_id."""
    return {gid: float(c.metadata["nbgrader"]["points"]) for gid, c in cells_by_id(nb).items()
            if c.metadata["nbgrader"].get("grade") and not c.metadata["nbgrader"].get("solution")}


def answer_points(nb) -> dict[str, float]:
    """Points of the manually graded cells (grade and solution), by grade_id."""
    return {gid: float(c.metadata["nbgrader"]["points"]) for gid, c in cells_by_id(nb).items()
            if c.metadata["nbgrader"].get("grade") and c.metadata["nbgrader"].get("solution")}


def fill_solutions(release_nb, source_nb, answers: bool = True) -> None:
    """Give a release notebook the source's solution cells (what a student who solved everything writes)."""
    source_cells = cells_by_id(source_nb)
    for gid, cell in cells_by_id(release_nb).items():
        meta = cell.metadata["nbgrader"]
        if meta.get("solution") and (answers or cell.cell_type == "code"):
            src = source_cells[gid].source
            cell.source = "\n".join(l for l in src.splitlines() if l.strip() not in (SOLUTION_BEGIN, SOLUTION_END))


# ---- the simulated class --------------------------------------------------------------------------------

@dataclass
class Bug:
    """A plausible student mistake: a text edit of the reference, and the test cells it fails."""

    file: str  # transformer.py or ViT.py
    pattern: str  # regular expression found in the reference
    replacement: str
    fails: tuple[str, ...]  # grade_ids of the test cells that must lose their points

    def apply(self, folder: Path) -> None:
        path = folder / self.file
        text = path.read_text(encoding="utf-8")
        new, count = re.subn(self.pattern, self.replacement, text, count=1)
        if count != 1:
            raise LifecycleError(f"bug pattern {self.pattern!r} not found in {path}: the reference changed; update vitcourse/lifecycle.py BUGS")
        path.write_text(new, encoding="utf-8")


# A bug costs the points of its own part only: the composites (Attention.forward, ViT.model) are graded with
# built-in stand-ins for the student parts that already failed on their own (docs/grading.md, issue 9).
BUGS = {
    # Forgets the 1/sqrt(d) scale: softmax too sharp, differs from torch's attention.
    "no_scale": Bug("transformer.py", r"\s*/\s*math\.sqrt\(q\.shape\[-1\]\)", "", ("test_attention",)),
    # Reshapes to (B, h, N, d) directly: heads get interleaved tokens instead of a block of features.
    "split_no_transpose": Bug("transformer.py", r"x = x\.reshape\(B, N, self\.num_heads, self\.head_dim\)[^\n]*\n(\s*)return x\.transpose\(1, 2\)",
                              r"return x.reshape(B, self.num_heads, N, self.head_dim)",
                              # (not test_accuracy: the grader evaluates the handed-in checkpoint in the
                              # reference ViT, outside the kernel, as on Gradescope; the bug costs points here)
                              ("test_split_heads",)),
    # Patches column by column.
    "patch_order": Bug("ViT.py", r"x\.permute\(0, 2, 4, 3, 5, 1\)", "x.permute(0, 4, 2, 3, 5, 1)", ("test_patchify",)),
}


@dataclass
class Student:
    """One simulated student and what they hand in."""

    id: str
    story: str  # one line for the grade table
    code: str = "reference"  # 'reference' (solved everything) or 'stubs' (touched nothing)
    bugs: tuple[str, ...] = ()  # keys of BUGS applied to the reference
    answers: bool = True  # fills the notebook's solution cells
    delete_cells: tuple[str, ...] = ()  # grade_ids of test cells deleted from the notebook
    out_of_order: bool = False  # a notebook answer defined below its test, executed out of order


STUDENTS = (
    Student("ada", "solved everything"),
    Student("ben", "handed in the untouched release", code="stubs", answers=False),
    Student("cy", "forgot the 1/sqrt(d) scale; patches column by column", bugs=("no_scale", "patch_order")),
    Student("dee", "split heads without the transpose", bugs=("split_no_transpose",)),
    Student("eli", "deleted a test cell (nbgrader adds it back)", delete_cells=("test_mlp", "test_patchify")),
    Student("fay", "ran cells out of order: an answer defined below its test", out_of_order=True),
)


def _make_out_of_order(nb) -> list[str]:
    """Move each numeric answer below the last cell and scramble the execution counts; return moved ids."""
    moved = []
    for gid, cell in list(cells_by_id(nb).items()):
        meta = cell.metadata["nbgrader"]
        if meta.get("solution") and not meta.get("grade") and cell.cell_type == "code":
            # The student answered in a scratch cell at the bottom (run by hand before the test).
            scratch = nbformat.v4.new_code_cell(cell.source)
            nb.cells.append(scratch)
            cell.source = "# moved my answer to the end of the notebook"
            moved.append(gid)
    counts = list(range(len(nb.cells), 0, -1))
    for cell, count in zip(nb.cells, counts):
        if cell.cell_type == "code":
            cell.execution_count = count
    return moved


def expected_losses(student: Student, assignment: str, release_nb, course_dir: Path) -> set[str]:
    """The test cells a student's submission must fail: everything for stubs, bugs' cells, misplaced answers."""
    tests = test_points(release_nb)
    if student.code == "stubs":
        return set(tests)
    lost = {gid for bug in student.bugs for gid in BUGS[bug].fails if gid in tests}
    if student.out_of_order:
        # A test of a numeric answer runs before the (moved) answer when nbgrader executes top to bottom.
        source_nb = nbformat.read(course_dir / "source" / assignment / f"{assignment}.ipynb", as_version=4)
        for moved in _answer_tests(source_nb):
            lost |= {moved} & set(tests)
    return lost


def _answer_tests(source_nb) -> set[str]:
    """Test cells that read a variable defined in a notebook solution cell (numeric answers)."""
    names = set()
    for gid, cell in cells_by_id(source_nb).items():
        meta = cell.metadata["nbgrader"]
        if meta.get("solution") and not meta.get("grade") and cell.cell_type == "code":
            names |= set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", cell.source, flags=re.M))
    return {gid for gid, cell in cells_by_id(source_nb).items()
            if gid in test_points(source_nb) and any(re.search(rf"\b{n}\b", cell.source) for n in names)}


def make_submission(student: Student, assignment: str, course_dir: Path, work: Path,
                    extra_files: Optional[dict[str, Path]] = None) -> Path:
    """Write `<work>/<student>/<assignment>/` and zip it as the LMS hands it to the TA; return the zip."""
    release_dir = course_dir / "release" / assignment
    folder = work / student.id / assignment
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(release_dir, folder)
    if student.code == "reference":
        for name in STUB_FILES:
            shutil.copy2(impl.solutions_dir() / name, folder / name)
        for bug in student.bugs:
            BUGS[bug].apply(folder)
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, folder / name)  # e.g. the trained checkpoint assignment 3 grades
    nb_path = folder / f"{assignment}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    if student.answers:
        source_nb = nbformat.read(course_dir / "source" / assignment / f"{assignment}.ipynb", as_version=4)
        fill_solutions(nb, source_nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in student.delete_cells]
    if student.out_of_order:
        _make_out_of_order(nb)
    nbformat.write(nb, nb_path)
    archive = course_dir / "downloaded" / assignment / "archive" / f"{student.id}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, Path(assignment) / path.relative_to(folder))
    return archive


# ---- grading --------------------------------------------------------------------------------------------

def backup_gradebook(course_dir: Path) -> Optional[Path]:
    """Copy gradebook.db to backups/gradebook-<UTC time>.db (SQLite's online backup: consistent even mid-write)."""
    db = Path(course_dir) / "gradebook.db"
    if not db.exists():
        return None
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = Path(course_dir) / BACKUP_DIR / f"gradebook-{stamp}.db"
    target.parent.mkdir(exist_ok=True)
    with sqlite3.connect(db) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def autograde(course_dir: Path, assignment: str, students: Optional[list[str]] = None, jobs: int = 1, log=print) -> Optional[Path]:
    """zip_collect, back up the gradebook, autograde and generate feedback for one assignment.

    With jobs > 1 the students are autograded in parallel, one `nbgrader autograde --student` each (every
    notebook runs in its own kernel; the gradebook's writes are short SQLite transactions, and a student
    whose write met a lock is simply graded again).
    """
    release.nbgrader(course_dir, "zip_collect", assignment, "--force")
    backup = backup_gradebook(course_dir)
    log(f"  gradebook backed up to {backup}")
    # nbgrader sets NBGRADER_EXECUTION while it runs the notebooks: they train in fast mode.
    if jobs <= 1 or not students:
        release.nbgrader(course_dir, "autograde", assignment, "--force")
    else:
        def one(student: str) -> Optional[str]:
            """None when graded, else why not (the other students go on)."""
            args = ("autograde", assignment, "--force", f"--student={student}")
            for attempt in range(LOCK_RETRIES + 1):
                proc = release.nbgrader(course_dir, *args, check=False, threads=max(1, (os.cpu_count() or 1) // jobs))
                if proc.returncode == 0:
                    return None
                if "database is locked" not in proc.stdout + proc.stderr or attempt == LOCK_RETRIES:
                    return f"`nbgrader {' '.join(args)}` failed:\n{(proc.stdout + proc.stderr)[-4000:]}"

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            failed = {s: why for s, why in zip(students, pool.map(one, students)) if why}
    release.nbgrader(course_dir, "generate_feedback", assignment, "--force")
    if jobs > 1 and students and failed:
        # Everyone else has grades and feedback; the TA re-runs only these (README: recovering).
        raise LifecycleError(f"{len(failed)} of {len(students)} students were not graded: "
                             + ", ".join(failed) + "\n" + "\n".join(failed.values()))
    return backup


def export_grades(course_dir: Path) -> Path:
    """`nbgrader export` to grades.csv in the course folder.

    Atomic through the course's export plugin (`vitcourse.export.AtomicCsvExportPlugin`, set in
    nbgrader_config.py): a killed export leaves the previous complete grades.csv, never a partial one.
    """
    out = Path(course_dir) / GRADES_CSV
    release.nbgrader(course_dir, "export", "--to", str(out))
    return out


def read_scores(course_dir: Path, assignment: str) -> dict[str, dict]:
    """Per student: autograded score per test cell, manual cells awaiting a TA, and the total so far."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{Path(course_dir) / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            cells, pending = {}, 0.0
            for nb in sub.notebooks:
                for grade in nb.grades:
                    if grade.cell.cell_type == "code":  # autograded test cells (our answers are markdown)
                        cells[grade.name] = float(grade.score)
                    elif grade.needs_manual_grade:
                        pending += float(grade.max_score)
            scores[sub.student_id] = {"cells": cells, "score": float(sub.score), "max": float(sub.max_score),
                                      "pending": pending}
    return scores


# ---- the whole term -------------------------------------------------------------------------------------

@dataclass
class TermResult:
    """What the simulated term produced, for the demo's table and the lifecycle tests."""

    course_dir: Path
    assignments: list[str]
    students: tuple[Student, ...]
    scores: dict[str, dict[str, dict]] = field(default_factory=dict)  # assignment -> student -> scores
    points: dict[str, dict[str, float]] = field(default_factory=dict)  # assignment -> test cell -> points
    lost: dict[str, dict[str, set]] = field(default_factory=dict)  # assignment -> student -> cells to lose
    backups: list[Path] = field(default_factory=list)
    grades_csv: Optional[Path] = None

    def autograded(self, assignment: str, student: str) -> float:
        return sum(self.scores[assignment][student]["cells"].values())

    def max_auto(self, assignment: str) -> float:
        return sum(self.points[assignment].values())

    def problems(self, assignment: str, student: Student) -> list[str]:
        """How a student's autograded cells differ from what their work deserves (empty: as expected).

        Untouched stubs earn 0 everywhere; a cell the student's mistake touches earns less than its
        points (the grader may give partial credit); every other cell earns all its points.
        """
        got = self.scores[assignment][student.id]["cells"]
        out = []
        for gid, points in self.points[assignment].items():
            score = got.get(gid)
            if score is None:
                out.append(f"{gid}: not graded")
            elif student.code == "stubs" and score > SCORE_TOLERANCE:
                out.append(f"{gid}: {score:g} for untouched stubs, expected 0")
            elif student.code != "stubs" and gid in self.lost[assignment][student.id] and score >= points - SCORE_TOLERANCE:
                out.append(f"{gid}: full {score:g}/{points:g} although the submission is wrong there")
            elif student.code != "stubs" and gid in DATA_DEPENDENT and gid not in self.lost[assignment][student.id]:
                if score <= SCORE_TOLERANCE:
                    out.append(f"{gid}: 0/{points:g} for a correctly trained model")
            elif student.code != "stubs" and gid not in self.lost[assignment][student.id] and abs(score - points) > SCORE_TOLERANCE:
                out.append(f"{gid}: {score:g}/{points:g}, expected full points")
        return out

    def mismatches(self) -> list[str]:
        """Every (assignment, student) whose autograded cells differ from what their work deserves."""
        return [f"{a}/{s.id} ({s.story}): " + "; ".join(self.problems(a, s))
                for a in self.assignments for s in self.students if self.problems(a, s)]

    def feedback_html(self, assignment: str, student: str) -> Path:
        return self.course_dir / "feedback" / student / assignment / f"{assignment}.html"

    def table(self) -> str:
        """The class's grade table: autograded points per assignment (+ points awaiting a TA), checked."""
        width = max(24, *(len(a) + 2 for a in self.assignments))
        head = f"{'student':<8}" + "".join(f"{a:>{width}}" for a in self.assignments) + "   story"
        rows = [head, "-" * len(head)]
        for s in self.students:
            cells = []
            for a in self.assignments:
                pending = self.scores[a][s.id]["pending"]
                mark = "ok" if not self.problems(a, s) else "UNEXPECTED"
                score = round(self.autograded(a, s.id), SCORE_DIGITS)
                cells.append(f"{score:g}/{self.max_auto(a):g}" + (f" +{pending:g}TA" if pending else "") + f" {mark}")
            rows.append(f"{s.id:<8}" + "".join(f"{c:>{width}}" for c in cells) + f"   {s.story}")
        return "\n".join(rows)


def run_term(scratch: Path, assignments: Optional[list[str]] = None, students=STUDENTS, jobs: int = 1,
             extra_files: Optional[dict[str, dict[str, Path]]] = None, log=print) -> TermResult:
    """Release, hand in, collect, autograde, feed back and export for a simulated class, in `scratch`."""
    scratch = Path(scratch)
    course_dir = make_course(scratch, assignments)
    names = release.source_assignments(course_dir)
    log(f"course in {course_dir}: {', '.join(names)}")
    release.release(course_dir, names, log=lambda m: log(f"  {m}"))
    result = TermResult(course_dir, names, tuple(students))
    for a in names:
        release_nb = nbformat.read(course_dir / "release" / a / f"{a}.ipynb", as_version=4)
        result.points[a] = test_points(release_nb)
        result.lost[a] = {}
        for s in students:
            make_submission(s, a, course_dir, scratch / "students", (extra_files or {}).get(a))
            result.lost[a][s.id] = expected_losses(s, a, release_nb, course_dir)
        log(f"{a}: {len(students)} submissions handed in; collecting and autograding")
        result.backups.append(autograde(course_dir, a, [s.id for s in students], jobs=jobs, log=log))
        result.scores[a] = read_scores(course_dir, a)
    result.grades_csv = export_grades(course_dir)
    return result


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

    from vitcourse.runtime import FAST_ENV

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
    errors = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        kind = "tests" if meta.get("grade") and not meta.get("solution") else "solution" if meta.get("solution") else "plain"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(CellError(index, meta.get("grade_id"), kind, out.get("ename", ""), out.get("evalue", "")))
    return nb, errors


def prepare_source_run(assignment: str, dest: Path, course_dir: Path = release.COURSE_DIR) -> Path:
    """Copy a source notebook next to the reference (`solutions/*.py`) in `dest`; return the notebook path.

    The source notebook's checks must all pass with the reference as the student's files. The copy lives
    in a scratch folder: nothing with a solution in it is ever written under course/source/.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{assignment}.ipynb"
    shutil.copy2(course_dir / "source" / assignment / f"{assignment}.ipynb", target)
    for name in STUB_FILES:
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


# ---- the reference checkpoint a good student hands in -------------------------------------------------------

VIT_CHECKPOINT = "vit_checkpoint.pt"  # the file assignment 3 writes and grades (see course/notebooks/a3_vit.py)
CHECKPOINT_DATA = "digits"  # offline: the demo's class trains on the embedded digits


def grades_checkpoint(assignments: list[str], course_dir: Path = release.COURSE_DIR) -> list[str]:
    """The assignments whose notebook grades a handed-in VIT_CHECKPOINT."""
    return [a for a in assignments
            if VIT_CHECKPOINT in (course_dir / "source" / a / f"{a}.ipynb").read_text(encoding="utf-8")]


def train_reference_checkpoint(path: Path, epochs: Optional[int] = None, seed: int = 0, log=print) -> dict:
    """Train the reference ViT with the course's digits recipe and save it as assignment 3 does.

    Returns {'parameters', 'test_accuracy', 'seconds', 'path'}. This is the checkpoint the simulated
    students who solved assignment 3 hand in; its accuracy is what the hidden test re-measures.
    """
    import dataclasses
    import time

    import torch

    from data_utils import load_dataset
    from vitcourse.complexity import count_parameters
    from vitcourse.recipes import default_recipe
    from vitcourse.train import evaluate, train

    splits = load_dataset(CHECKPOINT_DATA, seed=seed)
    model_config, cfg = default_recipe(CHECKPOINT_DATA, "vit")
    cfg = dataclasses.replace(cfg, progress=False, seed=seed, **({"epochs": epochs} if epochs else {}))
    torch.manual_seed(seed)
    model = impl.reference().ViT.ViT(**model_config)
    params = count_parameters(model.config)["total"]
    log(f"reference ViT on {CHECKPOINT_DATA}: {params:,} parameters, {model.config.num_tokens} tokens per image, "
        f"{cfg.epochs} epochs")
    start = time.perf_counter()
    train(model, splits, cfg)
    seconds = time.perf_counter() - start
    acc = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std).accuracy
    log(f"test accuracy {acc:.1%} after {cfg.epochs} epochs in {seconds:.0f} s")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.cpu().state_dict(), "config": model_config, "data": CHECKPOINT_DATA, "classes": None,
                "mean": splits.mean, "std": splits.std}, path)
    return {"parameters": params, "test_accuracy": acc, "seconds": seconds, "path": path}
