"""Generate the student stubs (`student_src/*.py`) from the reference (`solutions/*.py`).

In a solution file every student-owed piece of code looks like this::

    ### TODO Attention.split_heads: reshape (B, N, D) into (B, h, N, d).
    ###   1. first hint
    ###   2. second hint
    ### BEGIN SOLUTION
    ...reference code...
    ### END SOLUTION

The generator keeps everything else byte for byte, turns the TODO lines into a banner for the student
(with "our solution is N lines"), and replaces the solution region with
`raise NotImplementedError("<file>: implement <name>")`. One source of truth: the stubs are never edited
by hand, and a test fails when `student_src/` differs from a fresh generation.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from coursecore.registry import STUDENT_FILES, banner_title

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


TODO_RE = re.compile(r"^(?P<indent>\s*)### TODO (?P<name>[\w.]+): (?P<what>.+)$")
HINT_RE = re.compile(r"^\s*###(?P<hint>\s.*)$")
RULE = "-" * 76
STUB_FILES = STUDENT_FILES  # one registry: coursecore/registry.py


class StubError(ValueError):
    """A solution file whose markers cannot be turned into a stub."""


@dataclass
class Todo:
    """One student-owed region of a solution file."""

    file: str
    name: str
    line: int  # 1-based line of the TODO header in the solution file
    solution_lines: int  # code lines in the reference solution

    @property
    def message(self) -> str:
        return f"{self.file}: implement {self.name}"


def _code_lines(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def make_stub(source: str, filename: str) -> tuple[str, list[Todo]]:
    """Return the stub text for one solution file and the TODOs it holds."""
    lines = source.splitlines(keepends=True)
    out = [f"# Your file: write your code where a TODO banner asks for it (generated from solutions/{filename}).\n"]
    todos: list[Todo] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped in (BEGIN, END):
            raise StubError(f"{filename}:{i + 1}: '{stripped}' without a '### TODO <name>: <what>' header above it")
        header = TODO_RE.match(line.rstrip("\n"))
        if not header:
            out.append(line)
            i += 1
            continue
        indent, name = header["indent"], header["name"]
        if any(t.name == name for t in todos):
            raise StubError(f"{filename}:{i + 1}: TODO name {name!r} is used twice")
        start = i
        hints = []
        i += 1
        while i < len(lines) and lines[i].strip() != BEGIN:
            hint = HINT_RE.match(lines[i].rstrip("\n"))
            if not hint:
                raise StubError(f"{filename}:{i + 1}: expected a '###' hint line or '{BEGIN}' after TODO {name}")
            hints.append(hint["hint"].rstrip())
            i += 1
        if i == len(lines):
            raise StubError(f"{filename}:{start + 1}: TODO {name} has no '{BEGIN}'")
        body_start = i + 1
        i = body_start
        while i < len(lines) and lines[i].strip() != END:
            if lines[i].strip() in (BEGIN,) or TODO_RE.match(lines[i].rstrip("\n")):
                raise StubError(f"{filename}:{i + 1}: nested solution region inside TODO {name}")
            i += 1
        if i == len(lines):
            raise StubError(f"{filename}:{start + 1}: TODO {name} has no '{END}'")
        n = _code_lines(lines[body_start:i])
        todo = Todo(filename, name, start + 1, n)
        todos.append(todo)
        plural = "line" if n == 1 else "lines"
        banner = [f" {RULE}", f" {banner_title(name)}: {header['what']}", *hints,
                  f" Our solution is {n} {plural}. No Python loops over the batch.", f" {RULE}"]
        out.extend(f"{indent}#{text}".rstrip() + "\n" for text in banner)
        out.append(f'{indent}raise NotImplementedError("{todo.message}")\n')
        i += 1  # skip the END marker
    return "".join(out), todos


def generate(src: Path, dst: Path, check: bool = False) -> list[str]:
    """Write (or, with check=True, compare) the stubs of every file in STUB_FILES.

    Returns a list of problems: with check=True, one line per stub that differs from a fresh
    generation (with a short diff); empty when everything is in sync or was written.
    """
    problems = []
    for filename in STUB_FILES:
        text, _ = make_stub((src / filename).read_text(), filename)
        target = dst / filename
        if check:
            current = target.read_text() if target.exists() else ""
            if current != text:
                diff = "".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                    f"{target} (checked in)", f"{target} (generated)", n=1))
                problems.append(f"{target} is out of date with {src / filename}; run `make stubs`.\n{diff[:2000]}")
        else:
            dst.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return problems


def todos(src: Path) -> list[Todo]:
    """All student-owed parts of the solution files, in file order."""
    found = []
    for filename in STUB_FILES:
        found += make_stub((src / filename).read_text(), filename)[1]
    return found
