"""`nbgrader zip_collect` with hostile zip members, through the real nbgrader on a scratch course.

A member of alice's zip cannot hand in for bob or create a student who never handed in (the pattern of
course/nbgrader_config.py is anchored at the course's extracted/ folder), and a file that appears twice in
one zip never aborts the collection of the class (coursetools/collect.py keeps one copy by a fixed rule).
The control runs show that the same zips attack nbgrader's stock collector: with the old unanchored
pattern a member invents or overwrites students, and with the anchored pattern alone the duplicate aborts
the whole class.
"""
from __future__ import annotations

import shutil
import zipfile

import nbformat
import pytest

from coursetools import term, release

A = "a2_transformer"
NB = f"{A}.ipynb"
OLD_PATTERN = r".*/extracted/(?P<student_id>[A-Za-z0-9\-]+)(?:/[^/]+)?/(?P<file_id>[^/]+\.ipynb|transformer\.py)$"


def _nb(marker: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(marker))
    return nbformat.writes(nb)


ZIPS = {
    "alice": {
        f"{A}/{NB}": _nb("alice-in-folder"),
        f"{A}/transformer.py": "# alice's code\n",
        NB: _nb("alice-top-level"),  # the same notebook twice in one zip
        f"other/{NB}": _nb("alice-other-folder"),
        f"{A}/extracted/bob/{NB}": _nb("alice-writing-as-bob"),
        f"{A}/extracted/bob/transformer.py": "# alice's code as bob\n",
        f"{A}/extracted/mallory/{NB}": _nb("alice-inventing-mallory"),
        f"deep/extracted/mallory/{A}/{NB}": _nb("alice-inventing-mallory-2"),
    },
    "bob": {f"{A}/{NB}": _nb("bob-own"), f"{A}/transformer.py": "# bob's code\n"},
}


def _collect(course, *options) -> tuple:
    archive = course / "downloaded" / A / "archive"
    shutil.rmtree(course / "downloaded", ignore_errors=True)
    shutil.rmtree(course / "submitted", ignore_errors=True)
    archive.mkdir(parents=True)
    for student, members in ZIPS.items():
        with zipfile.ZipFile(archive / f"{student}.zip", "w") as zf:
            for name, text in members.items():
                zf.writestr(name, text)
    proc = release.nbgrader(course, "zip_collect", A, "--force", *options, check=False)
    submitted = course / "submitted"
    found = {p.relative_to(submitted).as_posix(): p.read_text() for p in submitted.rglob("*") if p.is_file()} \
        if submitted.is_dir() else {}
    return proc, found


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = term.make_course(tmp_path_factory.mktemp("collect"), [A])
    # zip_collect only needs the released notebook's name; the source notebook stands in for the release.
    (course / "release" / A).mkdir(parents=True)
    shutil.copy2(course / "source" / A / NB, course / "release" / A / NB)
    return course


@pytest.fixture(scope="module")
def collected(course):
    return _collect(course)


def test_a_member_cannot_hand_in_for_another_student_or_create_one(collected):
    proc, found = collected
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    students = {path.split("/")[0] for path in found}
    assert students == {"alice", "bob"}, sorted(found)
    assert "bob-own" in found[f"bob/{A}/{NB}"] and "alice" not in found[f"bob/{A}/{NB}"]
    assert found[f"bob/{A}/transformer.py"] == "# bob's code\n"
    assert not any("writing-as-bob" in text or "mallory" in text for text in found.values())


def test_a_file_twice_in_one_zip_keeps_the_one_in_the_assignment_folder(collected):
    proc, found = collected
    assert "alice-in-folder" in found[f"alice/{A}/{NB}"]
    assert found[f"alice/{A}/transformer.py"] == "# alice's code\n"
    log = proc.stdout + proc.stderr
    assert f"alice's zip holds {NB} more than once" in log  # the TA's log names the copies left out


def test_control_the_stock_collector_aborts_the_class_on_the_duplicate(course):
    proc, found = _collect(course, "--ZipCollectApp.collector_plugin=nbgrader.plugins.zipcollect.FileNameCollectorPlugin")
    assert proc.returncode != 0 and "Duplicate submission file" in proc.stdout + proc.stderr
    assert "bob" not in {path.split("/")[0] for path in found}  # bob, who did nothing wrong, is not collected


def test_control_the_stock_collector_is_attacked_by_the_same_zips(course):
    proc, found = _collect(course, "--ZipCollectApp.collector_plugin=nbgrader.plugins.zipcollect.FileNameCollectorPlugin",
                           f"--FileNameCollectorPlugin.named_regexp={OLD_PATTERN}")
    log = proc.stdout + proc.stderr
    # Either it aborts the class on the duplicate, or it invents mallory / overwrites bob.
    attacked = proc.returncode != 0 or any(p.startswith("mallory/") for p in found) or \
        "alice" in found.get(f"bob/{A}/{NB}", "")
    assert attacked, log[-3000:]
