"""Due dates and late penalties: the declaration (course/deadlines.toml), its arithmetic, the submission time read
from an LMS download (Canvas names, zip times), and the Gradescope runner's use of submission_metadata.json.

The oracle of the arithmetic is a plain day-by-day count written here; the nbgrader path end to end is
tests/test_late_nbgrader.py."""
from __future__ import annotations

import datetime as dt
import json
import random
import zipfile
from pathlib import Path

import pytest

from autograder import gradescope as runner
from coursecore import course_root, deadlines
from coursetools import gradescope, lateness, release

UTC = dt.timezone.utc
DUE = dt.datetime(2026, 10, 12, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
POLICY = deadlines.LatePolicy(grace_minutes=15, per_day=0.1, cap=0.5)
DEADLINE = deadlines.Deadline(DUE, POLICY)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def oracle_fraction(seconds_late: float, policy: deadlines.LatePolicy) -> float:
    """Count the days one by one: day k covers (k-1, k] days after the due date; the grace forgives the first minutes."""
    if seconds_late <= policy.grace_minutes * 60:
        return 0.0
    days = 0
    while days * 86400 < seconds_late:
        days += 1
    return min(policy.cap, days * policy.per_day)


# ---- the arithmetic ---------------------------------------------------------------------------------------

def test_fraction_matches_a_day_by_day_count():
    rng = random.Random(0)
    for _ in range(2000):
        policy = deadlines.LatePolicy(grace_minutes=rng.choice([0, 15, 60]), per_day=rng.choice([0.05, 0.1, 0.25]),
                                      cap=rng.choice([0.3, 0.5, 1.0]))
        late = rng.choice([0, rng.uniform(0, 3600), rng.uniform(0, 30 * 86400), rng.randint(1, 12) * 86400.0])
        assert policy.fraction(late) == pytest.approx(oracle_fraction(late, policy)), (policy, late)


@pytest.mark.parametrize("after, fraction", [
    (-HOUR, 0.0),                          # on time
    (dt.timedelta(minutes=14), 0.0),       # within the grace period
    (HOUR, 0.1),                           # late: the first started day
    (DAY + HOUR, 0.2),                     # a day and an hour: two started days
    (20 * DAY, 0.5),                       # very late: the cap
])
def test_a_submission_costs_its_started_days_up_to_the_cap(after, fraction):
    lateness_ = DEADLINE.assess(DUE + after)
    assert lateness_.fraction == pytest.approx(fraction)
    assert DEADLINE.penalty(9.0, DUE + after) == pytest.approx(9.0 * fraction)
    text = lateness_.describe(9.0)
    assert ("on time" in text or "grace" in text) if fraction == 0 else f"{fraction:.0%}" in text, text


def test_a_naive_time_is_utc_and_json_round_trips():
    assert DEADLINE.assess(DUE.astimezone(UTC).replace(tzinfo=None) + HOUR).fraction == pytest.approx(0.1)
    assert deadlines.Deadline.from_json(json.loads(json.dumps(DEADLINE.to_json()))) == DEADLINE


# ---- the declaration --------------------------------------------------------------------------------------

def test_the_shipped_declaration_loads_and_names_every_assignment():
    course = Path(course_root.current().course)
    known = release.source_assignments(course)
    deadlines.load(course, known=known)  # no DeadlineError
    text = (course / deadlines.FILE).read_text()
    assert all(f"[{a}]" in text for a in known), "course/deadlines.toml should have a section per assignment"


def _toml(tmp_path, text: str) -> Path:
    (tmp_path / deadlines.FILE).write_text(text)
    return tmp_path


def test_a_section_overrides_the_default_policy(tmp_path):
    course = _toml(tmp_path, "[default]\nper_day = 0.2\ncap = 0.6\n[a1]\ndue = 2026-10-12T23:59:00-07:00\n"
                             "[a2]\ndue = 2026-10-19T23:59:00Z\ncap = 1.0\n[a3]\n")
    found = deadlines.load(course, known=["a1", "a2", "a3"])
    assert found["a1"] == deadlines.Deadline(DUE, deadlines.LatePolicy(per_day=0.2, cap=0.6))
    assert found["a2"].policy.cap == 1.0 and found["a2"].policy.per_day == 0.2
    assert "a3" not in found  # a section without `due`: no penalty


@pytest.mark.parametrize("text, says", [
    ("[a9]\ndue = 2026-10-12T23:59:00Z\n", "no assignment of that name"),
    ("[a1]\ndue = 2026-10-12T23:59:00\n", "UTC offset"),
    ("[a1]\ndue = 2026-10-12T23:59:00Z\nper_day = 10\n", "from 0 to 1"),
    ("[a1]\ndue = 2026-10-12T23:59:00Z\npenalty = 0.1\n", "unknown setting penalty"),
    ("[a1\n", "TOML"),
])
def test_a_mistake_in_the_declaration_says_where_and_what_to_write(tmp_path, text, says):
    with pytest.raises(deadlines.DeadlineError, match=says) as err:
        deadlines.load(_toml(tmp_path, text), known=["a1", "a2"])
    assert deadlines.FILE in str(err.value)


# ---- the time of a submission in an LMS download -------------------------------------------------------------

# Canvas's and Moodle's names are read by coursetools/lms_names.py: tests/test_lms_names.py.


def _zip_at(path: Path, when: dt.datetime) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i, name in enumerate(("a/a.ipynb", "a/ViT.py")):
            stamp = (when - dt.timedelta(minutes=i)).astimezone(UTC)
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6]), "x")
    return path


