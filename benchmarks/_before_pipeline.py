"""The autograde steps before issue 10 items 3 and 4, for benchmarks/bench_regrade.py (imported by the
scratch course's nbgrader_config.py, so it imports no more than the real pipeline does)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from autograder import nbgrader_plugin
from coursecore.registry import STUDENT_FILES


class SnapshotCodeOnly(nbgrader_plugin.SnapshotSubmission):
    """The previous snapshot: only the student's .py files."""

    def preprocess(self, nb, resources):
        import os

        folder = Path(resources.get("metadata", {}).get("path") or ".")
        snap = Path(tempfile.mkdtemp(prefix="vitcourse-handed-in-"))
        for name in STUDENT_FILES:
            if (folder / name).is_file() and not (folder / name).is_symlink():
                shutil.copyfile(folder / name, snap / name)
        os.chmod(snap, 0o700)
        resources[nbgrader_plugin.SNAPSHOT_KEY] = str(snap)
        return nb, resources


class PartsOnly(nbgrader_plugin.RegradeHiddenCells):
    """The previous regrade: grade_part cells only; every other cell keeps what the kernel said."""

    def _regrade_answers(self, cells, folder):
        return None

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        shutil.rmtree(resources.pop(nbgrader_plugin.SNAPSHOT_KEY, ""), ignore_errors=True)
        return nb, resources
