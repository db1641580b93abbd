"""nbgrader integration: recompute hidden grade cells outside the student's kernel, and the config.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

During `nbgrader autograde` the notebook runs in one kernel with the student's own cells, which can
monkeypatch anything (torch, autograder.nb, autograder.quiz, IPython's AST and input transformers). So no
point is scored in the kernel:

* `SnapshotSubmission` (before `Execute`) copies the student's folder to a place only the grader reaches;
* `RegradeHiddenCells` (after `Execute`) scores every grade cell in this process: `grade_part("<part>")`
  cells by grading the snapshot's `.py` files in the sandbox; `grade_answer("<check>", VALUE, ...)` cells by
  running the registered check (autograder/answers.py) on the values the kernel recorded in the cell's
  outputs; any other grade cell gets 0 and a note. It replaces the cell's outputs with the feedback
  (stdout) and the score (execute_result), which `SaveAutoGrades` then records;
* `RestoreHandedInFiles` puts the folder back to the snapshot: nothing the kernel wrote reaches feedback/.

These are the steps; coursetools/pipeline.py puts them in nbgrader's pipeline (the one place that does).
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbconvert.preprocessors import Preprocessor
from nbgrader.preprocessors import Execute
from nbformat.v4 import new_output
from traitlets import Bool

from coursecore.parts import POINTS

GRADE_CALL = re.compile(r"""grade_part\(\s*["'](?P<part>[\w.]+)["']""")


def hidden_parts(source: str) -> list[str]:
    """Parts named by grade_part(...) calls in a cell's source."""
    return [m["part"] for m in GRADE_CALL.finditer(source) if m["part"] in POINTS]


SNAPSHOT_KEY = "vitcourse_snapshot"  # resources key: the grader-private copy of the handed-in files
NOT_SCORED_NOTE = ("this test cell has no check the autograder can run outside your notebook, so it earns no "
                   "points automatically; a TA grades it by hand")


def _handed_in(folder: Path, links: list | None = None) -> list[Path]:
    """Relative paths of the regular files under `folder` (links and special files are never handed in;
    the links met are appended to `links`, for the student's feedback)."""
    out = []
    for root, dirs, files in os.walk(folder):
        for d in [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            dirs.remove(d)
            if links is not None:
                links.append((Path(root) / d).relative_to(folder).as_posix())
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                if links is not None:
                    links.append(path.relative_to(folder).as_posix())
            elif path.is_file():
                out.append(path.relative_to(folder))
    return sorted(out)


LINKS_KEY = "vitcourse_links"  # resources key: the links the snapshot left out


class SnapshotSubmission(Preprocessor):
    """Before the kernel runs: copy the student's folder to a place only the grader can reach.

    The kernel may write its own folder (the sandbox lets it), so everything after `Execute` reads this
    copy: the regrade grades the files as handed in (never a copy of a reference the student's cells wrote
    over them), and `RestoreHandedInFiles` puts the folder back as it was, so that nothing the kernel wrote
    reaches `feedback/` (nbgrader copies the autograded folder's files there).
    """

    enabled = Bool(True, help="Grade the handed-in files, not what the kernel left.").tag(config=True)

    def preprocess(self, nb, resources):
        import shutil
        import tempfile

        folder = Path(resources.get("metadata", {}).get("path") or ".")
        snap = Path(tempfile.mkdtemp(prefix="vitcourse-handed-in-"))
        os.chmod(snap, 0o700)
        links: list[str] = []
        for rel in _handed_in(folder, links):
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / rel, snap / rel)
        note = folder / "links-not-graded.txt"  # coursetools.permissions.drop_links left it at collection
        if note.is_file() and not note.is_symlink():
            links += note.read_text(errors="replace").split()[:20]
        resources[SNAPSHOT_KEY] = str(snap)
        resources[LINKS_KEY] = links
        return nb, resources


class RestoreHandedInFiles(Preprocessor):
    """After the regrade: the autograded folder holds exactly the handed-in files again.

    Files, links and folders the kernel created are removed; handed-in files it changed or replaced are
    copied back from the snapshot (nbgrader then writes the graded notebook next to them).
    """

    enabled = Bool(True, help="Remove what the kernel wrote into the autograded folder.").tag(config=True)

    def preprocess(self, nb, resources):
        import shutil

        snapshot = resources.pop(SNAPSHOT_KEY, None)
        if not snapshot:
            return nb, resources
        folder, snap = Path(resources.get("metadata", {}).get("path") or "."), Path(snapshot)
        kept = set(_handed_in(snap))
        try:
            for root, dirs, files in os.walk(folder, topdown=False):
                for name in files + dirs:
                    path = Path(root) / name
                    rel = path.relative_to(folder)
                    if path.is_symlink() or (path.is_file() and rel not in kept) or not (path.is_file() or path.is_dir()):
                        path.unlink()
                    elif path.is_dir() and not any(k.parts[:len(rel.parts)] == rel.parts for k in kept):
                        shutil.rmtree(path)
            for rel in kept:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(snap / rel, folder / rel)
        finally:
            shutil.rmtree(snap, ignore_errors=True)
        return nb, resources


class ResilientExecute(Execute):
    """nbgrader's Execute, where no cell of a student's notebook can stop the class.

    * a cell that kills its kernel (`os._exit`, a signal, the CPU-time limit) gets an error saying so;
    * a cell that runs past the timeout is interrupted (the sandboxed kernel by an `interrupt_request`
      message: a signal to the process group does not reach a kernel in its own session); a kernel that then
      does not answer within RESPONSIVE_S (SIGINT ignored, a C loop) is stopped;
    * either way a fresh kernel replays the cells that ran before (their outputs kept as they were, the
      cells that broke a kernel left out) and the notebook goes on, as if that cell had raised: the cells after
      it are graded (the grading cells score outside the kernel, from the handed-in files and the values the
      kernel records).
    """

    RESPONSIVE_S = 10  # an interrupted kernel answers within a second; 10 s is for a loaded machine

    def preprocess(self, nb, resources=None, km=None):
        self._ran, self._broken = [], set()
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._recover(cell, index, "KernelDied", "the kernel stopped while this cell ran (it exited, was killed, "
                                                      "or used up its CPU time)")
            return cell, self.resources
        except CellTimeoutError:
            self._recover(cell, index, "KernelRestarted", "the cell did not stop when interrupted")
            return cell, self.resources
        timed_out = any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
                        for o in cell.get("outputs", []))
        if timed_out and not self._responsive():
            self._recover(cell, index, "KernelRestarted", "the cell did not stop when interrupted")
        elif cell.cell_type == "code":
            self._ran.append(index)
        return cell, resources

    def _responsive(self) -> bool:
        try:
            return bool(run_sync(self.kc.kernel_info)(reply=True, timeout=self.RESPONSIVE_S))
        except Exception:  # noqa: BLE001 - a timeout or a dead kernel: not responsive
            return False

    def _recover(self, cell, index: int, ename: str, why: str) -> None:
        _append_error(cell, ename, f"{why}; a fresh kernel ran the cells before it again and the notebook went on")
        self._broken.add(index)
        run_sync(self._async_restart)()
        for i in self._ran:  # the notebook's state back, without the cell that broke it; outputs kept
            try:
                super().preprocess_cell(copy.deepcopy(self.nb.cells[i]), self.resources, i)
            except (DeadKernelError, CellTimeoutError):
                self._broken.add(i)
                run_sync(self._async_restart)()
        self._ran = [i for i in self._ran if i not in self._broken]

    async def _async_restart(self) -> None:
        if self.kc is not None:
            await ensure_async(self.kc.stop_channels())
        await ensure_async(self.km.restart_kernel(now=True))
        await self.async_start_new_kernel_client()


def _append_error(cell, ename: str, evalue: str) -> None:
    cell.setdefault("outputs", []).append(new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))


