"""nbgrader integration: recompute hidden grade cells outside the student's kernel, and the config.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

During `nbgrader autograde` the notebook runs in one kernel with the student's own cells, which can
monkeypatch anything (torch, autograder.nb, IPython's AST transformers). `RegradeHiddenCells` runs after
`Execute`: for every grade cell whose source calls `grade_part("<part>")`, it grades that part from the
submission's `.py` files in the sandbox (never in the kernel) and replaces the cell's outputs with the
feedback (stdout) and the score (execute_result), which `SaveAutoGrades` then records.

In `course/nbgrader_config.py`::

    from autograder.nbgrader_plugin import configure
    configure(c, assignments=["vit"])

which is the same as writing::

    c.Autograde.exclude_overwriting = {"vit": ["transformer.py", "ViT.py"]}
    c.OverwriteCells.add_missing_cells = True
    c.Execute.timeout = 120
    c.Autograde.autograde_preprocessors = [SnapshotSubmission, Execute, RegradeHiddenCells, IgnorePattern,
        ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_output
from traitlets import Bool

from autograder.nb import REGRADE_ENV
from autograder.points import POINTS

from autograder.registry import STUDENT_FILES  # noqa: E402
CELL_TIMEOUT_S = 120  # per cell, CPU grading: torch import + one part, with room for a slow machine
GRADE_CALL = re.compile(r"""grade_part\(\s*["'](?P<part>[\w.]+)["']""")


def hidden_parts(source: str) -> list[str]:
    """Parts named by grade_part(...) calls in a cell's source."""
    return [m["part"] for m in GRADE_CALL.finditer(source) if m["part"] in POINTS]


SNAPSHOT_KEY = "vitcourse_snapshot"  # resources key: the grader-private copy of the handed-in files


class SnapshotSubmission(Preprocessor):
    """Before the kernel runs: copy the student's files to a folder only the grader can reach.

    The kernel may write its own folder (the sandbox lets it), so the out-of-kernel regrade grades this
    copy: the files as handed in, never files the student's cells rewrote (e.g. with a copy of a reference).
    """

    enabled = Bool(True, help="Grade the handed-in files, not what the kernel left.").tag(config=True)

    def preprocess(self, nb, resources):
        import shutil
        import tempfile

        folder = Path(resources.get("metadata", {}).get("path") or ".")
        snap = Path(tempfile.mkdtemp(prefix="vitcourse-handed-in-"))
        os.chmod(snap, 0o700)
        for name in STUDENT_FILES:
            if (folder / name).is_file() and not (folder / name).is_symlink():
                shutil.copyfile(folder / name, snap / name)
        resources[SNAPSHOT_KEY] = str(snap)
        return nb, resources


class RegradeHiddenCells(Preprocessor):
    """Overwrite the outputs of grade_part cells with a score computed outside the kernel."""

    # nbconvert preprocessors are disabled unless told otherwise; nbgrader registers its pipeline without
    # enabling anything, so this one is on by default.
    enabled = Bool(True, help="Recompute grade_part cells outside the kernel.").tag(config=True)

    def preprocess(self, nb, resources):
        snapshot = resources.pop(SNAPSHOT_KEY, None)
        folder = Path(snapshot or resources.get("metadata", {}).get("path") or ".")
        try:
            return self._regrade(nb, resources, folder)
        finally:
            if snapshot:
                import shutil
                shutil.rmtree(snapshot, ignore_errors=True)

    def _regrade(self, nb, resources, folder: Path):
        from autograder import grader

        cells = []
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                parts = hidden_parts(cell.source)
                if parts:
                    cells.append((cell, parts, float(meta.get("points", 0))))
        if not cells:
            return nb, resources
        wanted = sorted({p for _, parts, _ in cells for p in parts}, key=list(POINTS).index)
        try:
            report = grader.grade(folder, only=wanted)
            results = {p.part: p for p in report.parts}
        except Exception as err:  # noqa: BLE001 - grade 0 with a reason rather than keep the kernel's score
            self.log.error("autograder could not grade %s: %s", folder, err)
            results = {}
        for cell, parts, points in cells:
            earned, possible, text = 0.0, 0.0, []
            for part in parts:
                result = results.get(part)
                possible += POINTS[part]
                if result is None:
                    text.append(f"{part}: could not be graded; ask your TA.")
                    continue
                earned += result.score
                text.append(f"{part}: {result.score:g}/{result.max_score:g}\n{result.feedback()}")
            score = round(points * earned / possible, 2) if possible else 0.0
            cell.outputs = [new_output("stream", name="stdout", text="\n".join(text) + "\n"),
                            new_output("execute_result", data={"text/plain": repr(score)},
                                       execution_count=cell.get("execution_count"))]
        return nb, resources


def configure(c, assignments: list[str], cell_timeout: int = CELL_TIMEOUT_S) -> None:
    """Set everything the course's nbgrader_config.py needs for autograding with this package."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern,
                                        LimitOutput, SaveAutoGrades)

    c.RegradeHiddenCells.enabled = True
    # Each student's kernel runs in the allow-list sandbox (autograder/kernel_sandbox.py), over ipc sockets.
    c.Execute.kernel_manager_class = "autograder.kernel_sandbox.SandboxedKernelManager"
    # The kernels nbgrader starts inherit this and leave the scoring of grade_part cells to the plugin.
    os.environ[REGRADE_ENV] = "1"
    c.Autograde.exclude_overwriting = {a: list(STUDENT_FILES) for a in assignments}
    c.OverwriteCells.add_missing_cells = True
    c.Execute.timeout = cell_timeout
    c.Autograde.autograde_preprocessors = [SnapshotSubmission, Execute, RegradeHiddenCells, IgnorePattern, ClearMetadataPreprocessor,
                                           LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