def test_a_hand_in_zip_carries_its_time_in_utc(tmp_path):
    from vitcourse.course import handin

    folder = tmp_path / "w"
    folder.mkdir()
    before = dt.datetime.now(UTC).replace(microsecond=0)
    made = handin.make_handin("ada", "a5_analysis", folder, {"cells": []})
    after = dt.datetime.now(UTC)
    assert before - dt.timedelta(seconds=2) <= lateness.zip_time(made.path) <= after


@pytest.mark.parametrize("name, zipped, expected", [
    ("ada", DUE + 2 * DAY, DUE + 2 * DAY),                              # a plain zip: its time is all there is
    ("smithada_1_2_ada", DUE - HOUR, DUE - HOUR),                       # Canvas, on time
    ("smithada_1_2_ada", DUE + 2 * DAY, DUE),                           # Canvas says on time (an extension)
    ("smithada_LATE_1_2_ada", DUE + 2 * DAY, DUE + 2 * DAY),            # Canvas LATE, the zip says how late
    ("smithada_LATE_1_2_ada", DUE - HOUR, DUE + dt.timedelta(minutes=15, seconds=1)),  # LATE, zip clock earlier
])
def test_submission_time_lets_canvas_decide_the_side_and_the_zip_the_amount(tmp_path, name, zipped, expected):
    archive = _zip_at(tmp_path / f"{name}.zip", zipped)
    assert lateness.submission_time(archive, name, DEADLINE) == expected


# ---- Gradescope: submission_metadata.json --------------------------------------------------------------------

def _metadata(root: Path, created: dt.datetime, previous=(), gs_due: dt.datetime = DUE) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / runner.METADATA).write_text(json.dumps({
        "id": 1, "created_at": created.isoformat(),
        "assignment": {"due_date": gs_due.isoformat(), "late_due_date": None, "title": "a2"},
        "previous_submissions": [{"submission_time": t.isoformat(), "score": s, "results": {}} for t, s in previous]}))


CONFIG = {"assignment": "a2_transformer", "deadline": DEADLINE.to_json()}


@pytest.mark.parametrize("after", [-HOUR, HOUR, 3 * DAY + HOUR, 30 * DAY])  # on time, late, later, very late
def test_gradescope_takes_the_same_penalty_as_the_policy(tmp_path, after, capsys):
    _metadata(tmp_path, DUE + after)
    results = {"score": 8.5, "max_score": 9.0, "output": "graded", "tests": []}
    runner.apply_late_policy(tmp_path, CONFIG, results)
    fraction = oracle_fraction((after).total_seconds(), POLICY)
    assert results["score"] == pytest.approx(8.5 * (1 - fraction))
    assert results["extra_data"]["late"]["penalty"] == pytest.approx(8.5 * fraction)
    first = results["output"].splitlines()[0]
    assert first.startswith("Handed in") and results["output"].endswith("graded")
    assert (f"{fraction:.0%} of the score" in first) if fraction else "on time" in first
    assert "STAFF" not in capsys.readouterr().out


def test_a_late_resubmission_counts_and_names_the_earlier_on_time_one(tmp_path):
    _metadata(tmp_path, DUE + 2 * HOUR, previous=[(DUE - DAY, 6.0), (DUE - HOUR, 7.0)])
    results = {"score": 9.0, "output": ""}
    runner.apply_late_policy(tmp_path, CONFIG, results)
    assert results["score"] == pytest.approx(9.0 * 0.9)  # the active (latest) submission, late by one day
    assert "came in time (score 7.0)" in results["output"]


def test_gradescope_due_date_that_differs_is_reported_to_staff_and_the_courses_applies(tmp_path, capsys):
    _metadata(tmp_path, DUE + HOUR, gs_due=DUE + DAY)
    results = {"score": 9.0, "output": ""}
    runner.apply_late_policy(tmp_path, CONFIG, results)
    assert results["score"] == pytest.approx(8.1)
    assert "STAFF: Gradescope's due date" in capsys.readouterr().out


def test_without_metadata_or_deadline_nothing_changes(tmp_path, capsys):
    results = {"score": 9.0, "output": "x"}
    runner.apply_late_policy(tmp_path, CONFIG, results)
    runner.apply_late_policy(tmp_path, {"deadline": None}, results)
    assert results == {"score": 9.0, "output": "x"}
    assert "no late penalty applied" in capsys.readouterr().out


def test_the_bundle_carries_the_declared_deadline(tmp_path, monkeypatch):
    bundle = gradescope.build(tmp_path / "none", "a2_transformer")
    with zipfile.ZipFile(bundle.path) as archive:
        assert json.loads(archive.read("gradescope.json"))["deadline"] is None
    assert any("no due date" in w for w in bundle.warnings)
    monkeypatch.setattr(deadlines, "for_assignment", lambda course, a: DEADLINE if a == "a2_transformer" else None)
    bundle = gradescope.build(tmp_path / "due", "a2_transformer")
    with zipfile.ZipFile(bundle.path) as archive:
        carried = json.loads(archive.read("gradescope.json"))["deadline"]
    assert deadlines.Deadline.from_json(carried) == DEADLINE and not bundle.warnings


def test_a_scratch_course_of_some_assignments_carries_only_their_deadlines(tmp_path):
    """term.make_course (the demo, the tests): the course's deadlines.toml, cut to the chosen assignments, still
    loads (a section of an assignment the course lacks is a mistake there)."""
    from coursetools import term

    course = term.make_course(tmp_path, ["a5_analysis"])
    assert deadlines.load(course, known=["a5_analysis"]) == {}  # the shipped file declares no due date yet
    with pytest.raises(deadlines.DeadlineError, match="no assignment of that name"):
        deadlines.load(course_root.current().course, known=["a5_analysis"])  # the whole course's file, uncut
    text = (course / deadlines.FILE).read_text()
    assert "[a5_analysis]" in text and "[a2_transformer]" not in text and "[default]" in text
