"""`nbgrader export` is atomic: killed midway, it leaves the previous complete grades.csv, never a partial one.

Runs the real `nbgrader export` on a scratch course whose gradebook holds a small class. The fault is an
export plugin (a subclass of the one configured) that SIGKILLs its own process after the first student's
row; the control run does the same to nbgrader's stock CsvExportPlugin, which then leaves a truncated file.
"""
from __future__ import annotations

import csv
import io
import textwrap

import pytest

from coursetools import term, release

A = "a2_transformer"
STUDENTS = ["ada", "ben", "cy"]

KILLER = textwrap.dedent('''
    import os, signal
    from nbgrader.plugins.export import CsvExportPlugin
    from coursetools.export import AtomicCsvExportPlugin

    class _KillAfterOne:
        """The gradebook, except that the process is killed on the second student's lookup."""
        def __init__(self, gradebook):
            self._gb, self._calls = gradebook, 0
        def __getattr__(self, name):
            return getattr(self._gb, name)
        def find_submission(self, *args, **kwargs):
            self._calls += 1
            if self._calls == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return self._gb.find_submission(*args, **kwargs)

    class KilledAtomic(AtomicCsvExportPlugin):
        def export(self, gradebook):
            super().export(_KillAfterOne(gradebook))

    class KilledStock(CsvExportPlugin):
        def export(self, gradebook):
            super().export(_KillAfterOne(gradebook))
''')


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = term.make_course(tmp_path_factory.mktemp("export"), [A])
    roster = course / "students.csv"
    roster.write_text("id,first_name,last_name\n" + "".join(f"{s},{s.title()},Student\n" for s in STUDENTS))
    release.nbgrader(course, "db", "student", "import", str(roster))
    release.nbgrader(course, "db", "assignment", "add", A)
    (course / "killed_export.py").write_text(KILLER)  # importable: nbgrader runs with course/ as cwd
    return course


def _export(course, out, *options):
    return release.nbgrader(course, "export", "--to", str(out), *options, check=False)


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_writes_the_same_csv_as_nbgrader(course, tmp_path):
    ours, stock = tmp_path / "ours.csv", tmp_path / "stock.csv"
    assert _export(course, ours).returncode == 0
    proc = _export(course, stock, "--ExportApp.plugin_class=nbgrader.plugins.export.CsvExportPlugin")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ours.read_text() == stock.read_text()
    assert sorted(r["student_id"] for r in _rows(ours.read_text())) == STUDENTS
    assert oct(ours.stat().st_mode & 0o777) == oct(0o644)
    assert list(tmp_path.glob("*.partial")) == []


def test_a_killed_export_keeps_the_previous_complete_file(course, tmp_path):
    out = tmp_path / "grades.csv"
    assert _export(course, out).returncode == 0
    complete = out.read_text()
    killed = _export(course, out, "--ExportApp.plugin_class=killed_export.KilledAtomic")
    assert killed.returncode != 0  # it really died midway
    assert out.read_text() == complete
    # Control: nbgrader's own plugin, killed at the same moment, leaves a truncated file.
    killed = _export(course, out, "--ExportApp.plugin_class=killed_export.KilledStock")
    assert killed.returncode != 0
    assert out.read_text() != complete and len(_rows(out.read_text())) < len(STUDENTS)
