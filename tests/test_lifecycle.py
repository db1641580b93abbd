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

from coursetools import grading, nbrun, release
from coursetools import term as demo_term
from coursetools.feedback import HIDDEN_BEGIN

ASSIGNMENTS = ["a2_transformer", "a5_analysis"]
# One student per kind of submission the TA must handle; the demo adds more bugs.
CLASS = (
    demo_term.Student("ada", "solved everything"),
    demo_term.Student("ben", "untouched release", code="stubs", answers=False),
    demo_term.Student("cy", "two bugs", bugs=("no_scale", "split_no_transpose")),
    demo_term.Student("eli", "deleted a test cell, ran cells out of order", delete_cells=("test_mlp",), out_of_order=True),
)


def _stderr_in_tests(nb) -> list[str]:
    # nbgrader scores a test cell with anything on stderr as 0 (a warning would cost a student points).
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
            and any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in c.get("outputs", []))]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", [*ASSIGNMENTS, "a4_resnet_tradeoffs"])  # a6, a7: their own test files
def test_source_notebook_passes_with_the_reference(assignment, tmp_path):
    path = nbrun.prepare_source_run(assignment, tmp_path)
    nb, errors = nbrun.execute_notebook(path)
    assert not errors, "\n".join(f"cell {e.index} ({e.grade_id}): {e.ename}: {e.evalue[:300]}" for e in errors)
    assert not _stderr_in_tests(nb)
    # Issue 29: no table prints an autograded answer before the student gives it (a1, a3: no numeric key).
    assert not nbrun.answers_shown_early(nb)
    for gid, (score, points) in nbrun.hidden_scores(nb).items():
        assert score == pytest.approx(points), f"{gid}: the hidden grader gave the reference {score}/{points}"


# Run All of every fresh release notebook, in a student's kernel: tests/test_run_all.py.


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    return demo_term.run_term(tmp_path_factory.mktemp("term"), ASSIGNMENTS, students=CLASS, jobs=2, log=lambda _: None)


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
            # Issue 26, item 5: the sandboxed kernels find matplotlib's fonts; no warning reaches a student.
            graded = term.course_dir / "autograded" / s.id / a / f"{a}.ipynb"
            assert "Fontconfig" not in text and "Fontconfig" not in graded.read_text(encoding="utf-8"), page


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
    first = grading.backup_gradebook(tmp_path)
    second = grading.backup_gradebook(tmp_path)
    assert first != second, "two backups must not overwrite each other"
    with sqlite3.connect(first) as con:
        assert con.execute("select * from grades").fetchall() == [("ada", 11.0)]
    assert grading.backup_gradebook(tmp_path / "missing") is None


def test_bug_patterns_still_match_the_reference(tmp_path):
    # A bug that no longer applies would make a "buggy" student silently correct.
    for name, bug in demo_term.BUGS.items():
        folder = tmp_path / name
        folder.mkdir()
        for f in demo_term.files_for(None):  # every registered student module (finetune.py, cnn.py too)
            shutil.copy2(demo_term.impl.solutions_dir() / f, folder / f)
        bug.apply(folder)
        assert (folder / bug.file).read_text() != (demo_term.impl.solutions_dir() / bug.file).read_text()


@pytest.mark.slow
def test_autograde_warns_about_checksums_only_for_changed_cells(term):
    """nbgrader warned "checksum ... has changed" for every test cell with hidden tests (issue 9, item 9)."""
    for a in ASSIGNMENTS:
        logs = "\n".join(term.autograde_logs[a])
        assert logs and "has changed" not in logs, f"{a}: autograde warned for unmodified submissions:\n" + "\n".join(
            line for line in logs.splitlines() if "has changed" in line)
    # A student who really edited a test cell is still reported, and graded with the original cell.
    a, course = "a2_transformer", term.course_dir
    tampered = course / "submitted" / "tam" / a
    shutil.copytree(course / "submitted" / "ada" / a, tampered)
    nb = nbformat.read(tampered / f"{a}.ipynb", as_version=4)
    cell = demo_term.cells_by_id(nb)["test_mlp"]
    cell.source += "\nprint('edited by the student')"
    nbformat.write(nb, tampered / f"{a}.ipynb")
    out = release.nbgrader(course, "autograde", a, "--force", "--student=tam")
    warned = [line for line in (out.stdout + out.stderr).splitlines() if "has changed" in line]
    assert len(warned) == 1 and "'checksum' for cell test_mlp" in warned[0], warned
    graded = nbformat.read(course / "autograded" / "tam" / a / f"{a}.ipynb", as_version=4)
    source = nbformat.read(course / "source" / a / f"{a}.ipynb", as_version=4)
    assert demo_term.cells_by_id(graded)["test_mlp"].source == demo_term.cells_by_id(source)["test_mlp"].source


@pytest.mark.slow
def test_a2_autograded_through_nbgrader_has_a2s_maximum_and_no_vit_part(term):
    """Issue 9, item 4: the a2 notebook grades a2's parts only, out of a2's points (coursecore/parts/__init__.py)."""
    from autograder.nbgrader_plugin import hidden_parts
    from coursecore.parts import max_score, parts_for

    a = "a2_transformer"
    graded = nbformat.read(term.course_dir / "autograded" / "ada" / a / f"{a}.ipynb", as_version=4)
    part_cells = {gid: hidden_parts(c.source) for gid, c in demo_term.cells_by_id(graded).items() if hidden_parts(c.source)}
    named = [p for parts in part_cells.values() for p in parts]
    assert sorted(named) == sorted(parts_for(a)), "the a2 notebook's grade_part cells differ from ASSIGNMENT_PARTS"
    assert not [p for p in named if p.startswith("ViT.")]
    assert sum(term.points[a][gid] for gid in part_cells) == max_score(parts_for(a))
    # The reference student earns exactly that maximum on those cells, and nothing mentions a ViT part.
    assert sum(term.scores[a]["ada"]["cells"][gid] for gid in part_cells) == pytest.approx(max_score(parts_for(a)))
    outputs = "".join(str(o.get("text", "")) + str(o.get("data", "")) for gid in part_cells
                      for o in demo_term.cells_by_id(graded)[gid].get("outputs", []))
    assert "ViT." not in outputs
