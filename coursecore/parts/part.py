"""What a graded part is: one declaration per part, in coursecore/parts/<module>.py.

A part is declared once: `Part(...)` says its points, assignment, the parts a composite runs together, its
hint and (for a part declared whole here) its public check. What only the grader may know about a part
declared whole here, its hidden cases, how to run one on the student's modules and its catalogued bugs, is
registered with `grader(...)` between `### BEGIN GRADER` and `### END GRADER`: a release strips those
regions (coursetools/release.py), so students get the declaration and the check, never the cases.

The grader (autograder/cases.py, runner.py, bugs.py), the self-check, the notebook's check cells, the
feedback and tests/test_parts.py read these declarations. Every part of transformer.py, ViT.py, finetune.py and
cnn.py is declared whole (transformer.py's and ViT.py's share their checks' ground, coursecore/parts/checks.py, and
the grader's oracles, coursecore/parts/oracles.py); tests/test_parts.py reports a part that lacks a piece.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

GRADER_BEGIN, GRADER_END = "### BEGIN GRADER", "### END GRADER"


@dataclass(frozen=True)
class Bug:
    """One catalogued mistake of a part, and the hint a student gets when their result matches it.

    variant(case): the buggy output computed from a case (compared with the student's `key` output);
    error: a regex on the message the student's code raised; mutation: (old, new) source text that turns the
    reference into this bug (tests apply it and check that the grader names the hint)."""

    id: str
    part: str
    hint: str
    variant: Optional[Callable[[dict], Any]] = None
    error: Optional[str] = None
    nondeterministic: bool = False
    key: str = "out"
    mutation: Optional[tuple[str, str]] = None


@dataclass(frozen=True)
class Part:
    """One graded part of a student module.

    id: `<module>.<TODO name>` (`transformer.attention`, `ViT.ViT.forward_features`), or a composite's name.
    points: what the part is worth (the assignment's total is the sum of its parts).
    assignment: the assignment whose notebook grades it (its `grade_part("<id>")` cell).
    uses: for a composite, the parts it runs together; their failures explain its own, and the grader
        substitutes the reference for those the student got wrong (autograder/grader.py).
    hint: what to look at when no catalogued bug matches.
    check: the public check, `check(mods)` with `mods.<module>` the student's modules: raises AssertionError
        with a message for the student when something is wrong (the self-check and the notebook cell run it).
    """

    id: str
    points: float
    assignment: str
    uses: tuple[str, ...] = ()
    hint: str = ""
    check: Optional[Callable[[Any], None]] = None

    @property
    def module(self) -> str:
        """The student module the part lives in: the text before the first dot."""
        return self.id.split(".", 1)[0]

    @property
    def composite(self) -> bool:
        return bool(self.uses)


@dataclass(frozen=True)
class GraderHooks:
    """What the grader needs of a part declared whole in coursecore/parts/<module>.py.

    cases(ref): the hidden cases, built with the reference modules `ref` (`ref.<module>`); each a dict with
        'params' (plain values), 'tensors' (name -> tensor: inputs, weights as 'w.<name>', the cotangent 'g'),
        'label' (what the student is told the case was) and optionally 'sizes' (legend letter -> size).
    run(mods, case, h): run one case on `mods.<module>` (the student's, or the reference for the expected
        outputs) and return named output tensors ('out', 'grad:<input>'); it runs in the grader's sandbox next to
        the student's code. `h` is the runner's harness (autograder/runner.py `harness()`): `need`, `leaf`,
        `load`, `forward_backward`, `module_leaves`, `tensor`, `grads`, `trusted` (functions captured before the
        student's import), `trace` / `recording` (a submodule's or a function's outputs as 'trace:<name>'),
        `Patch` (attributes set for one case, then restored), `permuted` (the call on permuted tokens),
        `StudentError`.
    bugs: the catalogued mistakes (`Bug`), each with the hint it earns.
    describe(key, expected, actual, case, compare): optional, a sentence on what is wrong with output `key` (or
        None); `compare(key, expected, actual)` is the grader's generic tensor comparison, for the keys it does not
        describe itself. For outputs that are flags per parameter or module, say, it names them.
    checks: optional, {check name: output keys}: a case's credit split by the piece that is wrong (default: values,
        gradients, properties).
    prepare(case, values): optional, the outputs as the grader compares them, computed in the grader's process from
        what the sandbox returned (e.g. a flag computed against the inputs the grader sent).
    analyse(case, expected, result): optional, the part's own analysers for one failing case: sentences (in the
        module's words) that name the first intermediate quantity that differs and, where a generated hypothesis
        reproduces it, how (`analysers.decompose`). `result` is the sandbox's: 'ok', 'outputs' or 'error'. Outputs
        named 'probe:<what>' (the student's function re-run on designed inputs) are read here and never scored.
    """

    cases: Callable[[Any], list]
    run: Callable[[Any, dict], dict]
    bugs: tuple[Bug, ...] = ()
    describe: Optional[Callable[..., Optional[str]]] = None
    checks: Optional[dict] = None
    prepare: Optional[Callable[[dict, dict], dict]] = None
    analyse: Optional[Callable[[dict, dict, dict], list]] = None


GRADER: dict[str, GraderHooks] = {}


def grader(part: str, *, cases: Callable, run: Callable, bugs=(), describe=None, checks=None, prepare=None,
           analyse=None) -> None:
    """Register the grader's side of `part` (call it inside a `### BEGIN GRADER` region)."""
    GRADER[part] = GraderHooks(cases, run, tuple(bugs), describe, checks, prepare, analyse)


def strip_grader(text: str) -> str:
    """`text` without its GRADER regions (the student edition of a declaration file)."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        mark = line.strip()
        if mark == GRADER_BEGIN:
            inside = True
        elif mark == GRADER_END:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)
