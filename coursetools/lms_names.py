"""The names an LMS gives the files of a bulk download, read back into who handed in what.

Canvas ("Download Submissions") names every file

    <lastfirst>[_LATE]_<user id>_<submission id>_<original name>     e.g. doejohn_LATE_4211_90312_a2_transformer.ipynb

where `lastfirst` is the student's sortable name, lower-cased, with spaces and punctuation removed (letters
with accents stay), `LATE` marks a submission after the due date, the user id is the `ID` column of Canvas's
gradebook export and, when a student uploads the same file name again, Canvas appends `-1`, `-2` ... before the
extension (`a2_transformer-1.ipynb`).

Moodle ("Download all submissions") names every file, or with "download submissions in folders" every folder,

    <Full Name>_<participant id>_assignsubmission_<plugin>[_<original name>]   e.g. José O'Neil_1234_assignsubmission_file_x.zip

where the full name has its underscores replaced by spaces (so the first `_` ends it), the participant id is a
number Moodle keeps per assignment (mod/assign's `get_uniqueid_for_user`: the same student has another one in
the next assignment; the assignment's grading worksheet lists it as "Participant 1234"), and with blind
marking the name is "Participant". Moodle has no late marker in the name.

Both parsers return None for a name that is not of their LMS: never a half-parsed record.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Optional

# Non-greedy key: the first `_<digits>_<digits>_` after it ends the name, whatever the original name holds.
_CANVAS = re.compile(r"^(?P<key>[^/]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<sub>\d+)_(?P<original>[^/]+)$")
_MOODLE = re.compile(r"^(?P<key>[^_/]+)_(?P<user>\d+)_assignsubmission_(?P<plugin>[a-z]+)(?:_(?P<original>[^/]+))?$")
# Canvas's suffix for a file name uploaded again: "-1" before the extension (or at the end without one).
_RESUBMITTED = re.compile(r"^(?P<stem>.+?)-(?P<n>\d+)(?P<ext>\.[^.]+)?$")


@dataclass(frozen=True)
class LmsName:
    """One file (or folder) name of an LMS bulk download, read back."""

    lms: str  # "canvas" or "moodle"
    student_key: str  # the name part: Canvas's lastfirst, Moodle's full name (NFC); for display, never an identity
    user_id: str  # Canvas: the user's ID; Moodle: the participant id of this assignment
    submission_id: Optional[str]  # Canvas's number after the user id; Moodle names have none
    late: bool  # Canvas's LATE marker
    original: str  # the name the student uploaded ("" for a Moodle folder), Canvas's "-N" removed
    resubmission: int = 0  # Canvas's N in "-N" (0: none)
    uploaded: str = ""  # the original name exactly as in the download, "-N" included


def _nfc(text: str) -> str:
    # An archive unpacked on macOS spells "é" as e + combining accent (NFD); the LMS wrote NFC.
    return unicodedata.normalize("NFC", text)


def split_resubmission(name: str) -> tuple[str, int]:
    """("a2_transformer.ipynb", 1) from Canvas's "a2_transformer-1.ipynb"; (name, 0) when there is no suffix."""
    match = _RESUBMITTED.match(name)
    if not match:
        return name, 0
    return match["stem"] + (match["ext"] or ""), int(match["n"])


def parse_canvas_name(filename: str) -> Optional[LmsName]:
    """Canvas's `lastfirst[_LATE]_userid_submissionid_original`, or None when `filename` is not one."""
    match = _CANVAS.match(_nfc(filename))
    if not match:
        return None
    original, copy = split_resubmission(match["original"])
    return LmsName("canvas", match["key"], match["user"], match["sub"], bool(match["late"]), original, copy,
                   match["original"])


def parse_moodle_name(filename: str) -> Optional[LmsName]:
    """Moodle's `Full Name_participantid_assignsubmission_plugin[_original]`, or None when it is not one."""
    match = _MOODLE.match(_nfc(filename))
    if not match:
        return None
    original = match["original"] or ""
    return LmsName("moodle", match["key"].strip(), match["user"], None, False, original, 0, original)


def parse_lms_name(filename: str) -> Optional[LmsName]:
    """Whichever LMS's name `filename` is (Moodle's is the more specific pattern, so it is tried first)."""
    return parse_moodle_name(filename) or parse_canvas_name(filename)
