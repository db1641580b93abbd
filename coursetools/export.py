"""`nbgrader export` that never leaves a truncated or partial grades file behind.

nbgrader's CsvExportPlugin opens the destination with "w" and writes row by row: an export killed (or
failing on one student) midway replaces a complete grades.csv with an empty or partial one that looks
valid. This plugin writes the same CSV to a temporary name in the destination's folder, flushes it to
disk and renames it over the destination (`os.replace`, atomic on one file system): readers see either
the previous complete file or the new complete one, never anything in between.
"""
from __future__ import annotations

import os

from nbgrader.plugins.export import CsvExportPlugin

from coursecore import files


class AtomicCsvExportPlugin(CsvExportPlugin):
    """CsvExportPlugin writing to `<dest>.<random>.partial` and renaming it to `<dest>` once complete."""

    def export(self, gradebook) -> None:
        dest = os.path.abspath(self.to or "grades.csv")
        wanted = self.to
        # A new grades file is readable by the TA's group (mkstemp's 0600 would hide it); a replaced one keeps its mode.
        mode = None if os.path.exists(dest) else 0o644
        try:
            with files.replacing(dest, mode) as partial:
                self.to = str(partial)
                super().export(gradebook)
        finally:
            self.to = wanted
        self.log.info("Grades written to %s", dest)
