"""Every declared part is complete, checked in seconds (issue 28): all gaps reported at once.

A part is declared once in coursecore/parts/<module>.py. What the rest of the course still keeps per part is
found from there, and a part missing any of it is a gap: hidden cases (autograder/cases.py), a public
self-check (vitcourse/course/selfcheck.py), a hint, a catalogued bug, points, a `grade_part` cell in its
assignment's notebook, a TODO of the reference. A bug without its mutation, or whose mutation's text the
reference no longer holds (a refactor of a reference line), is a gap too. An assignment whose self-check would be empty, a notebook
cell grading an undeclared part, and a notebook importing a package the release does not ship are gaps too.
"""
from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest

from coursecore import impl
from coursecore.course_root import PACKAGES, STUDENT_PACKAGES
from coursecore.parts import ASSIGNMENT_PARTS, BY_ID, PARTS, POINTS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "course" / "notebooks"
GRADE_PART = re.compile(r"""grade_part\(\s*["']([\w.]+)["']""")
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)


def gaps() -> list[str]:
    from autograder import bugs
    from coursetools import stubs

    from coursecore.parts import GRADER

    checked = {p.id for p in PARTS if p.check is not None}
    todos = {f"{Path(t.file).stem}.{t.name}" for t in stubs.todos(impl.solutions_dir())}
    graded_in = {}
    for path in sorted(NOTEBOOKS.glob("a*.py")):
        for part in GRADE_PART.findall(path.read_text(encoding="utf-8")):
            graded_in.setdefault(part, set()).add(path.stem)
    out = []
    if len(BY_ID) != len(PARTS):
        out.append("two declarations share an id: " + ", ".join(p.id for p in PARTS if [q.id for q in PARTS].count(p.id) > 1))
    for part in PARTS:
        where = f"{part.id} (coursecore/parts/{part.module}.py)"
        if part.id not in GRADER:
            out.append(f"{where}: no hidden cases (a `grader(...)` region beside it, or autograder/cases.py)")
        if part.id not in checked:
            out.append(f"{where}: no public check (`check=` of its Part, or vitcourse/course/selfcheck.py)")
        if not part.hint.strip():
            out.append(f"{where}: no hint")
        if not part.composite and not any(b.part == part.id for b in bugs.for_part(part.id)):  # a composite: its uses
            out.append(f"{where}: no catalogued bug with a hint (`bugs=` of its grader region, or autograder/bugs.py)")
        if not part.points > 0:
            out.append(f"{where}: points must be positive, not {part.points}")
        if part.assignment not in graded_in.get(part.id, ()):
            out.append(f"{where}: no grade_part({part.id!r}) cell in course/notebooks/{part.assignment}.py")
        if part.composite:
            out += [f"{where}: uses {u}, which is not a declared part" for u in part.uses if u not in BY_ID]
        elif part.id not in todos:
            out.append(f"{where}: no TODO named {part.id.split('.', 1)[1]} in solutions/{part.module}.py")
    out += [f"solutions/{t.split('.')[0]}.py: TODO {t} is not a declared part (coursecore/parts/)" for t in sorted(todos - set(POINTS))]
    for part, notebooks in sorted(graded_in.items()):
        if part not in BY_ID:
            out.append(f"course/notebooks/{sorted(notebooks)[0]}.py grades {part!r}, which no coursecore/parts/ file declares")
    references = "\n".join(path.read_text(encoding="utf-8") for path in sorted(impl.solutions_dir().glob("*.py")))
    for bug in bugs.catalogue():
        if not bug.mutation:
            out.append(f"bug {bug.id} ({bug.part}): no mutation=(old, new), the edit of the reference that makes it")
        elif bug.mutation[0] not in references:
            out.append(f"bug {bug.id} ({bug.part}): its mutation's text is no longer in solutions/: {bug.mutation[0][:60]!r}")
    for assignment, parts in ASSIGNMENT_PARTS.items():
        if not any(p in checked for p in parts):
            out.append(f"{assignment}: its self-check would be empty (no part of it has a public check)")
    out += unshipped_imports()
    return out


def unshipped_imports() -> list[str]:
    """Imports of the course's own packages that a release does not ship, outside the grader's hidden cells."""
    out = []
    for path in sorted(NOTEBOOKS.glob("a*.py")):
        text = HIDDEN.sub("", path.read_text(encoding="utf-8"))
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top not in STUDENT_PACKAGES:
                    out.append(f"course/notebooks/{path.name}:{node.lineno} imports {name}, which a release does not ship")
    return out


def test_every_part_is_complete():
    found = gaps()
    assert not found, f"{len(found)} gap(s) in the part declarations:\n" + "\n".join(found)


def test_the_check_finds_a_part_missing_everywhere(monkeypatch):
    """A declared part nothing else knows (step 2 of docs/extending.md done alone)."""
    from coursecore import parts
    from coursecore.parts.part import Part

    new = Part("transformer.RMSNorm.forward", 1, "a2_transformer", hint="x / rms(x) * self.weight")
    monkeypatch.setattr(parts, "PARTS", (*parts.PARTS, new))
    monkeypatch.setitem(parts.BY_ID, new.id, new)
    monkeypatch.setitem(parts.POINTS, new.id, new.points)
    monkeypatch.setattr(sys.modules[__name__], "PARTS", parts.PARTS)
    found = [g for g in gaps() if g.startswith(new.id)]
    assert len(found) == 5, found  # cases, check, bug, notebook cell, TODO: all at once


def _declared_parts():
    from coursecore.parts import GRADER

    return sorted(GRADER) or [pytest.param(None, marks=pytest.mark.skip(
        reason="no part is declared with a grader region here (tests/test_extending.py declares one)"))]


@pytest.fixture(scope="module")
def declared_grades():
    """The reference and the generated stubs, graded through the sandbox on every declared part at once."""
    from autograder import grader
    from coursecore.parts import GRADER

    parts = sorted(GRADER)
    by_part = lambda report: {r.part: r for r in report.parts}  # noqa: E731
    return (by_part(grader.grade(impl.solutions_dir(), only=parts)),
            by_part(grader.grade(impl.stubs_dir(), only=parts)))


@pytest.mark.parametrize("part", _declared_parts())
def test_a_declared_part_grades_the_reference_the_stub_and_each_bug(part, declared_grades, tmp_path):
    """What a part declared whole in coursecore/parts/ gets without a test of its own: the reference earns its
    points, the generated stub none (both through the sandbox), and each bug's mutation of the reference loses
    points with the bug's hint (graded in this process: the mutants are the reference's own code)."""
    from autograder import grader
    from coursecore.parts import BY_ID, GRADER

    reference, stubs = declared_grades
    points = BY_ID[part].points
    assert reference[part].score == points, reference[part].feedback()
    assert stubs[part].score == 0 and "not implemented" in stubs[part].feedback().lower()
    for bug in GRADER[part].bugs:
        assert bug.mutation, f"{bug.id}: give it mutation=(old, new), the source change that makes it"
        folder = tmp_path / bug.id
        shutil.copytree(impl.solutions_dir(), folder)
        path = folder / f"{BY_ID[part].module}.py"
        old, new = bug.mutation
        assert old in path.read_text(), f"{bug.id}: {old!r} is not in solutions/{path.name}"
        path.write_text(path.read_text().replace(old, new))
        result = grader.grade_in_process(folder, [part]).parts[0]
        assert result.score < points and bug.hint in result.feedback(), (bug.id, result.feedback())
