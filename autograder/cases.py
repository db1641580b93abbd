"""The hidden grading cases: seeded inputs and weights of small distinct sizes, several configs per part.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

A case is a plain dict `{"op", "params", "tensors", "label"}` (and optionally "sizes", the legend letters its
label shows): `op` names the call, `params` holds sizes, `tensors` the inputs, the cotangents `g` for the gradient
check and the weights (`w.<name>`), and `label` the public description used in feedback (sizes only, never
values). A part declared whole in coursecore/parts/<module>.py builds its own in its grader region (`build_cases`
asks it); the builders below are those of the parts that are not yet (finetune.py's).
"""
from __future__ import annotations

import functools
import threading

import torch

from coursecore.parts import GRADER, POINTS
from coursecore.parts.draws import _gen, _randn

# ------------------------------------------------------------------------------------ finetune.py (a6)
# (kind, depth, mode, k, prefrozen): every mode, the three backbone families, k inside one stage and across
# stages (Swin, ResNet), and models frozen before (full and scratch must unfreeze everything).
SET_TRAINABLE_CASES = [
    ("vit", 3, "head", 2, False),
    ("vit", 3, "partial", 1, False),
    ("vit", 4, "partial", 2, True),
    ("vit", 2, "full", 2, True),
    ("vit", 2, "scratch", 1, True),
    ("swin", [2, 2], "partial", 3, False),
    ("swin", [1, 2], "head", 1, True),
    ("resnet", 2, "partial", 3, False),
    ("resnet", 1, "head", 1, False),
]


def _set_trainable_cases():
    cases = []
    for kind, depth, mode, k, prefrozen in SET_TRAINABLE_CASES:
        family = {"vit": "a timm-style ViT", "swin": "a timm-style Swin", "resnet": "a torchvision-style ResNet"}[kind]
        label = f"set_trainable({family} with depth {depth}, mode={mode!r}, partial_blocks={k})"
        label += ", some parameters frozen beforehand" if prefrozen else ""
        cases.append({"op": "set_trainable", "params": {"kind": kind, "depth": depth, "mode": mode, "k": k,
                                                        "prefrozen": prefrozen}, "tensors": {}, "label": label})
    return cases


def _attention_maps(g, B, h, N, dtype, sharp=1.0):
    """Row-stochastic attention weights (B, h, N, N), as a softmax produces them."""
    return torch.softmax(sharp * _randn(g, B, h, N, N, dtype=torch.float64), dim=-1).to(dtype)


def _rollout_cases():
    sizes = [  # (B, h, N, layers, residual_weight, dtype)
        (2, 3, 5, 2, 0.5, torch.float32),
        (1, 2, 10, 3, 0.3, torch.float64),
        (3, 1, 17, 1, 0.5, torch.float32),
        (2, 4, 5, 4, 0.7, torch.float32),
    ]
    cases = []
    for i, (B, h, N, L, w, dtype) in enumerate(sizes):
        g = _gen(100 + i)
        t = {f"A{l}": _attention_maps(g, B, h, N, dtype, sharp=3.0) for l in range(L)}
        label = f"attention_rollout({L} layer(s) of shape (B, h, N, N) = {(B, h, N, N)}, residual_weight={w}), " \
                f"{str(dtype)[6:]}"
        cases.append({"op": "attention_rollout", "params": {"layers": L, "residual_weight": w}, "tensors": t,
                      "label": label})
    return cases


def _statistics_cases():
    sizes = [  # (B, grid, mass, dtype, kind)
        (2, (4, 4), 0.5, torch.float32, "softmax"),
        (3, (3, 5), 0.3, torch.float64, "scaled"),  # rows that do not sum to 1
        (2, (8, 8), 0.5, torch.float32, "uniform"),  # the mass is reached exactly at half the patches
        (1, (6, 4), 0.8, torch.float64, "peaked"),
    ]
    cases = []
    for i, (B, grid, mass, dtype, kind) in enumerate(sizes):
        g = _gen(110 + i)
        n = grid[0] * grid[1]
        if kind == "uniform":
            a = torch.full((B, n), 1.0 / n, dtype=dtype)
        else:
            a = torch.softmax((4.0 if kind == "peaked" else 1.5) * _randn(g, B, n, dtype=torch.float64), -1)
            a = (a * (3.0 if kind == "scaled" else 1.0)).to(dtype)
        label = f"attention_statistics(cls_attention of shape (B, H'·W') = {(B, n)}, grid={grid}, mass={mass}), " \
                f"{str(dtype)[6:]}" + (", rows not summing to 1" if kind == "scaled" else "")
        cases.append({"op": "attention_statistics", "params": {"grid": list(grid), "mass": mass},
                      "tensors": {"a": a}, "label": label})
    return cases


# The hidden cases of the parts not declared whole in coursecore/parts/<module>.py, built with the reference `ref`.
CASE_BUILDERS = {
    "finetune.set_trainable": lambda ref: _set_trainable_cases(),
    "finetune.attention_rollout": lambda ref: _rollout_cases(),
    "finetune.attention_statistics": lambda ref: _statistics_cases(),
}


def build_cases(ref, part: str) -> list[dict]:
    """The cases of one part, built with the reference implementation `ref` (for module weights)."""
    if part not in CASE_BUILDERS and part in GRADER:  # declared whole in coursecore/parts/<module>.py
        return [{"op": "declared", **case, "part": part} for case in GRADER[part].cases(ref)]
    if part not in CASE_BUILDERS:
        known = "declared" if part in POINTS else "not declared in coursecore/parts/<module>.py either"
        raise KeyError(f"part {part!r} has no hidden cases: add a builder to CASE_BUILDERS in autograder/cases.py "
                       f"(it is {known}; tests/test_parts.py lists every gap)")
    return CASE_BUILDERS[part](ref)


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
