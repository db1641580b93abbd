"""Colab and Jupyter glue for the course notebooks: one configurable course URL, the setup cell, badges.

Every release notebook starts with the same setup cell (generated here, so it is written once). The cell
works unchanged in Google Colab, local Jupyter and JupyterHub:

* in Colab it mounts Google Drive and works in `MyDrive/<DRIVE_FOLDER>/<assignment>`, so the student's
  `transformer.py` / `ViT.py` and checkpoints survive a disconnect; elsewhere it works in the notebook's
  folder (which is also where nbgrader runs a submission);
* it installs only the packages the runtime lacks (Colab already has torch, torchvision, sklearn, ...);
* it puts the student files on `sys.path`, turns on autoreload (edit `ViT.py`, re-run a cell: no restart);
* it reports the GPU (and how to get one).

The helpers below the constants (`todo_guard`, `report_gpu`) are imported by notebook cells.
"""
from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Iterator, Optional

# ---- the one place to configure where the course lives ---------------------------------------------------
# Public repository that holds the *student* release (never the solutions): the badges open its notebooks.
COURSE_URL = os.environ.get("VITCOURSE_COURSE_URL", "https://github.com/vitcourse/vit-course-student")
COURSE_BRANCH = os.environ.get("VITCOURSE_COURSE_BRANCH", "main")
COURSE_ID = "vitcourse"  # nbgrader course id (nbgrader_config.py reads it from here)
RELEASE_SUBDIR = "release"  # folder of the student repository that holds one sub-folder per assignment
DRIVE_FOLDER = "vitcourse"  # the student's Drive folder: MyDrive/vitcourse/<assignment>/
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_GITHUB = "https://colab.research.google.com/github/"
# Import name -> pip name of what the notebooks need beyond the standard library. Colab has all of them
# preinstalled today; the setup cell installs whichever one a runtime lacks.
REQUIREMENTS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
}
NOT_IMPLEMENTED_MARK = "not implemented yet"


def banner_title(name: str) -> str:
    """How a stub's banner names a TODO ("TODO (Attention.split_heads)"): what messages tell students to search for."""
    return f"TODO ({name})"


DATA_ROOT_ENV = "VITCOURSE_DATA_ROOT"  # a folder in the CIFAR python layout (read as is, never downloaded)
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
    """The first code cell of every notebook. Self-contained: it runs before anything is installed."""
    requirements = ", ".join(f"{k!r}: {v!r}" for k, v in REQUIREMENTS.items())
    clone = f"{COURSE_URL}.git"
    return textwrap.dedent(f'''\
        # Setup: run this cell first, and again after every reconnect. It works unchanged in Colab and Jupyter.
        import importlib.util, os, subprocess, sys
        from pathlib import Path

        ASSIGNMENT = {assignment!r}
        IN_COLAB = "google.colab" in sys.modules
        if IN_COLAB:
            # Your files live on Google Drive, so a disconnect loses nothing.
            from google.colab import drive
            drive.mount("/content/drive")
            WORK_DIR = Path("/content/drive/MyDrive") / {DRIVE_FOLDER!r} / ASSIGNMENT
            if not (WORK_DIR / "vitcourse").is_dir():  # the course library ships in every assignment's folder
                # First run: fetch the student release once; files already on Drive are never overwritten.
                subprocess.check_call(["git", "clone", "-q", "--depth", "1", {clone!r}, "/tmp/vitcourse_release"])
                import shutil
                shutil.copytree(Path("/tmp/vitcourse_release") / {RELEASE_SUBDIR!r} / ASSIGNMENT, WORK_DIR,
                                dirs_exist_ok=True, copy_function=lambda s, d: os.path.exists(d) or shutil.copy2(s, d))
                print(f"your files are in Drive: {{WORK_DIR}} (File -> Save a copy in Drive keeps this notebook too)")
            os.chdir(WORK_DIR)
        else:
            WORK_DIR = Path.cwd()  # local Jupyter, JupyterHub and nbgrader: the notebook's folder
        # Your files (transformer.py, ViT.py, finetune.py, ...) and the course library sit next to this notebook.
        if str(WORK_DIR) not in sys.path:
            sys.path.insert(0, str(WORK_DIR))
        missing = [pip for mod, pip in {{{requirements}}}.items() if importlib.util.find_spec(mod) is None]
        if missing and IN_COLAB:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *missing])
        elif missing:
            print("missing packages:", " ".join(missing), "-> run: pip install", " ".join(missing))
        # Edit your .py files and re-run a cell: autoreload picks the change up, no restart needed.
        %load_ext autoreload
        %autoreload 2
        from vitcourse.course.colab import report_gpu
        _gpu = report_gpu()  # prints the line once (a bare call would also echo its return value)
        ''')


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
    root = data_dir or os.environ.get(DATA_ROOT_ENV)
    download = not fast_mode()
    try:
        if root and name.startswith("cifar"):
            splits = load_dataset(name, root=root, verify=False, download=False, **kw)
        else:
            splits = load_dataset(name, download=download, **kw)
    except DatasetUnavailableError as err:
        if not root and not download:  # torchvision only says "not found or corrupted"
            err.reason = "it is not on this machine, and nothing is downloaded while grading or in fast mode"
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


@contextlib.contextmanager
def todo_guard(part: str, where: str) -> Iterator[None]:
    """Run a demonstration cell that needs the student's `part`; if it is still a stub, say so and go on.

    The cell's own checks raise as usual; only NotImplementedError (the stub) is turned into a message, so
    a notebook with untouched stubs runs to the end and says what is left to do.
    """
    try:
        yield
    except NotImplementedError as err:
        print(f"{part} is {NOT_IMPLEMENTED_MARK} ({err}). Write it in {where}, then re-run this cell.",
              file=sys.stdout)
