"""The course's whole life in a scratch folder: release, a simulated class, collect, autograde, feedback, export.

This is what an instructor and a TA do in a term, run end to end and offline:

1. copy the course (nbgrader_config.py and source notebooks) into a scratch folder, never touching `course/`;
2. release: `nbgrader generate_assignment` + stubs + library + zip (`vitcourse.course.release`);
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
import json
import os
import re
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nbformat

from vitcourse.course import course_root, handin, impl, permissions, release
from autograder.registry import files_for

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
BACKUP_DIR = "backups"
GRADES_CSV = "grades.csv"
SCORE_TOLERANCE = 1e-6
SCORE_DIGITS = 2  # the grade table shows points to two decimals (partial credit by accuracy is continuous)
# Test cells whose points depend on how well a handed-in model was trained (partial credit by accuracy):
# a correct submission must earn some of their points, not necessarily all.
DATA_DEPENDENT = {"test_accuracy"}  # scores are sums of a few points; compare them exactly up to float noise


class LifecycleError(RuntimeError):
    """A step of the simulated term failed; the message says which and where its log is."""


# ---- course folder and notebooks --------------------------------------------------------------------------

def make_course(scratch: Path, assignments: Optional[list[str]] = None, course_dir: Optional[Path] = None) -> Path:
    """A fresh course folder in `scratch/course` with the config and the chosen source notebooks of `course_dir`
    (default: the active course, `course_root.current()`)."""
    course_dir = Path(course_dir or course_root.current().course)
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

    file: str  # a student module: transformer.py, ViT.py or finetune.py
    pattern: str  # regular expression found in the reference
    replacement: str
    fails: tuple[str, ...]  # grade_ids of the test cells that must lose their points

    def apply(self, folder: Path) -> None:
        path = folder / self.file
        if not path.exists():  # another assignment's file: this assignment ships other student modules
            return
        text = path.read_text(encoding="utf-8")
        new, count = re.subn(self.pattern, self.replacement, text, count=1)
        if count != 1:
            raise LifecycleError(f"bug pattern {self.pattern!r} not found in {path}: the reference changed; update vitcourse/course/lifecycle.py BUGS")
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
    # Rollout multiplied in the wrong order: the first layer acts last.
    "rollout_order": Bug("finetune.py", r"rollout = a @ rollout", "rollout = rollout @ a", ("test_attention_rollout",)),
    # Freezes each child module: cls_token and pos_embed, which sit on the model itself, keep learning.
    "root_params": Bug("finetune.py", r"model\.requires_grad_\(False\)\n",
                       "for child in model.children():\n        child.requires_grad_(False)\n", ("test_set_trainable",)),
    # Batch norm's running variance updated with the biased variance (divided by n, not n - 1).
    "bn_biased_running_var": Bug("cnn.py", r"momentum \* var\.detach\(\) \* \(n / \(n - 1\)\)", "momentum * var.detach()",
                                 ("test_batch_norm",)),
    # The fold forgets the convolution's own bias (right only for a conv without one).
    "fold_no_conv_bias": Bug("cnn.py", r"conv_bias = conv\.bias if conv\.bias is not None else ",
                             "conv_bias = ", ("test_fold_conv_bn",)),
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
    Student("cy", "forgot the 1/sqrt(d) scale; patches column by column; rollout in the wrong order; BN's running "
            "variance biased", bugs=("no_scale", "patch_order", "rollout_order", "bn_biased_running_var")),
    Student("dee", "split heads without the transpose; froze the children but not cls_token / pos_embed; forgot the "
            "conv bias in the fold", bugs=("split_no_transpose", "root_params", "fold_no_conv_bias")),
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
        for name in files_for(assignment):
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
    # The zip the notebook's hand-in cell writes (vitcourse/course/handin.py), as the LMS hands it to the TA.
    archive = course_dir / "downloaded" / assignment / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    return handin.make_handin(student.id, assignment, folder, json.loads(nb_path.read_text(encoding="utf-8")),
                              out_dir=archive).path


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


@dataclass
class GradingRun:
    """What one `autograde` call did, per student."""

    backup: Optional[Path]
    graded: list[str] = field(default_factory=list)  # autograded by this call
    kept: list[str] = field(default_factory=list)  # already completely autograded: left as they were
    feedback: list[str] = field(default_factory=list)  # feedback generated by this call
    failed: dict[str, str] = field(default_factory=dict)  # student -> why, with nbgrader's log

    def summary(self) -> str:
        return (f"{len(self.graded)} autograded, {len(self.kept)} already graded and kept, "
                f"{len(self.feedback)} given feedback, {len(self.failed)} failed")


class GradingFailed(LifecycleError):
    """Some students could not be graded; everyone else was graded and has feedback (`run` says who)."""

    def __init__(self, run: GradingRun, assignment: str):
        self.run = run
        lines = [f"{len(run.failed)} student(s) of {assignment} not graded or without feedback: "
                 + ", ".join(sorted(run.failed)),
                 f"Everyone else is graded and has feedback ({run.summary()}). Fix the cause below, then run "
                 f"`vitcourse grade {assignment}` again: it redoes exactly these students."]
        lines += [f"--- {s}: {why}" for s, why in sorted(run.failed.items())]
        super().__init__("\n".join(lines))


def _batches(students: list[str], jobs: int) -> list[list[str]]:
    """`jobs` near-equal contiguous slices of the class: one nbgrader process each."""
    jobs = max(1, min(jobs, len(students)))
    size, extra = divmod(len(students), jobs)
    out, start = [], 0
    for i in range(jobs):
        stop = start + size + (i < extra)
        out.append(students[start:stop])
        start = stop
    return [b for b in out if b]


def _nbgrader_for(course_dir: Path, command: str, assignment: str, batch: list[str], everyone: list[str],
                  threads: Optional[int] = None):
    """`nbgrader <command> <assignment> --force` over exactly `batch` (everyone else handed in is excluded)."""
    others = sorted(set(everyone) - set(batch))
    return release.nbgrader(course_dir, command, assignment, "--force",
                            f"--CourseDirectory.student_id_exclude={','.join(others)}", check=False, threads=threads)


def _log_about(proc, student: str) -> str:
    """nbgrader's lines that name this student (else the end of its log)."""
    text = proc.stdout + proc.stderr
    lines = [l for l in text.splitlines() if student in l or "Error" in l or "error" in l]
    return "\n".join(lines[-40:]) if lines else text[-3000:]


