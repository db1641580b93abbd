"""Which course a command acts on: the course of the folder it runs in, like git and nbgrader.

A course root is a folder holding `course/nbgrader_config.py` (a clone of this repository): its `course/`
(notebook sources, `source/`, `release/`), `solutions/`, `student_src/` and the library packages that a
release ships. `vitcourse release`, `demo`, `stubs`, `gradescope` act on

1. `--course DIR`, when given: a course root, or the `course/` folder itself (holding nbgrader_config.py), or
   a bare nbgrader course folder of any name (a TA's grading folder: its library and reference are then
   those of the installed package);
2. else the nearest folder upward from the current folder that is one of those;
3. else nothing: `CourseNotFound` says where it looked and to pass `--course`.

Every command resolves its course this way (`resolve`). When the course found holds a library of its own that
is not the one imported (a second clone run with the first clone's console script), `activate` warns: the
commands would grade and release with the other clone's code.

Never the folder the package happens to be installed from: with an editable install, a second clone run
with the first clone's environment must not write into the first clone.

`activate(root)` records the chosen root in `VITCOURSE_ROOT`, so that the library (`impl.solutions_dir()`,
`impl.stubs_dir()`, the release's library copy) and the nbgrader processes a command starts use the same
course. Library code called without an active course (the tests, a notebook) falls back to the package's
own repository, `PACKAGE_ROOT`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from coursecore import settings

# The packages of a course root, in layer order (coursecore/__init__.py), and those a student's release holds.
PACKAGES = ("coursecore", "data_utils", "vitcourse", "autograder", "coursetools")
STUDENT_PACKAGES = ("coursecore", "data_utils", "vitcourse")
# What a course root holds beside its packages: the nbgrader course, the reference and the generated stubs.
COURSE_FOLDERS = ("course", "solutions", "student_src")

CONFIG = "nbgrader_config.py"
COURSE = "course"  # the nbgrader course folder inside a course root
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class CourseNotFound(RuntimeError):
    """No course where a command was run; the message says where it looked and what to pass."""


@dataclass(frozen=True)
class CourseRoot:
    """A course root and the folders the commands use."""

    root: Path
    course_dir: Optional[Path] = None  # a bare nbgrader course folder outside a clone (else root/course)

    @property
    def course(self) -> Path:
        return self.course_dir or self.root / COURSE

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


def _is_clone(root: Path) -> bool:
    """A course root holds more than the nbgrader course: a reference, stubs or its own library."""
    return any((root / name).is_dir() for name in (*COURSE_FOLDERS[1:], *PACKAGES))


def _root_of(folder: Path) -> Optional[Path]:
    """The course root that `folder` is (holds course/nbgrader_config.py) or is the course folder of."""
    if (folder / COURSE / CONFIG).is_file() and _is_clone(folder):
        return folder
    if folder.name == COURSE and (folder / CONFIG).is_file() and _is_clone(folder.parent):
        return folder.parent
    return None


def _course_at(folder: Path) -> Optional[CourseRoot]:
    root = _root_of(folder)
    if root is not None:
        return CourseRoot(root)
    if (folder / CONFIG).is_file():  # a bare nbgrader course: the installed package's library and reference
        return CourseRoot(PACKAGE_ROOT, course_dir=folder)
    return None


def find(course: Optional[str | os.PathLike] = None, cwd: Optional[str | os.PathLike] = None) -> CourseRoot:
    """The course a command acts on: `course` if given, else the nearest one upward from `cwd` (default: here)."""
    if course is not None:
        folder = Path(course).expanduser().resolve()
        found = _course_at(folder)
        if found is None:
            raise CourseNotFound(f"--course {course}: {folder} holds neither {COURSE}/{CONFIG} nor {CONFIG}; pass "
                                 f"the folder of a vitcourse clone, its {COURSE}/ folder, or an nbgrader course folder")
        return found
    start = Path(cwd or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        found = _course_at(folder)
        if found is not None:
            return found
    raise CourseNotFound(f"no course found: looked for {COURSE}/{CONFIG} in {start} and every folder above it. "
                         f"Run the command inside a vitcourse clone, or pass --course DIR (the clone's folder).")


def activate(found: CourseRoot) -> CourseRoot:
    """Make `found` the course the library and its subprocesses use (sets VITCOURSE_ROOT); return it.

    Warns (stderr) when that course holds a library of its own and the one imported here is another clone's."""
    settings.ROOT.set(found.root)
    # Another clone's library (an editable install of that clone), not an installed copy of the package.
    other_clone = _root_of(PACKAGE_ROOT) is not None
    if found.root.resolve() != PACKAGE_ROOT and other_clone and any((found.root / p / "__init__.py").is_file()
                                                                    for p in PACKAGES):
        print(f"[vitcourse] warning: the course {found.root} has its own library, but this command runs the one of "
              f"{PACKAGE_ROOT}; its parts, grader and checks are used. To use the course's own, install it in this "
              f"environment (pip install -e {found.root}) or run its environment's `vitcourse`.", file=sys.stderr)
    return found


def resolve(course: Optional[str | os.PathLike] = None) -> CourseRoot:
    """`find` then `activate`: what a command calls first."""
    return activate(find(course))


def current() -> CourseRoot:
    """The active course (VITCOURSE_ROOT), else the package's own repository (library use, tests)."""
    root = settings.ROOT.get()
    return CourseRoot(root.resolve() if root else PACKAGE_ROOT)


def add_argument(parser) -> None:
    """The `--course DIR` option every course command takes."""
    parser.add_argument("--course", type=Path, default=None,
                        help="the course to act on: a vitcourse clone or its course/ folder (default: the nearest "
                             "one upward from the current folder)")
