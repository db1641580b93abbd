"""The hand-in cell: `<student id>.zip` with the notebook the student worked in, their code, what is graded.

On Colab the notebook a student edits is not the file in their Drive folder: it is the tab in front of them
(opened from GitHub, or "Copy of a2_transformer.ipynb" in `MyDrive/Colab Notebooks/` after *Save a copy in
Drive*). So the zip takes the **live** notebook from Colab's frontend (what *File -> Download .ipynb*
would give) and stores it under the name nbgrader expects, `<assignment>.ipynb`. In Jupyter it takes the
notebook file the kernel belongs to (JupyterLab and VS Code tell the kernel which), else the assignment's.

The zip holds `<assignment>/`: the notebook, the assignment's student modules (`coursecore/registry.py`)
and the outputs its grader reads (`registry.outputs_for`: a3's checkpoint, ...) — never `runs/`, caches or
the course library. It is written next to the student's files (on Colab: in Drive) under a temporary name
and renamed when complete; on Colab the browser is also asked to download it.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from coursecore import files
from coursecore.registry import files_for, outputs_for
from vitcourse.course import colab

# What nbgrader's zip_collect accepts as a student id (course/nbgrader_config.py, FileNameCollectorPlugin).
STUDENT_ID = re.compile(r"^[A-Za-z0-9-]+$")
NBGRADER_ENV = "NBGRADER_EXECUTION"


class HandInError(ValueError):
    """A hand-in that cannot be written; the message says what to do."""


@dataclass
class HandIn:
    """A written hand-in zip and what it holds."""

    path: Path
    files: dict[str, int] = field(default_factory=dict)  # member name -> bytes
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        total = sum(self.files.values())
        lines = [f"wrote {self.path} ({len(self.files)} files, {_size(total)}):"]
        lines += [f"    {name}  {_size(size)}" for name, size in self.files.items()]
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def make_handin(student_id: str, assignment: str, work_dir, notebook: dict, out_dir=None) -> HandIn:
    """Write `<out_dir>/<student_id>.zip` (default: the work folder) holding `<assignment>/...`; return it.

    `notebook` is the notebook as JSON (a dict). Raises HandInError for an id nbgrader would not accept
    or a notebook that is not one."""
    student_id = (student_id or "").strip()
    if not student_id:
        raise HandInError("write your student id in STUDENT_ID (as your course page gives it), then run this cell again")
    if not STUDENT_ID.match(student_id):
        raise HandInError(f"STUDENT_ID {student_id!r} has characters the graders cannot take: use letters, digits "
                          "and '-' only, as your course page gives your id")
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise HandInError("the notebook could not be read; save it (File -> Save), then run this cell again")
    work_dir = Path(work_dir)
    out = Path(out_dir or work_dir) / f"{student_id}.zip"
    result = HandIn(out)
    if not any("nbgrader" in c.get("metadata", {}) for c in notebook["cells"]):
        result.warnings.append("this notebook has lost the marks that tell the grader which cell is which (a new "
                               "notebook, or one pasted into): hand in the assignment's notebook with your answers")
    members: dict[str, bytes] = {f"{assignment}.ipynb": json.dumps(notebook, indent=1, ensure_ascii=False).encode()}
    for name in files_for(assignment):
        path = work_dir / name
        if not path.is_file():
            result.warnings.append(f"{name} is missing from {work_dir}: the grader scores its parts 0")
            continue
        data = path.read_bytes()
        try:
            compile(data, name, "exec")
        except SyntaxError as err:
            result.warnings.append(f"{name} does not compile (line {err.lineno}: {err.msg}): the grader cannot "
                                   "import it, fix it before you upload")
        except ValueError:
            pass
        members[name] = data
    for name in outputs_for(assignment):
        path = work_dir / name
        if path.is_file():
            members[name] = path.read_bytes()
        else:
            result.warnings.append(f"{name} is missing: run the cell that writes it (the grader reads it)")
    # Member times in UTC (a zip has no time zone): where the LMS's download says nothing else, the graders
    # read the hand-in time from them (coursetools/lateness.py), and a laptop's local time would be hours off.
    handed_in = time.gmtime()[:6]
    with files.replacing(out) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(f"{assignment}/{name}", date_time=handed_in)
            info.external_attr = 0o600 << 16  # what writestr gives a member named by a string
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            result.files[f"{assignment}/{name}"] = len(data)
    return result


def live_notebook(assignment: str, work_dir, shell=None) -> tuple[dict, str]:
    """(the notebook the student works in, as JSON; where it came from)."""
    if colab.in_colab():
        from google.colab import _message  # Colab's frontend hands the open notebook to its kernel

        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=120)
        notebook = (reply or {}).get("ipynb")
        if not isinstance(notebook, dict):
            raise HandInError("Colab did not hand over this notebook; wait a few seconds and run this cell again")
        return notebook, "this Colab notebook (as open in your browser)"
    names = {}
    if shell is not None:
        # JupyterLab and Notebook 7 set __session__, VS Code __vsc_ipynb_file__: the notebook this kernel runs.
        names = {k: shell.user_ns.get(k) for k in ("__vsc_ipynb_file__", "__session__")}
    for value in names.values():
        if isinstance(value, str) and value.endswith(".ipynb") and Path(value).is_file():
            path = Path(value)
            break
    else:
        path = Path(work_dir) / f"{assignment}.ipynb"
    if not path.is_file():
        raise HandInError(f"{path} is not there: save your notebook as {assignment}.ipynb in {work_dir}")
    return json.loads(path.read_text(encoding="utf-8")), f"{path} (as last saved: save first, Ctrl+S)"


def hand_in(student_id: str, shell=None) -> None:
    """The hand-in cell: zip this assignment for upload, say where the zip is and what it holds; never raises."""
    if os.environ.get(NBGRADER_ENV):
        print("being graded: nothing to hand in")
        return
    session = colab.SESSION
    if session is None:
        print(f"{colab.FAILED_MARK} run the setup cell (the first code cell) first, then this cell", file=sys.stderr)
        return
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
    if not (student_id or "").strip():
        print("write your student id in STUDENT_ID above (as your course page gives it), then run this cell again")
        return
    try:
        notebook, origin = live_notebook(session.assignment, session.work_dir, shell)
        result = make_handin(student_id, session.assignment, session.work_dir, notebook)
    except (HandInError, OSError) as err:
        print(f"{colab.FAILED_MARK} {err}", file=sys.stderr)
        return
    print(f"notebook: {origin}")
    print(result.describe())
    checks = sys.modules.get("vitcourse.course.nbchecks")
    if checks is not None and checks.summary():
        print(checks.summary())
    for warning in result.warnings:
        print(f"{colab.FAILED_MARK} {warning}", file=sys.stderr)
    print(f"Upload {result.path.name} where your course page says; run this cell again after any change.")
    if session.in_colab:
        try:
            from google.colab import files

            files.download(str(result.path))  # also keeps a copy in your browser's downloads
        except Exception as err:  # noqa: BLE001 - the zip is in Drive anyway
            print(f"(the browser download did not start: {err}; the zip is in your Drive folder)")
