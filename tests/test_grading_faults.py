"""Faults lose nothing: SIGKILL mid-autograde, mid-feedback and mid-export, a failing student under jobs=2,
and a re-grade with --force after manual grading, all through the real nbgrader on a scratch a5 course.

The oracle is a control course graded once without interruption (`grading.autograde`): after each fault,
the documented recovery (README: `vitcourse grade <a>`, i.e. `grading.autograde` without --force,
then `vitcourse export`) must give every student exactly the control's scores and feedback, redoing only the
students the fault left unfinished.
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from coursetools import grading, term, progress, release

A = "a5_analysis"
CLASS = (
    term.Student("ada", "solved everything"),
    term.Student("ben", "untouched release", code="stubs", answers=False),
    term.Student("cy", "ran cells out of order", out_of_order=True),
    term.Student("dee", "deleted a test cell", delete_cells=("test_num_tokens",)),
)
IDS = [s.id for s in CLASS]
QUIET = dict(log=lambda _: None)
pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # make test-e2e (CI runs it)


def _collected(scratch: Path) -> Path:
    """A released a5 course with the class handed in and collected, nothing graded."""
    course = term.make_course(scratch, [A])
    release.release(course, [A], zip_=False, log=lambda _: None)
    for s in CLASS:
        term.make_submission(s, A, course, scratch / "students")
    release.nbgrader(course, "zip_collect", A, "--force")
    return course


def _copy(course: Path, dest: Path) -> Path:
    # nbgrader_config.py takes the course root from its own folder: a copy is a course of its own.
    shutil.copytree(course, dest, symlinks=True)
    return dest


def _scores(course: Path) -> dict:
    """student -> grade_id -> (score, needs_manual_grade), from the gradebook."""
    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(A):
            out[sub.student_id] = {g.name: (g.score, g.needs_manual_grade) for nb in sub.notebooks for g in nb.grades}
    return out


def _feedback_ok(course: Path, student: str) -> bool:
    page = course / "feedback" / student / A / f"{A}.html"
    return page.is_file() and page.read_text(encoding="utf-8").rstrip().endswith("</html>")


def _kill_when(course: Path, args: list[str], ready) -> subprocess.CompletedProcess:
    """Run `nbgrader <args>` and SIGKILL its whole process group as soon as `ready()` is true."""
    proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=release.nbgrader_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None and not ready():
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def _vitcourse(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursetools", *args], capture_output=True, text=True,
                          env=release.nbgrader_env())


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    return _collected(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def control(collected, tmp_path_factory):
    """The oracle: the same class graded once, uninterrupted."""
    course = _copy(collected, tmp_path_factory.mktemp("control") / "course")
    run = grading.autograde(course, A, **QUIET)
    assert sorted(run.graded) == IDS and sorted(run.feedback) == IDS
    return course


def test_killed_autograde_then_rerun_grades_exactly_the_unfinished_students(collected, control, tmp_path):
    course = _copy(collected, tmp_path / "course")
    # SIGKILL nbgrader while the second student is in flight (the first is completely graded).
    assert _kill_when(course, ["autograde", A, "--force"], lambda: (course / "autograded" / IDS[1] / A).exists())
    unfinished = progress.unfinished(course, A, IDS)
    assert IDS[0] not in unfinished and IDS[1] in unfinished, unfinished
    # The half-graded student is not exported as 0.0 with exit 0: the export refuses and names them.
    refused = _vitcourse("export", "--course", str(course))
    assert refused.returncode == 1 and IDS[1] in refused.stdout and not (course / "grades.csv").exists()
    first = (course / "autograded" / IDS[0] / A / f"{A}.ipynb").stat().st_mtime_ns

    # The README's recovery, exactly as written there.
    rerun = _vitcourse("grade", A, "--course", str(course))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"autograding {len(unfinished)} of {len(IDS)} students" in rerun.stdout
    assert (course / "autograded" / IDS[0] / A / f"{A}.ipynb").stat().st_mtime_ns == first  # not redone
    assert _scores(course) == _scores(control)
    assert all(_feedback_ok(course, s) for s in IDS)
    assert _vitcourse("export", "--course", str(course)).returncode == 0
    rows = {r["student_id"]: float(r["raw_score"]) for r in csv.DictReader((course / "grades.csv").open())}
    control_rows = {r["student_id"]: float(r["raw_score"]) for r in csv.DictReader(grading.export_grades(control).open())}
    assert rows == control_rows and set(rows) == set(IDS)


def test_killed_feedback_then_rerun_gives_everyone_feedback(control, tmp_path):
    course = _copy(control, tmp_path / "course")
    shutil.rmtree(course / "feedback")
    first = course / "feedback" / IDS[0] / A
    assert _kill_when(course, ["generate_feedback", A, "--force"], first.exists)
    left = progress.feedback_unfinished(course, A, IDS)
    assert IDS[0] in left, left  # its folder exists, its feedback did not finish: plain nbgrader would skip it
    run = grading.autograde(course, A, **QUIET)
    assert run.graded == [] and sorted(run.feedback) == sorted(left)
    assert all(_feedback_ok(course, s) for s in IDS)
    for s in IDS:
        got = (course / "feedback" / s / A / f"{A}.html").read_text(encoding="utf-8")
        want = (control / "feedback" / s / A / f"{A}.html").read_text(encoding="utf-8")
        assert got.replace(str(course), "") == want.replace(str(control), ""), s


def test_killed_export_then_rerun_writes_the_complete_csv(control, tmp_path):
    from test_export import KILLER

    course = _copy(control, tmp_path / "course")
    (course / "killed_export.py").write_text(KILLER)
    out = grading.export_grades(course)
    complete = out.read_text()
    killed = release.nbgrader(course, "export", "--to", str(out),
                              "--ExportApp.plugin_class=killed_export.KilledAtomic", check=False)
    assert killed.returncode != 0 and out.read_text() == complete
    assert grading.export_grades(course).read_text() == complete


def test_jobs_2_with_a_failing_student_grades_everyone_else_in_two_processes(collected, control, tmp_path, monkeypatch):
    course = _copy(collected, tmp_path / "course")
    bad = IDS[1]
    (course / "submitted" / bad / A / f"{A}.ipynb").write_text("{ not a notebook")  # nbgrader cannot read it
    calls = []
    real = release.nbgrader

    def recording(course_dir, *args, **kwargs):
        calls.append(args)
        return real(course_dir, *args, **kwargs)

    monkeypatch.setattr(release, "nbgrader", recording)
    with pytest.raises(grading.GradingFailed) as err:
        grading.autograde(course, A, jobs=2, collect=False, **QUIET)  # collecting would restore the notebook
    run = err.value.run
    assert list(run.failed) == [bad] and bad in str(err.value) and "vitcourse grade" in str(err.value)
    others = [s for s in IDS if s != bad]
    assert sorted(run.graded) == sorted(run.feedback) == others
    autogrades = [a for a in calls if a[0] == "autograde"]
    assert len(autogrades) == 3, autogrades  # two processes over halves of the class, then the failed one alone
    want = _scores(control)
    got = _scores(course)
    assert {s: got[s] for s in others} == {s: want[s] for s in others}
    assert all(_feedback_ok(course, s) for s in others) and not _feedback_ok(course, bad)


def _grade_by_hand(course: Path, student: str) -> dict:
    """What a TA does in the formgrader: a manual score on every answer cell, marked as graded."""
    marks = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for nb in gb.find_submission(A, student).notebooks:
            for g in nb.grades:
                if g.needs_manual_grade:
                    g.manual_score = g.max_score / 2
                    g.needs_manual_grade = False
                    marks[g.name] = g.manual_score
        gb.db.commit()
    return marks


def test_force_regrade_keeps_manual_scores_and_their_graded_state(control, tmp_path):
    course = _copy(control, tmp_path / "course")
    ada, cy = IDS[0], IDS[2]
    marks = {s: _grade_by_hand(course, s) for s in (ada, cy)}
    assert marks[ada] and marks[cy]
    # cy hands in again with one answer rewritten: only that answer needs a second look.
    path = course / "submitted" / cy / A / f"{A}.ipynb"
    nb = nbformat.read(path, as_version=4)
    changed = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") in marks[cy])
    changed.source += "\n\nOn second thought, a different answer."
    nbformat.write(nb, path)
    grading.autograde(course, A, [ada, cy], force=True, collect=False, **QUIET)
    after = _scores(course)
    for s in (ada, cy):
        for gid, score in marks[s].items():
            expect_review = s == cy and gid == changed.metadata.nbgrader.grade_id
            assert after[s][gid] == (score, expect_review), (s, gid, after[s][gid])
    # The autograded test cells are the control's.
    tests = {g for g, (_, review) in _scores(control)[ada].items() if g not in marks[ada]}
    assert {g: after[ada][g] for g in tests} == {g: _scores(control)[ada][g] for g in tests}