def _run_batches(course_dir: Path, command: str, assignment: str, batches: list[list[str]], everyone: list[str],
                 jobs: int) -> dict[str, object]:
    """Run `command` over each batch, `jobs` nbgrader processes at a time; student -> the process that ran them."""
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        procs = list(pool.map(lambda b: _nbgrader_for(course_dir, command, assignment, b, everyone, threads), batches))
    return {s: proc for batch, proc in zip(batches, procs) for s in batch}


def _keep_logs(outputs: Optional[list[str]], procs: dict) -> None:
    """Append each distinct nbgrader process's log (stdout + stderr) once."""
    if outputs is not None:
        for proc in {id(p): p for p in procs.values()}.values():
            outputs.append(proc.stdout + proc.stderr)


def autograde(course_dir: Path, assignment: str, students: Optional[list[str]] = None, jobs: int = 1,
              force: bool = False, collect: bool = True, log=print,
              outputs: Optional[list[str]] = None) -> GradingRun:
    """Collect, back up the gradebook, autograde and generate feedback for one assignment: resumable.

    Without `force` only the students whose autograde is missing or incomplete are autograded
    (`vitcourse.course.progress.unfinished`: interrupted, failed, handed in again, a NULL score in the gradebook),
    and only those whose feedback is missing, incomplete or older than their grades get feedback; everyone
    else is left exactly as they were. With `force`, every student is autograded again (manual grades and
    their graded state are kept: vitcourse.course.regrade.KeepManualGrades).

    `jobs` nbgrader processes run side by side, each over a contiguous slice of the class (one process per
    student would pay Python + nbgrader's start-up for every notebook). A student whose grading fails does
    not stop anyone else: they are tried once more on their own, and if they still fail, the call raises
    GradingFailed after everyone else was graded and given feedback, naming them with nbgrader's log.
    `outputs` collects what each `nbgrader autograde` process printed (its log: warnings included).
    """
    from vitcourse.course import progress

    course_dir = Path(course_dir)
    archive = course_dir / "downloaded" / assignment / "archive"
    if collect and archive.is_dir() and any(archive.iterdir()):
        release.nbgrader(course_dir, "zip_collect", assignment, "--force")
    if (course_dir / "submitted").is_dir():  # however they were collected: no link is followed (nbgrader's copy
        for folder in (course_dir / "submitted").glob(f"*/{assignment}"):  # would), no student reads another's
            permissions.drop_links(folder)
        permissions.close(course_dir / "submitted")
    backup = backup_gradebook(course_dir)
    log(f"  gradebook backed up to {backup}")
    everyone = progress.submitted_students(course_dir, assignment)
    absent = [s for s in (students or []) if s not in everyone]
    if absent:
        log(f"  nothing handed in for {', '.join(absent)} (no submitted/<id>/{assignment}/): not graded")
    students = [s for s in (students or everyone) if s in everyone]
    todo = list(students) if force else sorted(progress.unfinished(course_dir, assignment, students))
    run = GradingRun(backup, kept=[s for s in students if s not in todo])
    if todo:
        from autograder import kernel_sandbox

        try:  # once, before anyone: a kernel that cannot start would grade the whole class 0
            kernel_sandbox.preflight()
        except kernel_sandbox.SandboxUnavailable as err:
            raise LifecycleError(f"nothing of {assignment} was graded: {err}") from None
        os.environ[kernel_sandbox.CHECKED_ENV] = "1"  # the nbgrader processes below need not check again
        log(f"  autograding {len(todo)} of {len(students)} students in {min(jobs, len(todo))} nbgrader process(es)"
            + (f"; {len(run.kept)} already graded are kept" if run.kept else ""))
        # nbgrader sets NBGRADER_EXECUTION while it runs the notebooks: they train in fast mode.
        procs = _run_batches(course_dir, "autograde", assignment, _batches(todo, jobs), everyone, jobs)
        _keep_logs(outputs, procs)
        left = sorted(progress.unfinished(course_dir, assignment, todo))
        if left:
            # A batch stops at an error it cannot skip (a locked gradebook aborts the process): once more, alone.
            log(f"  {len(left)} not graded ({', '.join(left)}); trying each once more on its own")
            retried = _run_batches(course_dir, "autograde", assignment, [[s] for s in left], everyone, jobs)
            _keep_logs(outputs, retried)
            procs.update(retried)
        why = progress.unfinished(course_dir, assignment, todo)
        run.failed = {s: f"{reason}\n{_log_about(procs[s], s)}" for s, reason in why.items()}
        run.graded = [s for s in todo if s not in why]
    graded = [s for s in students if s not in run.failed]
    fb = graded if force else sorted(progress.feedback_unfinished(course_dir, assignment, graded))
    if fb:
        procs = _run_batches(course_dir, "generate_feedback", assignment, [fb], everyone, 1)
        why = progress.feedback_unfinished(course_dir, assignment, fb)
        run.failed.update({s: f"feedback: {reason}\n{_log_about(procs[s], s)}" for s, reason in why.items()})
        run.feedback = [s for s in fb if s not in why]
    log(f"  {assignment}: {run.summary()}")
    if run.failed:
        raise GradingFailed(run, assignment)
    return run


