"""`nbgrader zip_collect` that reads LMS download names and never aborts the class over a file handed in twice.

nbgrader extracts `downloaded/<assignment>/archive/<name>.zip` into `.../extracted/<name>/` (a file that is not
an archive is copied there as it is) and matches each extracted file against `named_regexp` (anchored at the
course's own extracted/ folder in coursetools/pipeline.py, so the student is always the top-level name, never a
folder inside a zip). The top-level name is either

* a plain student id, `<student_id>.zip` (the course's own convention), or
* the name an LMS gave the file in its bulk download (coursetools/lms_names.py): Canvas's
  `lastfirst[_LATE]_userid_submissionid_original` and Moodle's `Full Name_participant_assignsubmission_file[_original]`,
  a zip, a loose file or (Moodle's "download in folders") a folder. The student is the LMS identity's nbgrader id
  (coursetools/lms.py: `canvas-<userid>`; Moodle through the assignment's grading worksheet), so a TA unzips the
  LMS's download into archive/ and renames nothing. Two students with the same display name stay two students.

A zip that holds the same file twice, e.g. `a2_transformer.ipynb` at its top level and again in
`a2_transformer/` (a student who zipped the folder and its contents), made nbgrader stop the collection of the
*whole class* ("Duplicate submission file. No timestamps for comparison"): zip members carry no timestamp
nbgrader can read. `OneCopyCollectorPlugin` keeps exactly one copy of each of a student's files by a fixed rule,
the same on every run:

1. the newest LMS upload (Canvas's `-N` resubmission suffix, then the larger submission id);
2. the copy inside the assignment's own folder (`<zip>/<assignment>/<file>`, how the release is zipped);
3. else the copy at the zip's top level;
4. else the first by path;

and logs every other copy as skipped, naming the student and the copy that was collected.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from nbgrader.plugins.zipcollect import FileNameCollectorPlugin
from traitlets import Unicode

from coursetools import lms, lms_names


class OneCopyCollectorPlugin(FileNameCollectorPlugin):
    """FileNameCollectorPlugin that reads LMS download names and collects one copy of a file handed in twice."""

    course_root = Unicode("", help="the course folder (LMS names are read only under its downloaded/*/extracted/)"
                          ).tag(config=True)
    submission_file_re = Unicode(r"[^/]+\.ipynb", help="what a handed-in file may be called").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._indexes: dict[str, dict] = {}
        self._worksheets: dict[str, Optional[dict]] = {}

    # ---- who and what a path is ---------------------------------------------------------------------------

    def _extracted(self, path: str) -> Optional[tuple[str, str, str]]:
        """(extracted folder, assignment, path inside it) for a path under this course's extracted/ folders."""
        if not self.course_root:
            return None
        root = re.escape(os.path.abspath(self.course_root))
        match = re.match(rf"^({root}/downloaded/([^/]+)/extracted)/(.+)$", path)
        return (match[1], match[2], match[3]) if match else None

    def _worksheet(self, extracted: str, assignment: str) -> Optional[dict]:
        """participant number -> student id of this assignment's Moodle worksheet (None, logged, when absent)."""
        path = os.path.join(os.path.dirname(extracted), lms.MOODLE_WORKSHEET)
        if path not in self._worksheets:
            try:
                self._worksheets[path] = lms.read_moodle_worksheet(path) if os.path.exists(path) else None
            except lms.RosterError as err:
                self.log.error("%s", err)
                self._worksheets[path] = None
            if self._worksheets[path] is None and not os.path.exists(path):
                self.log.error("Moodle names a student by a participant number that changes with each assignment: "
                               "put %s's grading worksheet at %s to collect Moodle-named submissions", assignment, path)
        return self._worksheets[path]

    def _lms_match(self, path: str) -> Optional[tuple[dict, tuple, list]]:
        """(groupdict, newness, path below the top-level name) for a file under an LMS-named top-level entry, else None."""
        where = self._extracted(path)
        if not where:
            return None
        extracted, assignment, inside = where
        top, *rest = inside.split("/")
        name = lms_names.parse_lms_name(top)
        if name is None or len(rest) > (3 if name.lms == "moodle" and not name.original else 2):
            return None
        if rest:
            file_id = rest[-1]
        else:  # a loose file: the LMS's name is the file's; Canvas's "-N" goes when the plain name is a submission
            file_id = name.original if re.fullmatch(self.submission_file_re, name.original) else name.uploaded
        if not re.fullmatch(self.submission_file_re, file_id):
            return None
        if name.lms == "canvas":
            student = lms.canvas_student_id(name.user_id)
        else:
            student = (self._worksheet(extracted, assignment) or {}).get(name.user_id)
            if student is None:
                self.log.error("Skipped %s: participant %s (%s) is not in %s's Moodle worksheet", path, name.user_id,
                               name.student_key, assignment)
                return None
        return {"student_id": student, "file_id": file_id}, (name.resubmission, int(name.submission_id or 0)), rest

    def _match_any(self, path: str) -> Optional[tuple[dict, tuple, list]]:
        """A plain `<student_id>/...` path through named_regexp, else an LMS-named one; None when neither."""
        if os.path.splitext(path)[1] not in self.valid_ext:
            return None
        match = re.match(self.named_regexp, path) if self.named_regexp else None
        if match:
            where = self._extracted(path)
            rest = where[2].split("/")[1:] if where else [match["file_id"]]
            return match.groupdict(), (0, 0), rest
        return self._lms_match(path)

    # ---- one copy per student and file --------------------------------------------------------------------

    def _rank(self, newness: tuple, rest: list, path: str) -> tuple:
        assignment = getattr(getattr(self.parent, "coursedir", None), "assignment_id", None)
        layout = 0 if len(rest) >= 2 and rest[-2] == assignment else 1 if len(rest) <= 1 else 2
        return (-newness[0], -newness[1], layout, path)

    def _copies(self, path: str, key: tuple) -> list[tuple]:
        """Every (rank, path) of the extracted folder that is the same student's same file."""
        where = self._extracted(path)
        if where is None:
            return []
        extracted = where[0]
        if extracted not in self._indexes:  # built once: the extracted folder does not change while collecting
            index: dict[tuple, list] = {}
            for top, _, names in os.walk(extracted):
                for name in names:
                    other = os.path.join(top, name)
                    found = self._match_any(other)
                    if found:
                        info, newness, rest = found
                        index.setdefault((info["student_id"], info["file_id"]), []).append(
                            (self._rank(newness, rest, other), other))
            self._indexes[extracted] = index
        return self._indexes[extracted].get(key, [])

    def collect(self, submitted_file: str) -> Optional[dict]:
        found = self._match_any(submitted_file)
        if not found:
            return super().collect(submitted_file)  # nbgrader's own skip and its warning
        info = found[0]
        copies = self._copies(submitted_file, (info["student_id"], info["file_id"]))
        best = min(copies, default=(None, submitted_file))[1]
        if os.path.abspath(best) != os.path.abspath(submitted_file):
            self.log.warning("Skipped %s: %s's zip holds %s more than once (or the LMS download does); collected %s (rule: the newest LMS upload, "
                             "then the copy in the assignment folder, else the top-level one, else the first by path)",
                             submitted_file, info["student_id"], info["file_id"], best)
            return None
        return info
