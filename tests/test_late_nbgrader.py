"""Late penalties through the real nbgrader: a Canvas bulk download (on time, late, very late, a late
resubmission after an on-time one) and a plain `<id>.zip`, collected, autograded, given feedback and exported
by `vitcourse grade` / `vitcourse export` (coursetools.grading) on a scratch a5 course with a declared due date.

The oracle is the policy counted day by day here, applied to the raw score nbgrader exports; the Gradescope
runner, given the same times and raw scores in submission_metadata.json, must give the same final scores.
Before this work every row had penalty 0 (no due date, no timestamp), and Canvas-named zips were not collected.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import zipfile
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from autograder import gradescope as runner
from coursecore import deadlines
from coursetools import grading, release, term

A = "a5_analysis"
UTC = dt.timezone.utc
DUE = dt.datetime(2026, 10, 12, 6, 59, tzinfo=UTC)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
GRACE_MIN, PER_DAY, CAP = 15, 0.1, 0.5
# nbgrader's student id -> [(Canvas name or None for a plain zip, zip time, hands in answers)], in the order
# handed in. A Canvas-named file is the student of its Canvas user id (coursetools/lms.py: canvas-<id>).
HAND_INS = {
    "canvas-11": [("smithontime_11_101_ontime", DUE - HOUR, True)],
    "canvas-12": [("smithlate_LATE_12_102_late", DUE + DAY + HOUR, True)],         # two started days
    "canvas-13": [("smithvery_LATE_13_103_verylate", DUE + 20 * DAY, True)],       # the cap
    "canvas-14": [("smithagain_14_104_again", DUE - 2 * DAY, False),               # on time, no answers ...
                  ("smithagain_LATE_14_205_again", DUE + 3 * HOUR, True)],         # ... then late, with answers
    "plain": [(None, DUE + 5 * HOUR, True)],                                       # only the zip's own time
}
LATE = "canvas-12"
pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # make test-e2e (CI runs it)


def oracle_fraction(seconds_late: float) -> float:
    if seconds_late <= GRACE_MIN * 60:
        return 0.0
    days = 0
    while days * 86400 < seconds_late:
        days += 1
    return min(CAP, days * PER_DAY)


def _restamp(path: Path, when: dt.datetime, name: str | None) -> Path:
    """The hand-in zip with its members at `when` (UTC), renamed as the LMS names it."""
    with zipfile.ZipFile(path) as old:
        members = [(info.filename, old.read(info)) for info in old.infolist()]
    path.unlink()
    out = path.with_name(f"{name}.zip") if name else path
    with zipfile.ZipFile(out, "w") as new:
        for filename, data in members:
            new.writestr(zipfile.ZipInfo(filename, date_time=when.timetuple()[:6]), data)
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("late")
    course = term.make_course(scratch, [A])
    (course / deadlines.FILE).write_text(f"[default]\ngrace_minutes = {GRACE_MIN}\nper_day = {PER_DAY}\n"
                                         f"cap = {CAP}\n[{A}]\ndue = {DUE.isoformat()}\n")
    release.release(course, [A], zip_=False, log=lambda _: None)
    for student, hand_ins in HAND_INS.items():
        for name, when, answers in hand_ins:
            zipped = term.make_submission(term.Student(student, "solved", answers=answers), A, course,
                                          scratch / "students")
            _restamp(zipped, when, name)
    logs: list[str] = []
    grading.autograde(course, A, log=logs.append)
    csv_path = grading.export_grades(course)
    return course, logs, {r["student_id"]: r for r in csv.DictReader(csv_path.open()) if r["assignment"] == A}


def _latest(student):
    return HAND_INS[student][-1][1]


def test_the_export_takes_the_policys_penalty_off_each_late_student(graded):
    _, _, rows = graded
    assert sorted(rows) == sorted(HAND_INS)
    for student, row in rows.items():
        raw = float(row["raw_score"])
        assert raw > 0, row
        fraction = oracle_fraction((_latest(student) - DUE).total_seconds())
        assert float(row["late_submission_penalty"]) == pytest.approx(raw * fraction), (student, row)
        assert float(row["score"]) == pytest.approx(raw * (1 - fraction)), (student, row)
    assert float(rows["canvas-13"]["late_submission_penalty"]) == pytest.approx(CAP * float(rows["canvas-13"]["raw_score"]))
    assert float(rows["canvas-11"]["late_submission_penalty"]) == 0


def test_the_latest_of_a_resubmission_is_collected_in_full(graded):
    course, _, rows = graded
    submitted = course / "submitted" / "canvas-14" / A
    stamp = (submitted / "timestamp.txt").read_text().strip()
    assert deadlines.aware(dt.datetime.fromisoformat(stamp)) == _latest("canvas-14")
    assert float(rows["canvas-14"]["raw_score"]) == pytest.approx(float(rows["canvas-11"]["raw_score"]))  # with answers


def test_gradescope_gives_the_same_final_score_for_the_same_time_and_raw_score(graded, tmp_path):
    _, _, rows = graded
    config = {"deadline": deadlines.Deadline(DUE, deadlines.LatePolicy(GRACE_MIN, PER_DAY, CAP)).to_json()}
    for student, row in rows.items():
        root = tmp_path / student
        root.mkdir()
        (root / runner.METADATA).write_text(json.dumps({"created_at": _latest(student).isoformat()}))
        results = {"score": float(row["raw_score"]), "output": ""}
        runner.apply_late_policy(root, config, results)
        assert results["score"] == pytest.approx(float(row["score"]), abs=1e-3), student


def test_the_feedback_says_when_it_came_and_what_it_cost(graded):
    course, _, rows = graded
    for student in HAND_INS:
        page = (course / "feedback" / student / A / f"{A}.html").read_text(encoding="utf-8")
        fraction = oracle_fraction((_latest(student) - DUE).total_seconds())
        assert "Submission time." in page
        if fraction:
            assert "Late submission penalty" in page and f"takes {fraction:.0%} of the score" in page, student
        else:
            assert "on time" in page and "Late submission penalty" not in page


def test_grading_showed_progress_in_a_few_lines(graded):
    _, logs, _ = graded
    lines = [line for line in logs if " graded (" in line]
    assert lines and lines[-1].strip().startswith(f"{len(HAND_INS)}/{len(HAND_INS)} graded (100%)"), logs
    assert len(lines) <= len(HAND_INS)


def test_manual_points_given_later_are_penalised_too(graded):
    course, _, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(A, A, LATE)
        answer = next(g for g in nb.grades if g.cell.cell_type == "markdown" and g.max_score > 0)
        answer.manual_score = answer.max_score
        gb.db.commit()
    csv_path = grading.export_grades(course)
    row = next(r for r in csv.DictReader(csv_path.open()) if r["assignment"] == A and r["student_id"] == LATE)
    fraction = oracle_fraction((_latest(LATE) - DUE).total_seconds())
    assert float(row["late_submission_penalty"]) == pytest.approx(float(row["raw_score"]) * fraction)
