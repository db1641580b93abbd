"""The graded parts: declared once each in coursecore/parts/<module>.py (`Part`), read from here.

A part id is `<module>.<TODO name>` as listed by `coursetools.stubs.todos(impl.solutions_dir())`, plus two
composite parts that run several of the student's pieces together (`transformer.Attention.forward` with
the student's manual attention path, and `ViT.model`, logits and gradients end to end). The order here is
the order of the report. A part's score is its points times the fraction of its checks that pass, rounded
to `ROUND_DIGITS`; the total is the sum of the rounded part scores, so it is the same on every run.
"""
from __future__ import annotations

import importlib

from coursecore.parts.part import GRADER, Bug, Part  # noqa: F401 - GRADER: filled by the declarations' imports
from coursecore.registry import MODULE_NAMES

ROUND_DIGITS = 2  # part scores are rounded so that totals do not drift with float summation

# Every declared part, in report order: the registry's module order (coursecore/registry.py), each declaration
# file's own order. A registered student module `<name>` declares its parts in coursecore/parts/<name>.py: found
# here by its name, so a new module needs no line in this file.
def _declarations(name: str):
    try:
        return importlib.import_module(f"coursecore.parts.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"coursecore.parts.{name}":
            raise
        raise ImportError(f"the student module {name!r} is registered in coursecore/registry.py but has no "
                          f"coursecore/parts/{name}.py: declare its graded parts there (PARTS = () if it has none; "
                          "docs/extending.md)") from None


PARTS: tuple[Part, ...] = tuple(part for name in MODULE_NAMES for part in _declarations(name).PARTS)
BY_ID: dict[str, Part] = {p.id: p for p in PARTS}

POINTS: dict[str, float] = {p.id: p.points for p in PARTS}
# Parts that are not a single TODO of the template: they exercise several student functions at once.
COMPOSITE_PARTS: tuple[str, ...] = tuple(p.id for p in PARTS if p.composite)
DEPENDS: dict[str, tuple[str, ...]] = {p.id: p.uses for p in PARTS if p.uses}
GENERIC_HINTS: dict[str, str] = {p.id: p.hint for p in PARTS}


def _course_order(assignment: str) -> tuple:
    digits = "".join(ch for ch in assignment.split("_")[0] if ch.isdigit())
    return (int(digits) if digits else 10 ** 6, assignment)


# Which parts each assignment grades (its notebook's grade_part cells); the others grade none of the modules.
# `python -m autograder grade DIR --assignment A`, Gradescope bundles and the notebooks read this table.
ASSIGNMENT_PARTS: dict[str, tuple[str, ...]] = {
    a: tuple(p.id for p in PARTS if p.assignment == a) for a in sorted({p.assignment for p in PARTS}, key=_course_order)}


def parts_for(assignment: str | None = None) -> tuple[str, ...]:
    """The parts an assignment grades, in report order (every part when `assignment` is None)."""
    if assignment is None:
        return tuple(POINTS)
    if assignment not in ASSIGNMENT_PARTS:
        raise KeyError(f"assignment {assignment!r} grades no student module; the assignments with graded parts "
                       f"are {', '.join(ASSIGNMENT_PARTS)} (the `assignment` of the parts in coursecore/parts/<module>.py)")
    return ASSIGNMENT_PARTS[assignment]


def module_of(part: str) -> str:
    """The student module a part lives in ('transformer', 'ViT', 'finetune', 'cnn'): the text before the first dot."""
    return part.split(".", 1)[0]


def max_score(parts=None) -> float:
    """Total points of `parts` (all parts by default)."""
    return round(sum(POINTS[p] for p in (parts or POINTS)), ROUND_DIGITS)
