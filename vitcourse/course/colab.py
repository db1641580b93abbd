"""Colab and Jupyter glue for the course notebooks: one configurable course URL, the setup cell, badges.

Every release notebook starts with the same setup cell (generated here, so it is written once). The cell
works unchanged in Google Colab, local Jupyter and JupyterHub:

* in Colab it mounts Google Drive and works in `MyDrive/<DRIVE_FOLDER>/<assignment>`, so the student's
  `transformer.py` / `ViT.py` and checkpoints survive a disconnect. The first run copies the assignment from
  the public student repository, whole files only and never over a file already there, and marks the copy
  complete last: a run cut short is finished by the next one, a finished copy is never fetched again.
  Elsewhere it works in the notebook's folder (which is also where nbgrader runs a submission);
* `setup` (below) installs what this assignment imports and the runtime lacks: on Colab with pip, pinned
  to every package already installed so that none of Colab's own changes; elsewhere it prints the command;
* it reloads the student's edited `.py` files before every cell (`vitcourse.course.reload`: Colab's IPython
  cannot load `%autoreload` on Python 3.12+);
* it reports the GPU (and how to get one).

The helpers below the constants (`todo_guard`, `report_gpu`) are imported by notebook cells.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from coursecore import settings
from coursecore.registry import NOT_IMPLEMENTED_MARK

# ---- the one place to configure where the course lives ---------------------------------------------------
# Public repository that holds the *student* release (never the solutions): the badges open its notebooks.
COURSE_URL = settings.COURSE_URL.get()
COURSE_BRANCH = settings.COURSE_BRANCH.get()
COURSE_ID = "vitcourse"  # nbgrader course id (nbgrader_config.py reads it from here)
RELEASE_SUBDIR = "release"  # folder of the student repository that holds one sub-folder per assignment
DRIVE_FOLDER = "vitcourse"  # the student's Drive folder: MyDrive/vitcourse/<assignment>/
COLAB_MOUNT = "/content/drive"  # where Colab mounts Google Drive
COPY_MARK = ".vitcourse-release"  # written last into the Drive folder: the first copy is complete
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_GITHUB = "https://colab.research.google.com/github/"
# Import name -> what pip installs, for what every notebook imports beyond the standard library. Colab has
# all of them preinstalled; the setup cell installs (Colab) or names (elsewhere) whichever one a runtime lacks.
REQUIREMENTS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
}
# What one assignment imports beyond REQUIREMENTS (the floors of pyproject.toml's `transfer` extra). Colab has
# timm and lacks grad-cam; a JupyterHub may lack both.
ASSIGNMENT_REQUIREMENTS = {
    "a6_transfer": {"timm": "timm>=0.9.16", "pytorch_grad_cam": "grad-cam>=1.5"},
    "a8_data": {"timm": "timm>=0.9.16"},  # deit.py builds on timm's Block; the plain ViT and ViT-S/16 are timm's
}
MIN_PYTHON = (3, 11)  # pyproject.toml's requires-python
FAILED_MARK = "✗"  # starts every failure line a student sees (printed to stderr: a red box in Jupyter and Colab)

DATA_ROOT_ENV = settings.DATA_ROOT.name  # a folder in the CIFAR python layout (read as is, never downloaded)
OFFLINE_DATA = "digits"  # embedded in scikit-learn: every notebook runs offline and under the grader


def pip_url() -> str:
    """What `pip install` takes to get the course library (data_utils, vitcourse) from the course URL."""
    return f"git+{COURSE_URL}.git@{COURSE_BRANCH}"


def colab_url(assignment: str, notebook: Optional[str] = None) -> str:
    """The Colab address of a release notebook in the public student repository."""
    repo = COURSE_URL.split("github.com/", 1)[-1].rstrip("/")
    name = notebook or f"{assignment}.ipynb"
    return f"{COLAB_GITHUB}{repo}/blob/{COURSE_BRANCH}/{RELEASE_SUBDIR}/{assignment}/{name}"


def badge_markdown(assignment: str, notebook: Optional[str] = None) -> str:
    """Markdown for an "Open in Colab" badge pointing at the release notebook."""
    return f"[![Open In Colab]({COLAB_BADGE_SVG})]({colab_url(assignment, notebook)})"


def setup_cell_source(assignment: str) -> str:
    """The first code cell of every notebook. Self-contained until the course library is in reach.

    Safe to run again in every state: after a reconnect or a new VM (Drive is mounted again, or already),
    after the Drive folder was deleted (fetched again into a fresh temporary folder), after a first copy
    that was cut short (finished: the files already there are kept, the missing ones copied)."""
    clone = f"{COURSE_URL}.git"
    return textwrap.dedent(f'''\
        # Setup: run this cell first, and again after every reconnect. It works unchanged in Colab and Jupyter.
        import os, sys
        from pathlib import Path

        ASSIGNMENT = {assignment!r}
        if "google.colab" in sys.modules:  # Colab: your files live in Google Drive, so a disconnect loses nothing
            from google.colab import drive
            drive.mount({COLAB_MOUNT!r})
            WORK_DIR = Path({COLAB_MOUNT!r}) / "MyDrive" / {DRIVE_FOLDER!r} / ASSIGNMENT
            if not (WORK_DIR / {COPY_MARK!r}).is_file():  # first run, or a first copy that was cut short
                import shutil, subprocess, tempfile
                clone = Path(tempfile.mkdtemp(prefix="vitcourse-"))
                if subprocess.run(["git", "clone", "-q", "--depth", "1", {clone!r}, str(clone)]).returncode:
                    raise RuntimeError("could not download the course (see git's message above): check that this "
                                       "runtime has internet, then run this cell again")
                release = clone / {RELEASE_SUBDIR!r} / ASSIGNMENT
                for src in sorted(p for p in release.rglob("*") if p.is_file()):
                    dest = WORK_DIR / src.relative_to(release)
                    if not dest.exists():  # never overwrite your work
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, f"{{dest}}.part")
                        os.replace(f"{{dest}}.part", dest)  # whole files only, even if the copy is interrupted
                (WORK_DIR / {COPY_MARK!r}).write_text("the course files are complete; delete this file to fetch missing ones\\n")
                shutil.rmtree(clone, ignore_errors=True)
            os.chdir(WORK_DIR)
        else:
            WORK_DIR = Path.cwd()  # Jupyter, JupyterHub and nbgrader: the notebook's folder
        if str(WORK_DIR) not in sys.path:  # your files (transformer.py, ViT.py, ...) and the course library
            sys.path.insert(0, str(WORK_DIR))
        import vitcourse.course.colab
        vitcourse.course.colab.setup(ASSIGNMENT, WORK_DIR)  # installs what is missing, reloads your edited files, finds the GPU
        ''')


def handin_markdown(assignment: str) -> str:
    """The text above the hand-in cell: what the zip holds and what to do with it."""
    from coursecore.registry import files_for, outputs_for

    files = [f"`{n}`" for n in (*files_for(assignment), *outputs_for(assignment))]
    holds = "this notebook" + (", " + ", ".join(files[:-1]) + " and " + files[-1] if len(files) > 1 else
                               f" and {files[0]}" if files else "")
    return (f"## Hand in\n\nWrite your student id below (as your course page gives it) and run the cell. It writes "
            f"`<your id>.zip` with {holds} — on Colab the notebook as it is open in your browser, wherever you saved "
            "it — and says where the zip is (on Colab it also downloads it). Upload that zip. After any change, run "
            "the cell again.")


def handin_cell_source(assignment: str) -> str:
    """The last code cell of every notebook: the student's id, then `hand_in` (vitcourse/course/handin.py)."""
    return textwrap.dedent("""\
        STUDENT_ID = ""  # your student id, e.g. "s1234567"
        from vitcourse.course.handin import hand_in
        hand_in(STUDENT_ID)""")


