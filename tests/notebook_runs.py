"""Run the real release notebooks as a student does: the release folder, a kernel that holds only what a
student's Python has, every cell in order, the `raises-exception` tag ignored (Colab, VS Code, Positron).

Two kinds of kernel:

* `student_kernel()`: this environment's Python, started without the site hooks, so the editable install of
  the course (`vitcourse`, `autograder`, `data_utils`) is not importable: only the copies in the release
  folder are, as for a student on a JupyterHub;
* `colab_kernel(...)`: the Colab replica (`make test-colab` builds `.venv-colab`: Python 3.13 and Colab's
  versions, `tests/colab/`), started like Colab's (`colab_kernel_launcher`, `google.colab` loaded), in the
  working folder `/content`, with a fresh `/content` and `/tmp` per "VM" (bubblewrap mounts them) and a
  Drive folder that outlives VMs.

`release_with_public_repo` builds the release with the real CLI from a copy of this course, with the public
student repository (`COURSE_URL`) stood in by a local git repository; the setup cell clones from it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nbformat

from coursecore.course_root import COURSE_FOLDERS, PACKAGES
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "tests" / "colab" / "stub"
COLAB_PYTHON_ENV = "VITCOURSE_COLAB_PYTHON"
COURSE_PARTS = (*COURSE_FOLDERS, *PACKAGES)
GENERATED = ("release", "submitted", "autograded", "feedback", "downloaded", "backups", ".grading", "gradebook.db",
             "__pycache__", "*.pyc", ".ipynb_checkpoints")
KERNEL_NAME = "vitcourse-student"


def colab_python() -> Optional[str]:
    """The replica's interpreter, when `make test-colab` (which builds it) names it; else None."""
    path = os.environ.get(COLAB_PYTHON_ENV)
    path = path and os.path.abspath(path)  # not resolved: the venv's link is what makes it the venv
    return path if path and os.access(path, os.X_OK) else None


# ---- the release and the public repository ----------------------------------------------------------------

@dataclass
class Release:
    root: Path  # the instructor's course (a copy of this repository's course)
    url: str  # COURSE_URL the notebooks were built with (file://..., a local git repository)
    repo: Path  # the bare repository behind the URL

    def folder(self, assignment: str) -> Path:
        return self.root / "course" / "release" / assignment


def copy_course(dest: Path) -> Path:
    """A copy of this course root (sources, reference, stubs, library) without anything generated."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COURSE_PARTS:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns(*GENERATED))
    return dest


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=vitcourse", "-c", "user.email=course@example.org",
                    "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True, capture_output=True)


def release_with_public_repo(tmp: Path, assignments: tuple[str, ...] = ()) -> Release:
    """`vitcourse release` of a copy of the course, published to a local "public student repository"."""
    bare = tmp / "github" / "vit-course-student.git"
    url = f"file://{bare.with_suffix('')}"
    root = copy_course(tmp / "instructor")
    env = {**os.environ, "VITCOURSE_COURSE_URL": url}
    done = subprocess.run([sys.executable, "-m", "coursetools", "release", "--course", str(root), *assignments],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    work = tmp / "github" / "work"
    shutil.copytree(root / "course" / "release", work / "release")
    git("init", "-q", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "release", cwd=work)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp)
    return Release(root, url, bare)


# ---- kernels ---------------------------------------------------------------------------------------------

@dataclass
class Kernel:
    """How to start a kernel: its command (with `{connection_file}`) and environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def student_kernel(python: str = sys.executable, env: Optional[dict] = None) -> Kernel:
    """`python`'s packages without its site hooks: the editable install's finder is a .pth hook, so the course
    is not importable, exactly as in a student's environment (only the release folder's copy is)."""
    python = os.path.abspath(python)  # the kernel starts in the notebook's folder
    ask = "import sysconfig, json; print(json.dumps(sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})))"
    paths = json.loads(subprocess.run([python, "-c", ask], capture_output=True, text=True, check=True).stdout)
    launch = (f"import sys; sys.path += {paths!r}; "
              "from ipykernel import kernelapp; kernelapp.launch_new_instance()")
    return Kernel([python, "-I", "-S", "-c", launch, "-f", "{connection_file}"], dict(env or {}))