def generate_feedback(course_dir: Path, assignment: str, students: Optional[list[str]] = None,
                      force: bool = False, log=print) -> list[str]:
    """Feedback for the graded students whose feedback is missing or stale (all graded ones with `force`,
    e.g. after manual grading). Returns who got feedback; raises naming who did not."""
    from vitcourse.course import progress

    course_dir = Path(course_dir)
    everyone = progress.submitted_students(course_dir, assignment)
    students = [s for s in (students or everyone) if s in everyone]
    not_graded = progress.unfinished(course_dir, assignment, students)
    graded = [s for s in students if s not in not_graded]
    todo = graded if force else sorted(progress.feedback_unfinished(course_dir, assignment, graded))
    if todo:
        procs = _run_batches(course_dir, "generate_feedback", assignment, [todo], everyone, 1)
        why = progress.feedback_unfinished(course_dir, assignment, todo)
        if why:
            raise LifecycleError(f"feedback for {assignment} failed for {', '.join(sorted(why))}:\n" + "\n".join(
                f"--- {s}: {r}\n{_log_about(procs[s], s)}" for s, r in sorted(why.items())))
    log(f"  {assignment}: feedback for {len(todo)} student(s)"
        + (f"; not autograded yet, so no feedback: {', '.join(sorted(not_graded))}" if not_graded else ""))
    return todo


