"""The names an LMS gives the files of its bulk download, read back into who handed in what.

Canvas's "Download Submissions" zip names every file `<name>_<user id>_<submission id>_<file as uploaded>`,
and a submission Canvas counts as late `<name>_LATE_<user id>_<submission id>_<file as uploaded>`; `<name>`
is the student's sortable name squeezed into lower-case letters (`smithjohn`). Canvas's LATE marker takes
the student's own due date into account (an extension, a section's date), which nothing in the file's times
does: where it is there, it decides whether the submission is late (coursetools/lateness.py).

Kept apart from the collector so that every reader of LMS names (zip_collect's student ids, the roster,
the late marker) parses them one way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Optional

CANVAS_NAME = re.compile(r"^(?P<name>[^_/]+)_(?:(?P<late>LATE)_)?(?P<user_id>\d+)_(?P<submission_id>\d+)_(?P<original>[^/]+)$")


@dataclass(frozen=True)
class CanvasName:
    """One file of Canvas's bulk download."""

    student_key: str  # Canvas's squeezed sortable name, e.g. 'smithjohn' (not unique: two John Smiths)
    user_id: str  # Canvas's user id: unique, what a roster maps to the course's student id
    submission_id: str  # grows with every new submission of the assignment
    late: bool  # Canvas's LATE marker: handed in after this student's own due date
    original_name: str  # the file as the student uploaded it, e.g. 'ada.zip' from the hand-in cell

    def __iter__(self):  # (student_key, user_id, submission_id, late, original_name), as the brief's tuple
        return iter((self.student_key, self.user_id, self.submission_id, self.late, self.original_name))


def parse_canvas_name(filename: str) -> Optional[CanvasName]:
    """The parts of a Canvas bulk-download name (a path's last component is read), or None for another name.

    >>> tuple(parse_canvas_name("smithjohn_LATE_12345_67890_ada.zip"))
    ('smithjohn', '12345', '67890', True, 'ada.zip')
    """
    match = CANVAS_NAME.match(PurePath(filename).name)
    if not match:
        return None
    return CanvasName(match["name"], match["user_id"], match["submission_id"], bool(match["late"]), match["original"])
