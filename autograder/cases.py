"""The hidden grading cases: seeded inputs and weights of small distinct sizes, several configs per part.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

A case is a plain dict `{"op", "params", "tensors", "label"}` (and optionally "sizes", the legend letters its
label shows): `op` names the call, `params` holds sizes, `tensors` the inputs, the cotangents `g` for the gradient
check and the weights (`w.<name>`), and `label` the public description used in feedback (sizes only, never
values). Each part's declaration in coursecore/parts/<module>.py builds its own in its grader region; this file
builds them with the reference and keeps the expected outputs.
"""
from __future__ import annotations

import functools
import threading

import torch

from coursecore.parts import GRADER, POINTS

def build_cases(ref, part: str) -> list[dict]:
    """The cases of one part, built with the reference implementation `ref` (for module weights)."""
    if part not in GRADER:
        known = "declared, but without a grader region" if part in POINTS else "not declared"
        raise KeyError(f"part {part!r} has no hidden cases: it is {known} in coursecore/parts/<module>.py (register "
                       "them with `grader(...)` in the declaration's GRADER region; tests/test_parts.py lists every gap)")
    return [{"op": "declared", **case, "part": part} for case in GRADER[part].cases(ref)]


_BUILD_LOCK = threading.Lock()  # impl.load and the global torch seed are not thread-safe


def graded_part(solutions_dir: str, part: str) -> list:
    """Cases and reference outputs of one part: [(case, expected outputs)]; built once per process."""
    with _BUILD_LOCK:
        return _graded_part(solutions_dir, part)


@functools.lru_cache(maxsize=None)
def _graded_part(solutions_dir: str, part: str) -> list:
    from autograder import runner
    from coursecore import impl

    ref = impl.load(solutions_dir)
    pairs = []
    for case in build_cases(ref, part):
        torch.manual_seed(0)
        pairs.append((case, runner.clean_outputs(runner.run_case(ref, case))))
    return pairs


def graded_cases(solutions_dir: str) -> dict:
    """Cases and reference outputs of every part: {part: [(case, expected outputs)]}."""
    return {part: graded_part(solutions_dir, part) for part in POINTS}
