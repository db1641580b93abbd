"""Every `VITCOURSE_*` environment variable of the course, typed, in one table.

Code reads a setting through its object (`settings.DATA_ROOT.get()`), never `os.environ` with a string of its
own, so a variable has one name, one type, one default and one description: the table in docs/settings.md is
generated from `SETTINGS` (`python -m coursecore.settings`) and tests/test_settings.py keeps the two, and every
`VITCOURSE_` name in the code, in step.

It imports only the standard library: the sandboxed kernel's launcher and the Gradescope scripts read it too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

PREFIX = "VITCOURSE_"
TRUE = ("1", "true", "yes", "on")

# Who sets a variable, in the table's words.
ANYONE, STUDENT, TA, INSTRUCTOR, COURSE, TESTS = ("anyone", "student", "TA", "instructor",
                                                   "the course's own commands", "the test suite")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name without the prefix, its type, default and meaning."""

    key: str  # DATA_ROOT -> VITCOURSE_DATA_ROOT
    kind: str  # 'path', 'bool', 'int', 'str'
    default: Any
    who: str
    doc: str
    shell: bool = False  # read by a shell script (Gradescope's setup.sh / run_autograder, the Makefile), not Python

    @property
    def name(self) -> str:
        return PREFIX + self.key

    def raw(self) -> Optional[str]:
        value = os.environ.get(self.name)
        return value if value not in (None, "") else None

    def get(self):
        """The typed value now (the environment is read at each call: commands and tests change it)."""
        value = self.raw()
        if value is None:
            return self.default
        if self.kind == "bool":
            return value.strip().lower() in TRUE
        if self.kind == "int":
            try:
                return int(float(value))  # 6e9 too
            except ValueError:
                raise ValueError(f"{self.name}={value!r} is not a whole number: {self.doc}") from None
        if self.kind == "path":
            return Path(value).expanduser()
        return value

    def set(self, value) -> None:
        """Set it for this process and every process it starts (None removes it)."""
        if value is None or value is False:
            os.environ.pop(self.name, None)
        else:
            os.environ[self.name] = "1" if value is True else str(value)

    def is_set(self) -> bool:
        return self.raw() is not None


def _setting(*args, **kwargs) -> Setting:
    s = Setting(*args, **kwargs)
    _ALL.append(s)
    return s


_ALL: list[Setting] = []

# ---- data and training --------------------------------------------------------------------------------------
DATA_ROOT = _setting("DATA_ROOT", "path", None, ANYONE,
                     "a folder holding CIFAR in the python layout (cifar-10-batches-py/, cifar-100-python/), read as "
                     "it is and never downloaded: the notebooks' data, and the held-out test set the grader scores "
                     "checkpoints on (a3, a4)")
FAST = _setting("FAST", "bool", False, ANYONE,
                "1: every training cell runs a few steps on tiny data (CI, a quick look); nbgrader's "
                "NBGRADER_EXECUTION does the same while it grades")
OFFLINE = _setting("OFFLINE", "bool", False, ANYONE,
                   "1: no network (like HF_HUB_OFFLINE): pretrained weights and datasets are not fetched, the "
                   "notebooks use their offline fallbacks at once")
COURSE_URL = _setting("COURSE_URL", "str", "https://github.com/vitcourse/vit-course-student", INSTRUCTOR,
                      "the git repository the notebooks' setup cell clones the student files from (Colab)")
COURSE_BRANCH = _setting("COURSE_BRANCH", "str", "main", INSTRUCTOR, "the branch of COURSE_URL the setup cell clones")

# ---- which course --------------------------------------------------------------------------------------------
ROOT = _setting("ROOT", "path", None, COURSE,
                "the course root a command acts on (set by every command from --course or the folder it runs in; "
                "the processes it starts inherit it)")
SOLUTIONS = _setting("SOLUTIONS", "path", None, TA,
                     "the reference to grade against, when it is not the course's solutions/ (a grading machine, "
                     "the Gradescope bundle)")

# ---- grading ---------------------------------------------------------------------------------------------------
UNSANDBOXED = _setting("UNSANDBOXED", "bool", False, TA,
                       "1: grade notebooks with ordinary kernels where bubblewrap cannot run (knowingly: a student's "
                       "code then runs as the TA)")
SANDBOX = _setting("SANDBOX", "str", None, TA,
                   "'unshare': grade student modules with the unshare fallback even where bubblewrap works (comparison)")
LIMIT_MEMORY = _setting("LIMIT_MEMORY", "int", None, TA,
                        "bytes of memory a student's process may allocate (RLIMIT_DATA; default 6 GiB)")
LIMIT_PROCESSES = _setting("LIMIT_PROCESSES", "int", None, TA,
                           "processes and threads a student's code may run at once (default 64)")
LIMIT_FILE = _setting("LIMIT_FILE", "int", None, TA, "bytes of the largest file a student's code may write "
                                                     "(default 512 MiB)")
LIMIT_CPU = _setting("LIMIT_CPU", "int", None, TA, "CPU seconds of a student's process (default 300)")
ALLOW_OPEN_FILES = _setting("ALLOW_OPEN_FILES", "bool", False, TA,
                            "1: run course commands even where other users of this machine could read the course "
                            "(a machine of one's own)")
REGRADE_OUTSIDE_KERNEL = _setting("REGRADE_OUTSIDE_KERNEL", "bool", False, COURSE,
                                  "set in the kernels `nbgrader autograde` starts (autograder/kernel_sandbox.py): a "
                                  "grade_part cell shows its verdict, the score is computed outside the student's kernel")
KERNEL_CHECKED = _setting("KERNEL_CHECKED", "bool", False, COURSE,
                          "set by `vitcourse grade` for the nbgrader processes it starts: the sandboxed kernel was "
                          "checked once, they need not check again")

# ---- Gradescope's scripts and the Makefile ---------------------------------------------------------------------
VENV = _setting("VENV", "path", None, INSTRUCTOR,
                "where Gradescope's setup.sh builds the grader's venv (run_autograder reads the same)", shell=True)
TORCH_INDEX = _setting("TORCH_INDEX", "str", None, INSTRUCTOR,
                       "the package index Gradescope's setup.sh installs torch from (default the CPU-only builds)",
                       shell=True)
PYTHON = _setting("PYTHON", "path", None, TESTS, "the Python Gradescope's run_autograder grades with (default the "
                                                  "venv setup.sh made)", shell=True)
SHARED_ENV = _setting("SHARED_ENV", "path", None, TESTS,
                      "the environment `make test-shared-server` installs for its real Unix users", shell=True)
STUDENT_PYTHON = _setting("STUDENT_PYTHON", "path", None, TESTS,
                          "a student's Python (a JupyterHub environment) the release notebooks are run with "
                          "(`make test-hub`)", shell=True)
COLAB_PYTHON = _setting("COLAB_PYTHON", "path", None, TESTS,
                        "the Colab replica's Python (`make test-colab`)", shell=True)

SETTINGS: tuple[Setting, ...] = tuple(_ALL)
BY_NAME = {s.name: s for s in SETTINGS}


def table() -> str:
    """The markdown table of docs/settings.md."""
    rows = ["| variable | type | default | set by | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "unset" if s.default in (None, False) else f"`{s.default}`"
        where = " (read by a shell script)" if s.shell else ""
        rows.append(f"| `{s.name}` | {s.kind} | {default} | {s.who} | {s.doc}{where} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m coursecore.settings: the table for docs/settings.md
    print(table())
