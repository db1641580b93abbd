"""Which course a command acts on: the course of the folder it runs in, like git and nbgrader.

A course root is a folder holding `course/nbgrader_config.py` (a clone of this repository): its `course/`
(notebook sources, `source/`, `release/`), `solutions/`, `student_src/` and the library packages that a
release ships. `vitcourse release`, `demo`, `stubs`, `gradescope` act on

1. `--course DIR`, when given: a course root, or the `course/` folder itself (holding nbgrader_config.py);
2. else the nearest folder upward from the current folder that is one of those two;
3. else nothing: `CourseNotFound` says where it looked and to pass `--course`.

Never the folder the package happens to be installed from: with an editable install, a second clone run
with the first clone's environment must not write into the first clone.

`activate(root)` records the chosen root in `VITCOURSE_ROOT`, so that the library (`impl.solutions_dir()`,
`impl.stubs_dir()`, the release's library copy) and the nbgrader processes a command starts use the same
course. Library code called without an active course (the tests, a notebook) falls back to the package's
own repository, `PACKAGE_ROOT`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CONFIG = "nbgrader_config.py"
COURSE = "course"  # the nbgrader course folder inside a course root
ROOT_ENV = "VITCOURSE_ROOT"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class CourseNotFound(RuntimeError):
    """No course where a command was run; the message says where it looked and what to pass."""


@dataclass(frozen=True)
class CourseRoot:
    """A course root and the folders the commands use."""

    root: Path

    @property
    def course(self) -> Path:
        return self.root / COURSE

    @property
    def notebooks(self) -> Path:  # the authored percent-format notebook sources
        return self.course / "notebooks"

    @property
    def source(self) -> Path:  # nbgrader's source/<assignment>/<assignment>.ipynb
        return self.course / "source"

    @property
    def solutions(self) -> Path:
        return self.root / "solutions"

    @property
    def student_src(self) -> Path:
        return self.root / "student_src"


def _root_of(folder: Path) -> Optional[Path]:
    """The course root that `folder` is (holds course/nbgrader_config.py) or is the course folder of."""
    if (folder / COURSE / CONFIG).is_file():
        return folder
    if folder.name == COURSE and (folder / CONFIG).is_file():
        return folder.parent
    return None


def find(course: Optional[str | os.PathLike] = None, cwd: Optional[str | os.PathLike] = None) -> CourseRoot:
    """The course a command acts on: `course` if given, else the nearest one upward from `cwd` (default: here)."""
    if course is not None:
        folder = Path(course).expanduser().resolve()
        root = _root_of(folder)
        if root is None:
            raise CourseNotFound(f"--course {course}: {folder} holds neither {COURSE}/{CONFIG} nor {CONFIG} in a "
                                 f"folder named {COURSE}/; pass the folder of a vitcourse clone (or its {COURSE}/ folder)")
        return CourseRoot(root)
    start = Path(cwd or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        root = _root_of(folder)
        if root is not None:
            return CourseRoot(root)
    raise CourseNotFound(f"no course found: looked for {COURSE}/{CONFIG} in {start} and every folder above it. "
                         f"Run the command inside a vitcourse clone, or pass --course DIR (the clone's folder).")


def activate(found: CourseRoot) -> CourseRoot:
    """Make `found` the course the library and its subprocesses use (sets VITCOURSE_ROOT); return it."""
    os.environ[ROOT_ENV] = str(found.root)
    return found


def resolve(course: Optional[str | os.PathLike] = None) -> CourseRoot:
    """`find` then `activate`: what a command calls first."""
    return activate(find(course))


def current() -> CourseRoot:
    """The active course (VITCOURSE_ROOT), else the package's own repository (library use, tests)."""
    return CourseRoot(Path(os.environ[ROOT_ENV]).resolve() if os.environ.get(ROOT_ENV) else PACKAGE_ROOT)


def add_argument(parser) -> None:
    """The `--course DIR` option every course command takes."""
    parser.add_argument("--course", type=Path, default=None,
                        help="the course to act on: a vitcourse clone or its course/ folder (default: the nearest "
                             "one upward from the current folder)")