def incomplete_grading(course_dir: Path) -> dict[str, dict[str, str]]:
    """assignment -> student -> why, for every handed-in submission whose autograde is missing or incomplete."""
    from vitcourse.course import progress

    course_dir = Path(course_dir)
    submitted = course_dir / "submitted"
    assignments = sorted({p.name for s in submitted.iterdir() if s.is_dir() for p in s.iterdir() if p.is_dir()}) \
        if submitted.is_dir() else []
    out = {}
    for a in assignments:
        why = progress.unfinished(course_dir, a, progress.submitted_students(course_dir, a))
        if why:
            out[a] = why
    return out


def export_grades(course_dir: Path, allow_incomplete: bool = False) -> Path:
    """`nbgrader export` to grades.csv in the course folder, refusing while any autograde is unfinished.

    A student whose autograde was interrupted has NULL scores, which nbgrader exports as 0.0 (exit 0): the
    export refuses, naming them, unless `allow_incomplete`. Atomic through the course's export plugin
    (`vitcourse.course.export.AtomicCsvExportPlugin`, set in nbgrader_config.py): a killed export leaves the
    previous complete grades.csv, never a partial one.
    """
    course_dir = Path(course_dir)
    missing = incomplete_grading(course_dir)
    if missing and not allow_incomplete:
        raise LifecycleError("not exporting: these submissions are not completely autograded and would be "
                             "exported as 0 — run `vitcourse grade <assignment>` first:\n" + "\n".join(
                                 f"  {a}/{s}: {why}" for a, students in missing.items() for s, why in students.items()))
    out = course_dir / GRADES_CSV
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
    autograde_logs: dict[str, list[str]] = field(default_factory=dict)  # assignment -> what autograde printed

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
        result.backups.append(autograde(course_dir, a, [s.id for s in students], jobs=jobs, log=log,
                                        outputs=result.autograde_logs.setdefault(a, [])).backup)
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


# ---- the reference checkpoint a good student hands in -------------------------------------------------------

VIT_CHECKPOINT = "vit_checkpoint.pt"  # the file assignment 3 writes and grades (see course/notebooks/a3_vit.py)
CHECKPOINT_DATA = "digits"  # offline: the demo's class trains on the embedded digits


def grades_checkpoint(assignments: list[str], course_dir: Optional[Path] = None) -> list[str]:
    """The assignments whose notebook grades a handed-in VIT_CHECKPOINT."""
    course_dir = Path(course_dir or course_root.current().course)
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
    from vitcourse.analysis.complexity import count_parameters
    from vitcourse.training.recipes import default_recipe
    from vitcourse.training.train import evaluate, train

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
