"""The course run end to end in fast mode on the CPU (what CI runs; `vitcourse demo` runs the whole class).

* source notebooks, with the reference as the student's files: every visible and hidden test passes;
* release notebooks with the untouched stubs: they run to the end, and the only errors are checks saying
  "not implemented yet";
* a simulated class through nbgrader zip_collect / autograde / generate_feedback / export: expected
  scores, feedback without hidden tests, a grades CSV, the gradebook backed up before autograde.

The encoder (code parts with hidden grader cells) and the analysis (written answers, numeric answers) run
here; `make demo` runs all five assignments.
"""
import csv
import html
import re
import shutil
import sqlite3

import nbformat
import pytest

from vitcourse import lifecycle, release
from vitcourse.colab import NOT_IMPLEMENTED_MARK
from vitcourse.feedback import HIDDEN_BEGIN

ASSIGNMENTS = ["a2_transformer", "a5_analysis"]
# One student per kind of submission the TA must handle; the demo adds more bugs.
CLASS = (
    lifecycle.Student("ada", "solved everything"),
    lifecycle.Student("ben", "untouched release", code="stubs", answers=False),
    lifecycle.Student("cy", "two bugs", bugs=("no_scale", "split_no_transpose")),
    lifecycle.Student("eli", "deleted a test cell, ran cells out of order", delete_cells=("test_mlp",), out_of_order=True),
)


def _stderr_in_tests(nb) -> list[str]:
    # nbgrader scores a test cell with anything on stderr as 0 (a warning would cost a student points).
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
            and any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in c.get("outputs", []))]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_passes_with_the_reference(assignment, tmp_path):
    path = lifecycle.prepare_source_run(assignment, tmp_path)
    nb, errors = lifecycle.execute_notebook(path)
    assert not errors, "\n".join(f"cell {e.index} ({e.grade_id}): {e.ename}: {e.evalue[:300]}" for e in errors)
    assert not _stderr_in_tests(nb)
    for gid, (score, points) in lifecycle.hidden_scores(nb).items():
        assert score == pytest.approx(points), f"{gid}: the hidden grader gave the reference {score}/{points}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_notebook_with_stubs_runs_to_the_end(assignment, tmp_path):
    course = lifecycle.make_course(tmp_path, [assignment])
    release.release(course, zip_=False, log=lambda _: None)
    path = course / "release" / assignment / f"{assignment}.ipynb"
    nb, errors = lifecycle.execute_notebook(path)
    assert errors, "with untouched stubs some checks must fail"
    for e in errors:
        assert e.kind in ("tests", "solution"), f"cell {e.index} crashed with the stubs: {e.ename}: {e.evalue[:300]}"
        assert NOT_IMPLEMENTED_MARK in e.evalue, f"{e.grade_id}: fails without saying '{NOT_IMPLEMENTED_MARK}': {e.ename}: {e.evalue[:300]}"
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.get("execution_count")]
    assert not unrun, f"cells {unrun} did not run: the notebook stopped early"


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    return lifecycle.run_term(tmp_path_factory.mktemp("term"), ASSIGNMENTS, students=CLASS, jobs=2, log=lambda _: None)


@pytest.mark.slow
def test_every_student_gets_the_expected_score(term):
    assert not term.mismatches(), "\n".join(term.mismatches()) + "\n" + term.table()
    for a in ASSIGNMENTS:
        assert term.autograded(a, "ada") == term.max_auto(a) > 0
        assert term.autograded(a, "ben") == 0
        assert 0 < term.autograded("a2_transformer", "cy") < term.max_auto("a2_transformer")
    # The deleted test cell was added back and graded, not silently dropped.
    assert term.scores["a2_transformer"]["eli"]["cells"]["test_mlp"] == term.points["a2_transformer"]["test_mlp"]


@pytest.mark.slow
def test_feedback_has_no_hidden_tests(term):
    secrets = release.collect_secrets(term.course_dir)
    hidden = {line for line in secrets.lines if "grade_part" in line or "grade_answer" in line or "correct=" in line}
    assert hidden
    for a in ASSIGNMENTS:
        for s in CLASS:
            page = term.feedback_html(a, s.id)
            assert page.is_file(), f"no feedback for {s.id}/{a}"
            text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
            assert HIDDEN_BEGIN not in text
            leaked = [line for line in hidden if line in text]
            assert not leaked, f"{page} shows hidden test code: {leaked[:3]}"


@pytest.mark.slow
def test_grades_csv_and_gradebook_backups(term):
    rows = list(csv.DictReader(term.grades_csv.open()))
    assert {(r["assignment"], r["student_id"]) for r in rows} == {(a, s.id) for a in ASSIGNMENTS for s in CLASS}
    by_key = {(r["assignment"], r["student_id"]): float(r["raw_score"]) for r in rows}
    assert by_key[("a2_transformer", "ada")] == pytest.approx(term.autograded("a2_transformer", "ada"))
    assert len(term.backups) == len(ASSIGNMENTS) and all(b and b.is_file() for b in term.backups)
    # The backup taken before the second autograde holds the first assignment's grades: nothing is lost.
    with sqlite3.connect(term.backups[-1]) as db:
        graded = db.execute("select count(*) from submitted_assignment").fetchone()[0]
    assert graded >= len(CLASS)


def test_backup_is_a_consistent_copy(tmp_path):
    db = tmp_path / "gradebook.db"
    with sqlite3.connect(db) as con:
        con.execute("create table grades (student text, score real)")
        con.execute("insert into grades values ('ada', 11)")
    first = lifecycle.backup_gradebook(tmp_path)
    second = lifecycle.backup_gradebook(tmp_path)
    assert first != second, "two backups must not overwrite each other"
    with sqlite3.connect(first) as con:
        assert con.execute("select * from grades").fetchall() == [("ada", 11.0)]
    assert lifecycle.backup_gradebook(tmp_path / "missing") is None


def test_bug_patterns_still_match_the_reference(tmp_path):
    # A bug that no longer applies would make a "buggy" student silently correct.
    for name, bug in lifecycle.BUGS.items():
        folder = tmp_path / name
        folder.mkdir()
        for f in ("transformer.py", "ViT.py"):
            shutil.copy2(lifecycle.impl.solutions_dir() / f, folder / f)
        bug.apply(folder)
        assert (folder / bug.file).read_text() != (lifecycle.impl.solutions_dir() / bug.file).read_text()
