"""`nbgrader export` that never leaves a truncated or partial grades file behind.

nbgrader's CsvExportPlugin opens the destination with "w" and writes row by row: an export killed (or
failing on one student) midway replaces a complete grades.csv with an empty or partial one that looks
valid. This plugin writes the same CSV to a temporary name in the destination's folder, flushes it to
disk and renames it over the destination (`os.replace`, atomic on one file system): readers see either
the previous complete file or the new complete one, never anything in between.
"""
from __future__ import annotations

import os
import tempfile

from nbgrader.plugins.export import CsvExportPlugin


class AtomicCsvExportPlugin(CsvExportPlugin):
    """CsvExportPlugin writing to `<dest>.<random>.partial` and renaming it to `<dest>` once complete."""

    def export(self, gradebook) -> None:
        dest = os.path.abspath(self.to or "grades.csv")
        fd, partial = tempfile.mkstemp(prefix=os.path.basename(dest) + ".", suffix=".partial",
                                       dir=os.path.dirname(dest))
        os.close(fd)
        wanted = self.to
        try:
            self.to = partial
            super().export(gradebook)
            with open(partial, "rb+") as handle:  # the rename must not land before the data (power loss)
                os.fsync(handle.fileno())
            if os.path.exists(dest):
                os.chmod(partial, os.stat(dest).st_mode & 0o777)
            else:
                os.chmod(partial, 0o644)  # mkstemp's 0600 would hide the grades from the TA's group
            os.replace(partial, dest)
        finally:
            self.to = wanted
            if os.path.exists(partial):
                os.unlink(partial)
        self.log.info("Grades written to %s", dest)