@dataclass
class ColabVM:
    """One Colab VM: its own /content and /tmp; Drive and "the internet" (`keep`) outlive it."""

    base: Path  # host folder holding this VM's /content and /tmp
    drive: Path  # the student's Google Drive (MyDrive), shared by every VM of a test
    keep: tuple[Path, ...]  # host folders visible at the same path inside (the public repository, the stand-in's files)

    @property
    def content(self) -> Path:
        return self.base / "content"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    def kernel(self, python: str, notebook: Path, env: Optional[dict] = None) -> Kernel:
        from autograder import bwrap

        for folder in (self.content, self.tmp, self.drive):
            folder.mkdir(parents=True, exist_ok=True)
        # No PID namespace: ipykernel stops when its parent looks like PID 1.
        args = [bwrap.binary(), "--unshare-user", "--die-with-parent"]
        for top in sorted(Path("/").iterdir()):
            if top.name in ("tmp", "dev", "content"):
                continue
            if top.is_symlink():
                args += ["--symlink", os.readlink(top), str(top)]
            else:
                args += ["--bind", str(top), str(top)]
        args += ["--dev", "/dev", "--bind", str(self.content), "/content",
                 "--bind", str(self.tmp), "/tmp"]
        # The stand-in modules too: a checkout under /tmp (a CI runner's, a scratch clone) would otherwise vanish.
        for path in sorted({*map(str, self.keep), str(STUB), str(Path(python).parents[1]),
                            str(Path(python).resolve().parents[1])}):
            if path.startswith("/tmp/"):  # a host folder the fresh /tmp would hide
                args += ["--bind", path, path]
        args += ["--chdir", "/content", "--", python, "-m", "colab_kernel_launcher", "-f", "{connection_file}"]
        return Kernel(args, {"PYTHONPATH": str(STUB), "COLAB_REPLICA_DRIVE": str(self.drive),
                             "COLAB_REPLICA_NOTEBOOK": str(notebook), "HOME": os.environ.get("HOME", "/root"),
                             "COLAB_REPLICA_DOWNLOADS": str(self.keep[0] / "downloads"), **(env or {})})


# ---- running a notebook ----------------------------------------------------------------------------------

def strip_raises_tags(nb) -> None:
    """Colab, VS Code and Positron ignore `raises-exception`: so does the run."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags")
        if tags and "raises-exception" in tags:
            cell.metadata["tags"] = [t for t in tags if t != "raises-exception"]


def client(nb, cwd: Path, kernel: Kernel, spec_dir: Path, timeout: int = 900) -> NotebookClient:
    """An nbclient for `nb` on `kernel`, run in `cwd` (errors recorded in the outputs, not raised)."""
    folder = spec_dir / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({"argv": kernel.argv, "env": kernel.env, "language": "python",
                                                    "display_name": "student"}))
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir / "kernels")], ensure_native_kernel=False)
    # The connection file next to the spec, never in /tmp: a Colab VM's /tmp is its own.
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm,
                       connection_file=str(spec_dir / f"kernel-{uuid.uuid4().hex}.json"))
    strip_raises_tags(nb)
    return NotebookClient(nb, km=km, timeout=timeout, allow_errors=True, kernel_name=KERNEL_NAME,
                          resources={"metadata": {"path": str(cwd)}})


def run_all(nb, cwd: Path, kernel: Kernel, spec_dir: Path, timeout: int = 900):
    """Run All: every code cell in order; returns the executed notebook."""
    client(nb, cwd, kernel, spec_dir, timeout).execute()
    return nb


def errors(nb) -> list[str]:
    """'cell N: Ename: evalue' for every cell that raised (what would stop Run All)."""
    out = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"cell {i}: {o.get('ename')}: {str(o.get('evalue'))[:500]}\n"
                           + "\n".join(o.get("traceback", [])[-3:])[:2000])
    return out


def text(cell) -> str:
    """Everything a cell printed (stdout, stderr, text results)."""
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif o.get("output_type") in ("execute_result", "display_data"):
            parts.append(o.get("data", {}).get("text/plain", ""))
        elif o.get("output_type") == "error":
            parts.append(f"{o.get('ename')}: {o.get('evalue')}")
    return "".join(parts)


def check_cells(nb) -> list:
    """The cells a student reads a check's verdict in: nbgrader's test cells."""
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


def finished(release_nb_path: Path, source_nb_path: Path, student_id: str = "") :
    """The release notebook with the source's solutions filled in (a student who did everything)."""
    from coursetools.term import fill_solutions

    nb = nbformat.read(release_nb_path, as_version=4)
    fill_solutions(nb, nbformat.read(source_nb_path, as_version=4))
    if student_id:
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith('STUDENT_ID = ""'):
                cell.source = cell.source.replace('STUDENT_ID = ""', f'STUDENT_ID = "{student_id}"', 1)
    return nb
