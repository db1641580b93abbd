"""`nbgrader zip_collect` where a file handed in twice never aborts the class.

nbgrader extracts `downloaded/<assignment>/archive/<student_id>.zip` into `.../extracted/<student_id>/` and
matches each extracted file against `named_regexp` (anchored at the course's own extracted/ folder in
nbgrader_config.py, so the student is always the zip's name). A zip that holds the same file twice, e.g.
`a2_transformer.ipynb` at its top level and again in `a2_transformer/` (a student who zipped the folder
and its contents), makes nbgrader stop the collection of the *whole class* ("Duplicate submission file.
No timestamps for comparison"): zip members carry no timestamp nbgrader can read.

`OneCopyCollectorPlugin` keeps exactly one copy by a fixed rule, the same on every run:

1. the copy inside the assignment's own folder (`<zip>/<assignment>/<file>`, how the release is zipped);
2. else the copy at the zip's top level;
3. else the first by path;

and logs every other copy as skipped, naming the student and the copy that was collected.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from nbgrader.plugins.zipcollect import FileNameCollectorPlugin


class OneCopyCollectorPlugin(FileNameCollectorPlugin):
    """FileNameCollectorPlugin that collects one copy of a file a student's zip holds twice."""

    def _student_folder(self, student_id: str) -> Optional[str]:
        app = self.parent  # the ZipCollectApp that made this plugin (nbgrader passes parent=self)
        if app is None or not hasattr(app, "_format_collect_path"):
            return None
        return os.path.join(os.path.abspath(app._format_collect_path(app.extracted_directory)), student_id)

    def _rank(self, path: str, folder: str) -> tuple:
        parts = os.path.relpath(path, folder).split(os.sep)
        assignment = getattr(getattr(self.parent, "coursedir", None), "assignment_id", None)
        return (0 if len(parts) == 2 and parts[0] == assignment else 1 if len(parts) == 1 else 2, path)

    def _quiet_match(self, path: str) -> Optional[dict]:
        """super().collect without its warning per unmatched file (the rivals of each file are matched too)."""
        if os.path.splitext(path)[1] not in self.valid_ext:
            return None
        match = re.match(self.named_regexp, path)
        return match.groupdict() if match else None

    def collect(self, submitted_file: str) -> Optional[dict]:
        info = super().collect(submitted_file)
        folder = self._student_folder(info["student_id"]) if info else None
        if not folder:
            return info
        copies = []
        for top, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(top, name)
                other = self._quiet_match(path)
                if other and other["student_id"] == info["student_id"] and other["file_id"] == info["file_id"]:
                    copies.append(path)
        best = min(copies, key=lambda p: self._rank(p, folder), default=submitted_file)
        if os.path.abspath(best) != os.path.abspath(submitted_file):
            self.log.warning("Skipped %s: %s's zip holds %s more than once; collected %s (rule: the copy in the "
                             "assignment folder, else the top-level one, else the first by path)",
                             submitted_file, info["student_id"], info["file_id"], best)
            return None
        return info
