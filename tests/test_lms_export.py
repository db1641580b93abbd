"""Grades into the LMS: `zip_collect` of Canvas- and Moodle-named downloads, and `vitcourse export --lms`.

Real `nbgrader zip_collect` on a scratch course whose archive/ holds the files as each LMS names them (a zip, a
loose notebook, a LATE one, a `-1` re-upload, Moodle's folders and its grading worksheet), for a class with
spaces, accents, apostrophes and two students of the same name. The export is read back and compared with
the roster it came from (identity cells byte for byte, the documented columns and Points Possible row) and
with nbgrader's own `nbgrader export` of the same gradebook (the scores' oracle).
"""
from __future__ import annotations

import argparse
import csv
import io
import shutil
import zipfile

import nbformat
import pytest

from coursetools import lms, release, term
from coursetools.commands import export as export_cmd

A = "a2_transformer"
NB = f"{A}.ipynb"

CANVAS_ROSTER = (
    "Student,ID,SIS User ID,SIS Login ID,Section,a2_transformer (5501),Current Score\r\n"
    "    Points Possible,,,,,10.00,(read only)\r\n"
    '"Doe, John",4211,S001,jdoe1,Sec 1,,\r\n'
    '"Doe, John",4212,S002,jdoe2,Sec 2,,\r\n'  # the same display name: another student
    '"Müller, José",4213,S003,jmuller,Sec 1,,\r\n'
    '"O\'Neil, Siobhán",4214,S004,soneil,Sec 1,,\r\n'
    '"van der Berg, Anna Maria",4215,S005,avdberg,Sec 2,,\r\n'
    '"Absent, Always",4216,S006,aabsent,Sec 2,,\r\n')
MOODLE_WORKSHEET = (
    "Identifier,Full name,Email address,Status,Grade,Maximum grade\r\n"
    "Participant 1001,José Müller,jose.muller@uni.example,Submitted,,10\r\n"
    "Participant 1002,John Doe,john.doe@uni.example,Submitted,,10\r\n"
    "Participant 1003,John Doe,jdoe@other.example,Submitted,,10\r\n")


def _nb(marker: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(marker))
    return nbformat.writes(nb)


def _zip(path, members: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)


def _canvas_download(archive) -> None:
    """archive/ as a TA leaves it after unzipping Canvas's submissions.zip there."""
    _zip(archive / f"doejohn_4211_90001_{A}.zip", {f"{A}/{NB}": _nb("john-4211"), f"{A}/transformer.py": "# 4211\n"})
    (archive / f"doejohn_LATE_4212_90002_{NB}").write_text(_nb("john-4212-late"))
    (archive / "doejohn_LATE_4212_90002_transformer.py").write_text("# 4212\n")
    (archive / f"müllerjosé_4213_90003_{A}-1.ipynb").write_text(_nb("jose-reupload"))  # Canvas's "-1"
    (archive / f"müllerjosé_4213_90003_{NB}").write_text(_nb("jose-first"))
    _zip(archive / f"oneilsiobhán_4214_90004_{A}-1.zip", {NB: _nb("siobhan")})
    (archive / "vanderbergannamaria_4215_90005_notes.txt").write_text("not a submission file\n")


def _moodle_download(archive) -> None:
    """Moodle's download, mixed: one student's files in a folder, the others' as prefixed names."""
    _zip(archive / "José Müller_1001_assignsubmission_file" / f"{A}.zip", {f"{A}/{NB}": _nb("jose-moodle")})
    (archive / f"John Doe_1002_assignsubmission_file_{NB}").write_text(_nb("john-doe-uni"))
    (archive / f"John Doe_1003_assignsubmission_file_{NB}").write_text(_nb("john-doe-other"))
    (archive / f"Ghost Student_1099_assignsubmission_file_{NB}").write_text(_nb("not in the worksheet"))