class RegradeHiddenCells(Preprocessor):
    """Score every grade cell outside the kernel and overwrite its outputs with that score.

    * a `grade_part("<part>")` cell: the part is graded from the handed-in `.py` files in the sandbox;
    * a `grade_answer("<check>", VALUE, ...)` cell: the values the kernel recorded in the cell's outputs
      are scored by the registered check (autograder/answers.py) in this process;
    * any other grade cell: 0 points and a note (nothing the kernel reports is trusted).
    """

    # nbconvert preprocessors are disabled unless told otherwise; nbgrader registers its pipeline without
    # enabling anything, so this one is on by default.
    enabled = Bool(True, help="Recompute every grade cell outside the kernel.").tag(config=True)

    def preprocess(self, nb, resources):
        folder = Path(resources.get(SNAPSHOT_KEY) or resources.get("metadata", {}).get("path") or ".")
        part_cells, answer_cells = [], []
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if not (cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")):
                continue
            points = float(meta.get("points", 0))
            parts = hidden_parts(cell.source)
            if parts:
                part_cells.append((cell, parts, points))
            else:
                answer_cells.append((cell, points))
        self._regrade_parts(part_cells, folder, resources.get(LINKS_KEY) or [])
        self._regrade_answers(answer_cells, folder)
        return nb, resources

    def _regrade_parts(self, cells, folder: Path, links: list[str] = ()) -> None:
        from autograder import grader

        if not cells:
            return
        wanted = sorted({p for _, parts, _ in cells for p in parts}, key=list(POINTS).index)
        try:
            report = grader.grade(folder, only=wanted)
            results = {p.part: p for p in report.parts}
        except Exception as err:  # noqa: BLE001 - grade 0 with a reason rather than keep the kernel's score
            self.log.error("autograder could not grade %s: %s", folder, err)
            results = {}
        # What the grader noted about the upload itself (a link left out, a file too large), on every part's cell.
        notes = [f"note: {', '.join(links[:5])} {'is a link' if len(links) == 1 else 'are links'}: links are never "
                 "followed, so nothing through them was graded; hand in the files themselves."] if links else []
        for cell, parts, points in cells:
            earned, possible, text = 0.0, 0.0, list(notes)
            for part in parts:
                result = results.get(part)
                possible += POINTS[part]
                if result is None:
                    text.append(f"{part}: could not be graded; ask your TA.")
                    continue
                earned += result.score
                text.append(f"{part}: {result.score:g}/{result.max_score:g}\n{result.feedback()}")
            score = round(points * earned / possible, 2) if possible else 0.0
            _set_score(cell, score, "\n".join(text))

    def _regrade_answers(self, cells, folder: Path) -> None:
        from autograder import answers

        for cell, points in cells:
            try:
                calls = answers.calls(cell.source)
            except answers.AnswerCheckError as err:
                self.log.error("grade cell %s: %s", _grade_id(cell), err)
                calls = []
            if not calls:
                if points:
                    self.log.warning("grade cell %s has no grade_part/grade_answer call: scored 0 (%s)",
                                     _grade_id(cell), NOT_SCORED_NOTE)
                _set_score(cell, 0.0, f"{_grade_id(cell)}: {NOT_SCORED_NOTE}.")
                continue
            recorded = _recorded(cell, answers.ANSWER_MIME)
            earned, text = 0.0, []
            for call in calls:
                values = next((r["values"] for r in recorded if r.get("check") == call.check
                               and isinstance(r.get("values"), list) and len(r["values"]) == call.values), None)
                if values is None and call.values:
                    text.append(f"{call.params.get('name', call.check)}: the cell stopped before its check ran"
                                f"{_error_of(cell)}; fix the answer above and run the whole notebook again.")
                    continue
                try:
                    share, feedback = answers.score(call, values or [], points / len(calls), folder)
                except (RecursionError, MemoryError, ValueError, TypeError) as err:  # values no check can read
                    share, feedback = 0.0, (f"{call.params.get('name', call.check)}: the value recorded could not be "
                                            f"read ({type(err).__name__}); assign a plain number, string or list")
                earned += share
                text.append(feedback)
            _set_score(cell, round(earned, 2), "\n".join(text))


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "?")


def _recorded(cell, mime: str) -> list[dict]:
    """The answer payloads the kernel put into the cell's outputs (the student's values: fine to read)."""
    out = []
    for output in cell.get("outputs", []):
        data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
        payload = data.get(mime)
        if isinstance(payload, str):
            import json

            try:
                payload = json.loads(payload)
            except (ValueError, RecursionError):  # unparseable, or nested beyond reason: not an answer
                continue
        if isinstance(payload, dict):
            out.append(payload)
    return out


def _error_of(cell) -> str:
    """': <the error the cell raised>' (the visible checks' messages say what is missing), or ''."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f" ({output.get('ename', 'Error')}: {str(output.get('evalue', ''))[:300]})"
    return ""


def _set_score(cell, score: float, text: str) -> None:
    """Replace the cell's outputs with the grader's feedback (stdout) and score (what nbgrader records)."""
    cell.outputs = [new_output("stream", name="stdout", text=text.rstrip("\n") + "\n"),
                    new_output("execute_result", data={"text/plain": repr(float(score))},
                               execution_count=cell.get("execution_count"))]