@dataclass
class Session:
    """What the setup cell established, for the cells after it (the hand-in cell reads it)."""

    assignment: str
    work_dir: Path
    in_colab: bool


SESSION: Optional[Session] = None


def in_colab() -> bool:
    return "google.colab" in sys.modules


def requirements(assignment: str) -> dict[str, str]:
    """Import name -> pip requirement, for everything `assignment`'s notebook and library import."""
    return {**REQUIREMENTS, **ASSIGNMENT_REQUIREMENTS.get(assignment, {})}


def missing_requirements(assignment: str) -> dict[str, str]:
    """The requirements of `assignment` this Python cannot import."""
    return {mod: pip for mod, pip in requirements(assignment).items() if importlib.util.find_spec(mod) is None}


def install_command(specs) -> list[str]:
    """The exact command that installs `specs` into the Python running this kernel."""
    return [sys.executable, "-m", "pip", "install", *specs]


_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]*$")


def installed_constraints() -> str:
    """`name==version` of every installed distribution: pip then adds packages without changing any of them."""
    from importlib import metadata

    pins = {}
    for dist in metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if name and version and _VERSION.match(version):
            pins.setdefault(name.lower(), f"{name}=={version}")
    return "\n".join(sorted(pins.values())) + "\n"


def install_missing(assignment: str, colab: Optional[bool] = None) -> dict[str, str]:
    """Install what `assignment` needs and this runtime lacks (Colab), or print the command (elsewhere).

    On Colab every package already installed is pinned to its version (a constraints file), so installing
    grad-cam never upgrades the torch or numpy that Colab pins: pip adds what is missing or fails and says why.
    Returns what is still missing afterwards."""
    missing = missing_requirements(assignment)
    if not missing:
        return {}
    specs = list(missing.values())
    if in_colab() if colab is None else colab:
        print(f"installing what this assignment needs and Colab lacks: {', '.join(specs)} (Colab's own packages "
              "stay as they are)")
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="colab-pins-", delete=False) as f:
            f.write(installed_constraints())
        proc = subprocess.run([*install_command(specs), "-q", "-c", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        importlib.invalidate_caches()
        missing = missing_requirements(assignment)
        if proc.returncode or missing:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
            print(f"{FAILED_MARK} could not install {', '.join(missing.values()) or ', '.join(specs)} without changing "
                  f"Colab's packages; pip said:\n{tail}", file=sys.stderr)
        return missing
    print(f"{FAILED_MARK} {assignment} needs {', '.join(specs)}, which this Python does not have. Install "
          f"{'it' if len(specs) == 1 else 'them'} (on a shared JupyterHub: ask your course staff, or add --user), "
          f"restart the kernel and run this cell again:\n    {shlex.join(install_command(specs))}", file=sys.stderr)
    return missing


def setup(assignment: str, work_dir, shell=None) -> None:
    """The setup cell's second half, once the course library is importable: packages, reloading, the GPU."""
    from vitcourse.course import reload

    global SESSION
    SESSION = Session(assignment, Path(work_dir), in_colab())
    if sys.version_info < MIN_PYTHON:
        print(f"{FAILED_MARK} this course needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; this kernel runs "
              f"{sys.version.split()[0]}: pick a newer kernel (Kernel -> Change kernel) or ask your course staff",
              file=sys.stderr)
    install_missing(assignment)
    reload.watch(work_dir, shell)
    report_gpu()
    if SESSION.in_colab:
        print(f"your code and checkpoints: {work_dir} (Google Drive). Keep your answers too: File -> Save a copy "
              "in Drive, and work in that copy. Hand in with the last cell of this notebook.")


def report_gpu() -> str:
    """Print (and return) which accelerator torch sees, with how to get a GPU when there is none."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        line = f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    else:
        line = ("no GPU: training will be slow. In Colab choose Runtime -> Change runtime type -> T4 GPU, "
                "then re-run the setup cell")
    print(line)
    return line


_TOLD: set = set()  # (dataset, reason) pairs whose offline message this kernel has printed


def load_course_data(name: str, classes=None, seed: int = 0, val_size=None, data_dir=None):
    """The notebooks' one way to get data: `name` ('cifar10', 'cifar100', 'digits', ...), else the offline data.

    CIFAR comes from `data_dir` (the notebook's DATA_DIR cell), else $VITCOURSE_DATA_ROOT, both read as they
    are (a folder in the CIFAR python layout, e.g. holding `cifar-10-batches-py/`), else it is downloaded on
    first use (Colab). Under the grader or in fast mode nothing is downloaded; when CIFAR is not available
    the embedded digits stand in, with `offline_message`, so that every cell still runs (training and plots
    then show digits).
    """
    from data_utils import DatasetUnavailableError, load_dataset
    from vitcourse.training.runtime import fast_mode

    kw = dict(classes=classes, seed=seed, val_size=val_size)
    root = data_dir or settings.DATA_ROOT.raw()
    download = not fast_mode()
    try:
        if root and name.startswith("cifar"):
            splits = load_dataset(name, root=root, verify=False, download=False, **kw)
        else:
            splits = load_dataset(name, download=download, **kw)
    except DatasetUnavailableError as err:
        if not root and not download:  # torchvision only says "not found or corrupted"
            err.reason = "it is not on this machine, and nothing is downloaded while grading or in fast mode"
        if (name, err.reason) not in _TOLD:  # once per kernel: a loop over seeds must not repeat it
            _TOLD.add((name, err.reason))
            print(offline_message(name, err))
        splits = load_dataset(OFFLINE_DATA, **kw)
    print(splits.summary())
    return splits


def offline_message(name: str, err) -> str:
    """What a student reads when `name` cannot be loaded: one sentence of what happened, then what to do.

    `err` is the loader's DatasetUnavailableError (its `reason`, `url`, `folder`)."""
    return "\n".join([
        f"{name} could not be loaded ({err.reason}), so the embedded {OFFLINE_DATA!r} data stand in and every "
        "cell still runs.",
        f"To use {name}:",
        "  - on Colab with internet, re-run the data cell: it downloads by itself (once);",
        f"  - with a copy you already have, set DATA_DIR = \"/path/to/folder\" in the data cell (or the environment "
        f"variable {DATA_ROOT_ENV}) to the folder holding {Path(err.folder).name}/, then re-run it;",
        f"  - offline, download {err.url} on another machine and extract it into that folder.",
    ])


def student_frame(err: BaseException) -> str:
    """' (ViT.py, line 42: `x = x.view(B, N)`)': the last line of a student's file the error passed through, or ''."""
    import coursecore
    from coursecore.registry import STUDENT_FILES

    core = Path(coursecore.__file__).resolve().parent  # coursecore/parts/<module>.py: the checks, not the student's
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if Path(f.filename).name in STUDENT_FILES and core not in Path(f.filename).resolve().parents]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" ({Path(f.filename).name}, line {f.lineno}:{code})"


@contextlib.contextmanager
def todo_guard(part: str, where: str) -> Iterator[None]:
    """Run a demonstration cell that needs the student's `part`; if it is a stub or broken, say so and go on.

    A stub (NotImplementedError) and an error raised inside the student's own file are turned into a
    message, so Run All reaches the end of the notebook and says what is left to do or to fix. Any other
    error (the library's, the data's) is raised as usual.
    """
    try:
        yield
    except NotImplementedError as err:
        # Blame the stub that raised ("cnn.py: implement ConvNet.forward"): the cell may need other parts too.
        raised = re.fullmatch(r"(\S+\.py): implement ([\w.]+)", str(err).strip())
        if raised and raised.group(2) != part:
            print(f"this cell needs {raised.group(2)}, which is {NOT_IMPLEMENTED_MARK}. Write it in {raised.group(1)}, "
                  "then re-run this cell.", file=sys.stdout)
        else:
            print(f"{part} is {NOT_IMPLEMENTED_MARK} ({err}). Write it in {where}, then re-run this cell.",
                  file=sys.stdout)
    except Exception as err:  # noqa: BLE001 - re-raised below unless it came from the student's code
        frame = student_frame(err)
        if not frame:
            raise
        first = (str(err).splitlines() or [""])[0]
        print(f"{FAILED_MARK} {part}: your code raised {type(err).__name__}: {first}{frame}. Fix it in {where} "
              "(its check cell above says more), then re-run this cell.", file=sys.stderr)