def _collect(course, fill, worksheet=None):
    downloaded = course / "downloaded" / A
    shutil.rmtree(course / "downloaded", ignore_errors=True)
    shutil.rmtree(course / "submitted", ignore_errors=True)
    (downloaded / "archive").mkdir(parents=True)
    fill(downloaded / "archive")
    if worksheet:
        (downloaded / lms.MOODLE_WORKSHEET).write_text(worksheet, encoding="utf-8")
    proc = release.nbgrader(course, "zip_collect", A, "--force", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    submitted = course / "submitted"
    found = {p.relative_to(submitted).as_posix(): p.read_text() for p in submitted.rglob("*") if p.is_file()} \
        if submitted.is_dir() else {}
    return proc.stdout + proc.stderr, found


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = term.make_course(tmp_path_factory.mktemp("lms"), [A])
    (course / "release" / A).mkdir(parents=True)
    shutil.copy2(course / "source" / A / NB, course / "release" / A / NB)
    return course


@pytest.fixture(scope="module")
def canvas_collected(course):
    return _collect(course, _canvas_download)


def test_canvas_download_names_are_collected_without_renaming(canvas_collected):
    log, found = canvas_collected
    assert {p.split("/")[0] for p in found} == {"canvas-4211", "canvas-4212", "canvas-4213", "canvas-4214"}
    assert "john-4211" in found[f"canvas-4211/{A}/{NB}"] and found[f"canvas-4211/{A}/transformer.py"] == "# 4211\n"
    # Two "Doe, John": two students, each with their own files; the LATE one is read, not dropped.
    assert "john-4212-late" in found[f"canvas-4212/{A}/{NB}"]
    assert found[f"canvas-4212/{A}/transformer.py"] == "# 4212\n"
    # Canvas's "-1" is the newer upload: collected under the notebook's own name, the older one skipped and logged.
    assert "jose-reupload" in found[f"canvas-4213/{A}/{NB}"]
    assert f"canvas-4213's zip holds {NB} more than once" in log
    assert "siobhan" in found[f"canvas-4214/{A}/{NB}"]
    assert not any("notes" in p for p in found)


def test_moodle_download_names_are_collected_through_the_worksheet(course):
    log, found = _collect(course, _moodle_download, MOODLE_WORKSHEET)
    students = {p.split("/")[0] for p in found}
    assert students == {"moodle-jose-muller-at-uni-example", "moodle-john-doe-at-uni-example",
                        "moodle-jdoe-at-other-example"}  # two John Does stay two
    assert "jose-moodle" in found[f"moodle-jose-muller-at-uni-example/{A}/{NB}"]
    assert "john-doe-other" in found[f"moodle-jdoe-at-other-example/{A}/{NB}"]
    assert "participant 1099 (Ghost Student) is not in" in log  # reported, not filed under a guess


def test_moodle_names_without_a_worksheet_are_not_guessed(course):
    log, found = _collect(course, _moodle_download)
    assert found == {}
    assert lms.MOODLE_WORKSHEET in log and "participant number" in log


# ---- export -------------------------------------------------------------------------------------------------

def _gradebook(course, scores: dict[str, tuple[float, float]], manual_pending=()):
    """gradebook.db with a2: a 6-point test cell and a 4-point written answer; scores: student -> (auto, manual)."""
    from nbgrader.api import Gradebook

    # These scores stand in for `vitcourse grade`: the collected but never autograded submitted/ folders would
    # (rightly) make the export refuse, so they go; the collected ids were read before.
    shutil.rmtree(course / "submitted", ignore_errors=True)
    (course / "gradebook.db").unlink(missing_ok=True)
    release.nbgrader(course, "db", "assignment", "add", A)  # a new gradebook, made as nbgrader makes one
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.add_notebook(A, A)
        gb.add_grade_cell("test_attention", A, A, max_score=6, cell_type="code")
        gb.add_grade_cell("answer_why", A, A, max_score=4, cell_type="markdown")
        gb.add_solution_cell("answer_why", A, A)
        for student, (auto, manual) in scores.items():
            gb.add_student(student)
            gb.add_submission(A, student)
            test = gb.find_grade("test_attention", A, A, student)
            test.auto_score, test.needs_manual_grade = auto, False
            answer = gb.find_grade("answer_why", A, A, student)
            answer.manual_score, answer.needs_manual_grade = manual, student in manual_pending
        gb.db.commit()


def _oracle(course, tmp_path) -> dict[str, str]:
    """student -> score, from nbgrader's own `nbgrader export` of the same gradebook."""
    out = tmp_path / "nbgrader.csv"
    release.nbgrader(course, "export", "--to", str(out))
    return {r["student_id"]: r["score"] for r in csv.DictReader(io.StringIO(out.read_text())) if r["assignment"] == A}


def _export(course, roster, *extra, out=None):
    parser = argparse.ArgumentParser()
    export_cmd.add_arguments(parser)
    argv = ["--course", str(course), "--allow-open-files", "--lms", roster[0], "--roster", str(roster[1]), *extra]
    return export_cmd.run(parser.parse_args(argv + (["--out", str(out)] if out else [])))


def _rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


@pytest.fixture
def canvas_roster(tmp_path):
    path = tmp_path / "canvas_gradebook.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CANVAS_ROSTER.encode())  # Canvas writes a BOM
    return path


def test_canvas_round_trip_from_collected_download_to_gradebook_import(course, canvas_collected, canvas_roster,
                                                                      tmp_path, capsys):
    _, found = canvas_collected
    collected = sorted({p.split("/")[0] for p in found})
    assert collected == ["canvas-4211", "canvas-4212", "canvas-4213", "canvas-4214"]
    _gradebook(course, {s: (6.0 - i, 4.0 - i * 1.5) for i, s in enumerate(collected)})  # manual points included
    out = tmp_path / "import.csv"
    before = canvas_roster.read_bytes()
    assert _export(course, ("canvas", canvas_roster), out=out) == 0
    assert canvas_roster.read_bytes() == before
    rows = _rows(out)
    roster = list(csv.reader(io.StringIO(CANVAS_ROSTER, newline="")))
    # The documented columns, in the roster's order, and the roster's own header for the assignment (an update).
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a2_transformer (5501)"]
    assert rows[1] == ["Points Possible", "", "", "", "", "10"]
    assert [r[:5] for r in rows[2:]] == [r[:5] for r in roster[2:]]  # every student, identity cells as exported
    oracle = _oracle(course, tmp_path)
    by_id = {r[1]: r[5] for r in rows[2:]}
    for i, student in enumerate(collected):
        assert float(by_id[student.removeprefix("canvas-")]) == float(oracle[student]) == 10.0 - 2.5 * i
    assert by_id["4215"] == by_id["4216"] == ""  # nothing handed in: blank, never a 0 over an LMS grade
    report = capsys.readouterr().out
    assert "Absent, Always (canvas-4216)" in report and "van der Berg, Anna Maria (canvas-4215)" in report


def test_a_graded_student_missing_from_the_roster_is_reported_not_dropped(course, canvas_roster, tmp_path, capsys):
    _gradebook(course, {"canvas-4211": (6, 4), "canvas-9999": (5, 1)})
    out = tmp_path / "import.csv"
    assert _export(course, ("canvas", canvas_roster), out=out) == 1
    assert "canvas-9999" in capsys.readouterr().out and not out.exists()
    assert _export(course, ("canvas", canvas_roster), "--allow-unmatched", out=out) == 0
    assert "NOT in the file (graded, no roster row): canvas-9999" in capsys.readouterr().out
    assert {r[1]: r[5] for r in _rows(out)[2:]}["4211"] == "10"


def test_answers_awaiting_a_ta_refuse_the_export(course, canvas_roster, tmp_path, capsys):
    _gradebook(course, {"canvas-4211": (6, 0), "canvas-4212": (6, 0)}, manual_pending={"canvas-4212"})
    assert _export(course, ("canvas", canvas_roster), out=tmp_path / "x.csv") == 1
    out = capsys.readouterr().out
    assert "need a TA's grade" in out and "canvas-4212" in out and "canvas-4211" not in out.split("grade")[-1]


def test_the_roster_is_never_overwritten(course, canvas_roster, capsys):
    _gradebook(course, {"canvas-4211": (6, 4)})
    before = canvas_roster.read_bytes()
    assert _export(course, ("canvas", canvas_roster), out=canvas_roster) == 1
    assert "not overwriting the roster" in capsys.readouterr().out
    assert canvas_roster.read_bytes() == before


def test_moodle_export_is_keyed_by_email(course, tmp_path):
    roster = tmp_path / "moodle_grades.csv"
    roster.write_text("First name,Last name,ID number,Institution,Department,Email address,"
                      "Last downloaded from this course\r\n"
                      "José,Müller,,Uni,,jose.muller@uni.example,1700000000\r\n"
                      "John,Doe,,Uni,,john.doe@uni.example,1700000000\r\n"
                      "John,Doe,,Other,,jdoe@other.example,1700000000\r\n", encoding="utf-8")
    _gradebook(course, {"moodle-jose-muller-at-uni-example": (6, 4), "moodle-jdoe-at-other-example": (3, 1)})
    out = tmp_path / "moodle_import.csv"
    assert _export(course, ("moodle", roster), out=out) == 0
    rows = _rows(out)
    assert rows[0] == ["First name", "Last name", "ID number", "Email address", A]
    assert rows[1:] == [["José", "Müller", "", "jose.muller@uni.example", "10"],
                        ["John", "Doe", "", "john.doe@uni.example", ""],
                        ["John", "Doe", "", "jdoe@other.example", "4"]]


@pytest.mark.parametrize("text, words", [
    ("Student,ID,Section\r\nx,1,a\r\n", "lacks the column(s) SIS Login ID"),
    ('Student,ID,SIS User ID,SIS Login ID,Section\r\n"Doe, John",4211,,j,S\r\n"Doe, Jon",4211,,k,S\r\n',
     "rows 1 (Doe, John) and 2 (Doe, Jon) have the same ID"),
    ('Student,ID,SIS User ID,SIS Login ID,Section\r\n"Doe, John",,,j,S\r\n', "the ID cell is empty on line(s) 2"),
])
def test_a_roster_that_is_not_canvas_says_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    with pytest.raises(lms.RosterError, match=re_escape(words)):
        lms.read_roster(path, "canvas")


def re_escape(text: str) -> str:
    import re
    return re.escape(text)
