"""Grades into the LMS: who is who (LMS identity -> nbgrader student id), the rosters it exports, the files it imports.

One rule says which nbgrader student an LMS student is, and both directions use it: `zip_collect` files a
download under that id (coursetools/collect.py), and `vitcourse export --lms` looks the id up for each roster row.

* Canvas: `canvas-<ID>`, ID being the user's number (the `ID` column of the gradebook export, the number after
  the name in a download's file names). It is unique and ASCII, so two students with the same display name stay
  two students, and names with spaces, accents or apostrophes never reach a folder name.
* Moodle: `moodle-<e-mail, lower-cased, '@' as '-at-', other runs of non-alphanumerics as '-'>`. A Moodle
  download names students by a participant number that changes from one assignment to the next, so the
  assignment's grading worksheet (Identifier "Participant N", Full name, Email address) is what links a file to
  a student: put it at `downloaded/<assignment>/moodle_worksheet.csv`.

Formats, as the LMSs document them:

* Canvas gradebook CSV (Grades > Export, and > Import): identity columns `Student, ID, SIS User ID, SIS Login ID,
  Section`, one column per assignment headed by its name (the export writes `name (assignment id)`; an import
  with that header updates the assignment, a new header creates one), and a second row whose `Student` cell is
  "Points Possible" holding each assignment's maximum.
* Moodle grade import CSV (Grades > Import > CSV file): one column that identifies the user (mapped to "Email
  address" on import), one column per grade item. The roster is the gradebook's plain-text export (`First name,
  Last name, ID number, Institution, Department, Email address, ...`) or an assignment's grading worksheet.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from coursecore import files

LMSES = ("canvas", "moodle")
CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "Points Possible"
MOODLE_EMAIL = "Email address"
MOODLE_IDENTITY = ["First name", "Last name", "Full name", "ID number", "Username", MOODLE_EMAIL]
MOODLE_WORKSHEET = "moodle_worksheet.csv"  # downloaded/<assignment>/ holds it: participant number -> student


class RosterError(ValueError):
    """A roster or worksheet that cannot be read as the LMS writes it; the message says which file and what to do."""


def canvas_student_id(user_id: str) -> str:
    return f"canvas-{user_id.strip()}"


def moodle_student_id(email: str) -> str:
    local = email.strip().lower().replace("@", "-at-")
    return "moodle-" + re.sub(r"[^a-z0-9]+", "-", local).strip("-")


@dataclass
class Roster:
    """The LMS's roster as it was read: its header, its rows, and the nbgrader student id of each row."""

    lms: str
    path: Path
    header: list[str]
    rows: list[dict[str, str]]  # the students, in the roster's order (Canvas's Points Possible row left out)
    ids: list[str]  # nbgrader student id of rows[i]

    def identity_columns(self) -> list[str]:
        wanted = CANVAS_IDENTITY if self.lms == "canvas" else MOODLE_IDENTITY
        return [c for c in self.header if c in wanted]

    def name(self, i: int) -> str:
        row = self.rows[i]
        return row.get("Student") or row.get("Full name") or \
            f"{row.get('First name', '')} {row.get('Last name', '')}".strip()

    def column_for(self, assignment: str) -> str:
        """The roster's own header for this assignment (Canvas's "a2_transformer (1234)"), else its id."""
        for column in self.header:
            if column == assignment or re.fullmatch(re.escape(assignment) + r" \(\d+\)", column):
                return column
        return assignment


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # Canvas and Excel put a BOM before the header
    except (OSError, UnicodeDecodeError) as err:
        raise RosterError(f"cannot read the roster {path}: {err}; export it again from the LMS as CSV (UTF-8)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return list(reader.fieldnames or []), list(reader)


def _unique(ids: list[str], names: list[str], path: Path, what: str) -> None:
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            j = seen[sid]
            raise RosterError(f"{path}: rows {j + 1} ({names[j]}) and {i + 1} ({names[i]}) have the same {what}, so "
                              f"they would be one nbgrader student ({sid}); correct the roster in the LMS and export it again")
        seen[sid] = i


def read_roster(path: str | Path, lms: str) -> Roster:
    """The roster `lms` exported, checked for the identity columns that format documents and for duplicates."""
    path = Path(path)
    header, rows = _read_csv(path)
    if lms == "canvas":
        missing = [c for c in ("Student", "ID", "SIS Login ID", "Section") if c not in header]
        key, to_id = "ID", canvas_student_id
        rows = [r for r in rows if (r.get("Student") or "").strip() != POINTS_POSSIBLE]
        hint = "Canvas: Grades > Export > Export Entire Gradebook"
    elif lms == "moodle":
        missing = [] if MOODLE_EMAIL in header else [MOODLE_EMAIL]
        key, to_id = MOODLE_EMAIL, moodle_student_id
        hint = "Moodle: Grades > Export > Plain text file, with the identity field 'Email address'"
    else:
        raise RosterError(f"unknown LMS {lms!r}; choose one of {', '.join(LMSES)}")
    if missing:
        raise RosterError(f"{path} is not a {lms} roster: it lacks the column(s) {', '.join(missing)} "
                          f"(its header: {', '.join(header) or 'empty'}); export it from the LMS ({hint})")
    blank = [i + 2 for i, r in enumerate(rows) if not (r.get(key) or "").strip()]
    if blank:
        raise RosterError(f"{path}: the {key} cell is empty on line(s) {', '.join(map(str, blank))}; "
                          "every student needs one to be matched — export the roster again from the LMS")
    roster = Roster(lms, path, header, rows, [to_id(r[key]) for r in rows])
    _unique(roster.ids, [roster.name(i) for i in range(len(rows))], path, key)
    return roster


def read_moodle_worksheet(path: str | Path) -> dict[str, str]:
    """participant number -> nbgrader student id, from an assignment's Moodle grading worksheet."""
    path = Path(path)
    header, rows = _read_csv(path)
    if "Identifier" not in header or MOODLE_EMAIL not in header:
        raise RosterError(f"{path} is not a Moodle grading worksheet (it needs the columns Identifier and "
                          f"{MOODLE_EMAIL}; its header: {', '.join(header)}); download it from the assignment's "
                          "'View all submissions' page (Grading action: Download grading worksheet)")
    out: dict[str, str] = {}
    for line, row in enumerate(rows, 2):
        number = re.search(r"(\d+)\s*$", row.get("Identifier") or "")
        if not number or not (row.get(MOODLE_EMAIL) or "").strip():
            raise RosterError(f"{path}, line {line}: no participant number or e-mail address ({row}); download "
                              "the worksheet again")
        out[number.group(1)] = moodle_student_id(row[MOODLE_EMAIL])
    return out


# ---- grades -------------------------------------------------------------------------------------------------

@dataclass
class Grades:
    """Per assignment: its maximum and each student's points (automatic + manual, minus nbgrader's late penalty)."""

    max_score: dict[str, float] = field(default_factory=dict)
    points: dict[str, dict[str, float]] = field(default_factory=dict)  # assignment -> student -> points
    needs_manual: dict[str, list[str]] = field(default_factory=dict)  # assignment -> students not hand-graded yet

    def students(self) -> set[str]:
        return {s for by in self.points.values() for s in by}


def read_grades(course_dir: Path, assignments: Optional[list[str]] = None) -> Grades:
    """Every submission's score from gradebook.db, computed as nbgrader's own CSV export computes it."""
    from nbgrader.api import Gradebook

    grades = Grades()
    with Gradebook(f"sqlite:///{Path(course_dir) / 'gradebook.db'}") as gb:
        for assignment in gb.assignments:
            if assignments and assignment.name not in assignments:
                continue
            grades.max_score[assignment.name] = float(assignment.max_score)
            by = grades.points.setdefault(assignment.name, {})
            for sub in gb.assignment_submissions(assignment.name):
                # `score` sums each grade's manual score where a TA gave one, else its automatic score.
                by[sub.student_id] = max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0))
                if sub.needs_manual_grade:
                    grades.needs_manual.setdefault(assignment.name, []).append(sub.student_id)
    missing = sorted(set(assignments or []) - set(grades.max_score))
    if missing:
        raise RosterError(f"no assignment {', '.join(missing)} in {Path(course_dir) / 'gradebook.db'}; "
                          f"the gradebook has: {', '.join(sorted(grades.max_score)) or 'none'}")
    return grades


def _points(value: float) -> str:
    return f"{value:g}" if value == round(value, 6) else f"{value:.6g}"


@dataclass
class LmsFile:
    """What `write_lms_file` wrote and who it could not place."""

    path: Path
    assignments: list[str]
    not_in_roster: list[str]  # graded in nbgrader, no roster row: their grades are NOT in the file
    nothing_graded: list[str]  # roster rows with no submission in any exported assignment (left blank)


def match(roster: Roster, grades: Grades) -> tuple[list[str], list[str]]:
    """(graded students the roster lacks, roster students nothing was graded for), each sorted."""
    graded, listed = grades.students(), set(roster.ids)
    return sorted(graded - listed), sorted(i for i in roster.ids if i not in graded)


def write_lms_file(roster: Roster, grades: Grades, out: str | Path) -> LmsFile:
    """The LMS's import file: the roster's identity columns as they were, one column per assignment, atomically.

    A student without a submission gets an empty cell (the LMS leaves that grade alone), never a 0 that would
    overwrite a grade entered in the LMS; Canvas's Points Possible row carries each assignment's maximum.
    """
    out = Path(out)
    if out.resolve() == roster.path.resolve():
        raise RosterError(f"not overwriting the roster {roster.path}: write the import file elsewhere (--out)")
    assignments = sorted(grades.points)
    identity = roster.identity_columns()
    header = identity + [roster.column_for(a) for a in assignments]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    if roster.lms == "canvas":
        writer.writerow([POINTS_POSSIBLE if c == "Student" else "" for c in identity]
                        + [_points(grades.max_score[a]) for a in assignments])
    for row, sid in zip(roster.rows, roster.ids):
        scores = [grades.points[a].get(sid) for a in assignments]
        writer.writerow([row.get(c, "") for c in identity] + ["" if s is None else _points(s) for s in scores])
    with files.replacing(out) as partial:
        partial.write_text(buf.getvalue(), encoding="utf-8")
    missing, empty = match(roster, grades)
    return LmsFile(out, assignments, missing, empty)
