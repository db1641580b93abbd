"""Assignment 6's student module `finetune.py`: graded against the reference with partial credit and hints.

The oracle is the reference (solutions/finetune.py) for the grader, and the definitions for the self-check
and the notebook's visible checks. Bugs are text edits of the reference (what students write), and a
student's independent, differently written implementation must score full marks.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from vitcourse.course import selfcheck

from autograder import bugs, grader
from coursecore.parts import POINTS, parts_for
from coursecore import impl
from vitcourse.course import nbchecks_transfer

A6 = "a6_transfer"
REFERENCE = (impl.solutions_dir() / "finetune.py").read_text()

# An independent implementation: leaf modules instead of the largest subtrees, a bmm loop for rollout,
# searchsorted for the mass. Equivalent behaviour, different code.
INDEPENDENT = '''
import torch
from torch import nn

MODES = ("head", "partial", "full", "scratch")

def classifier_of(model):
    return model.head if isinstance(getattr(model, "head", None), nn.Module) else model.fc

def blocks_of(model):
    if hasattr(model, "blocks"):
        return list(model.blocks)
    if hasattr(model, "layers"):
        return [b for s in model.layers for b in s.blocks]
    return [b for n in ("layer1", "layer2", "layer3", "layer4") for b in getattr(model, n)]

def set_trainable(model, mode, partial_blocks=2):
    if mode not in MODES or (mode == "partial" and partial_blocks not in range(1, len(blocks_of(model)) + 1)):
        raise ValueError(mode)
    for p in model.parameters():
        p.requires_grad = mode in ("full", "scratch")
    if mode in ("full", "scratch"):
        return []
    learning = [classifier_of(model)]
    if mode == "partial":
        learning += blocks_of(model)[len(blocks_of(model)) - partial_blocks:]
        norm = getattr(model, "norm", None)
        if norm is not None and len(list(norm.parameters())):
            learning.append(norm)
    inside = set()
    for m in learning:
        for p in m.parameters():
            p.requires_grad = True
        inside |= {id(x) for x in m.modules()}
    return [name for name, m in model.named_modules()
            if name and not list(m.children()) and id(m) not in inside]

def attention_rollout(attentions, residual_weight=0.5):
    B, _, N, _ = attentions[0].shape
    R = torch.eye(N, dtype=attentions[0].dtype).repeat(B, 1, 1)
    for A in attentions:
        a = A.sum(1) / A.shape[1] * (1 - residual_weight) + torch.eye(N, dtype=A.dtype) * residual_weight
        a = a / a.sum(-1, keepdim=True)
        R = torch.bmm(a, R)
    return R

def centre_edge_masks(grid):
    gh, gw = grid
    edge = torch.zeros(gh, gw, dtype=torch.bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    centre = torch.zeros(gh, gw, dtype=torch.bool)
    centre[gh // 4: gh - gh // 4, gw // 4: gw - gw // 4] = True
    return (centre & ~edge).flatten(), edge.flatten()

def attention_statistics(cls_attention, grid, mass=0.5):
    a = cls_attention
    n = a.shape[1]
    centre, edge = centre_edge_masks(grid)
    cum = (a.sort(dim=1, descending=True).values / a.sum(1, keepdim=True)).cumsum(1)
    target = torch.full((a.shape[0], 1), mass - 1e-12, dtype=a.dtype)
    k = torch.searchsorted(cum.contiguous(), target, right=False).squeeze(1) + 1
    return {"mean": a.mean(1), "std": ((a - a.mean(1, keepdim=True)) ** 2).mean(1).sqrt(),
            "mass_fraction": k.to(a.dtype) / n,
            "centre_edge_ratio": a[:, centre].mean(1) / a[:, edge].mean(1)}
'''

def _catalogued(bug_id: str) -> tuple:
    """(old, new, part, bug id) of a catalogued bug: its mutation lives with it (Bug.mutation, autograder/bugs.py)."""
    bug = bugs.by_id(bug_id)
    return (*bug.mutation, bug.part, bug.id)


# Text edits of the reference: (old, new, part that must lose points, catalogued bug id or None). A catalogued
# bug's edit is its own `mutation`; only the edits no bug names are written here.
MUTANTS = {
    "first_blocks": _catalogued("set_trainable.first_blocks"),
    "no_final_norm": _catalogued("set_trainable.no_final_norm"),
    "root_params": _catalogued("set_trainable.root_params"),
    "nothing_held": _catalogued("set_trainable.nothing_held"),
    "full_not_reset": _catalogued("set_trainable.full_not_reset"),
    "param_free_missed": _catalogued("set_trainable.param_free_missed"),
    "max_heads": _catalogued("rollout.max_heads"),
    "unnormalised": _catalogued("statistics.unnormalised"),
    "rollout_order": _catalogued("rollout.wrong_order"),
    "rollout_no_residual": _catalogued("rollout.no_residual"),
    "rollout_swapped": _catalogued("rollout.residual_swapped"),
    "std_unbiased": _catalogued("statistics.std_unbiased"),
    "ascending": _catalogued("statistics.ascending"),
    "no_plus_one": _catalogued("statistics.no_plus_one"),
    "le_mass": _catalogued("statistics.le_mass"),
    "ratio_inverted": _catalogued("statistics.ratio_inverted"),
    "averaged": _catalogued("statistics.averaged"),
}


def _folder(tmp_path: Path, text: str) -> Path:
    (tmp_path / "finetune.py").write_text(text)
    return tmp_path


@pytest.fixture(scope="module")
def graded_reference(tmp_path_factory):
    return grader.grade(_folder(tmp_path_factory.mktemp("ref"), REFERENCE), assignment=A6)


def test_a6_grades_only_finetune_parts_out_of_their_points(graded_reference):
    assert [r.part for r in graded_reference.parts] == list(parts_for(A6))
    assert graded_reference.max_score == sum(POINTS[p] for p in parts_for(A6))
    assert graded_reference.score == graded_reference.max_score


def test_a6_stubs_score_zero_and_say_not_implemented(tmp_path):
    stub = (impl.stubs_dir() / "finetune.py").read_text()
    result = grader.grade(_folder(tmp_path, stub), assignment=A6)
    assert result.score == 0
    assert all("implement" in r.feedback() for r in result.parts)


def test_an_independent_correct_implementation_scores_full_marks(tmp_path):
    result = grader.grade(_folder(tmp_path, INDEPENDENT), assignment=A6)
    assert result.score == result.max_score, result.table()


def test_a6_grading_imports_no_vit_module(tmp_path):
    """An assignment-6 folder has no transformer.py / ViT.py: grading must not need (or import) them, and a
    broken ViT.py beside it changes nothing."""
    folder = _folder(tmp_path, REFERENCE)
    (folder / "ViT.py").write_text("raise SystemExit('a stray ViT.py must not be imported')\n")
    result = grader.grade(folder, assignment=A6)
    assert result.score == result.max_score, result.table()


@pytest.mark.parametrize("name", MUTANTS)
def test_each_mutant_loses_points_on_its_part_only_with_its_hint(name, tmp_path):
    old, new, part, bug = MUTANTS[name]
    assert old in REFERENCE, f"mutant {name}: the reference changed"
    result = grader.grade(_folder(tmp_path, REFERENCE.replace(old, new)), assignment=A6)
    by_part = {r.part: r for r in result.parts}
    assert by_part[part].score < by_part[part].max_score
    for other, r in by_part.items():
        if other != part:
            assert r.score == r.max_score, f"{name} cost {other} points"
    if bug:
        assert bug in by_part[part].bug_ids, by_part[part].feedback()


def test_set_trainable_feedback_names_the_wrong_parameter(tmp_path):
    old, new, *_ = MUTANTS["root_params"]
    result = grader.grade(_folder(tmp_path, REFERENCE.replace(old, new)), assignment=A6)
    assert "parameter 'cls_token' learns but should be frozen" in result.part("finetune.set_trainable").feedback()


def test_statistics_returning_a_float_says_one_value_per_image(tmp_path):
    old, _, *_ = MUTANTS["averaged"]
    result = grader.grade(_folder(tmp_path, REFERENCE.replace(old, '"mean": a.mean().item(),')), assignment=A6)
    messages = [c.message for c in result.part("finetune.attention_statistics").checks]
    assert all("one value per image, a (B,) tensor" in m for m in messages), messages


def test_selfcheck_knows_finetune(tmp_path):
    (tmp_path / "ok").mkdir()
    assert {r.part: r.status for r in selfcheck.check_all(_folder(tmp_path / "ok", REFERENCE))} \
        == {p: selfcheck.OK for p in parts_for(A6)}
    stub = (impl.stubs_dir() / "finetune.py").read_text()
    (tmp_path / "stub").mkdir()
    assert {r.status for r in selfcheck.check_all(_folder(tmp_path / "stub", stub))} == {selfcheck.TODO}
    for name in ("first_blocks", "rollout_order", "no_plus_one"):
        old, new, part, _ = MUTANTS[name]
        (tmp_path / name).mkdir()
        status = {r.part: r.status for r in selfcheck.check_all(_folder(tmp_path / name, REFERENCE.replace(old, new)))}
        assert status[part] == selfcheck.WRONG, name


def _load(tmp_path, text):
    return impl.load(_folder(tmp_path, text), modules=("finetune",), reload=True).finetune


def test_visible_checks_pass_the_reference_and_the_independent_version(tmp_path):
    for i, text in enumerate((REFERENCE, INDEPENDENT)):
        (tmp_path / str(i)).mkdir()
        f = _load(tmp_path / str(i), text)
        nbchecks_transfer.check_set_trainable.strict(f.set_trainable)
        nbchecks_transfer.check_attention_rollout.strict(f.attention_rollout)
        nbchecks_transfer.check_attention_statistics.strict(f.attention_statistics)


@pytest.mark.parametrize("name, check", [("first_blocks", "check_set_trainable"), ("nothing_held", "check_set_trainable"),
                                         ("root_params", "check_set_trainable"),
                                         ("rollout_order", "check_attention_rollout"),
                                         ("le_mass", "check_attention_statistics"),
                                         ("ratio_inverted", "check_attention_statistics")])
def test_visible_checks_catch_the_mutants(name, check, tmp_path):
    old, new, *_ = MUTANTS[name]
    f = _load(tmp_path, REFERENCE.replace(old, new))
    fn = {"check_set_trainable": f.set_trainable, "check_attention_rollout": f.attention_rollout,
          "check_attention_statistics": f.attention_statistics}[check]
    with pytest.raises(AssertionError):
        getattr(nbchecks_transfer, check).strict(fn)


def test_every_catalogued_finetune_bug_has_a_mutant():

    assert {m[3] for m in MUTANTS.values() if m[3]} == {b.id for b in bugs.catalogue() if b.part.startswith("finetune.")}


def test_without_an_assignment_a_finetune_folder_grades_only_its_own_parts(tmp_path):
    result = grader.grade(_folder(tmp_path, REFERENCE))
    assert [r.part for r in result.parts] == list(parts_for(A6)) and result.score == result.max_score


# Issue 29: the dtype rule is the student's to know. The same values in another float dtype lose points in the
# grader, so the notebook check and the self-check say so too: the three verdicts agree on each variant.
DTYPE_VARIANTS = {
    "k / n (float32 for float64 attention)": ("finetune.attention_statistics", "check_attention_statistics",
                                              '"mass_fraction": k.to(a.dtype) / n,', '"mass_fraction": k / n,'),
    "statistics upcast to float64": ("finetune.attention_statistics", "check_attention_statistics",
                                     "    a = cls_attention\n", "    a = cls_attention.double()\n"),
    "rollout upcast to float64": ("finetune.attention_rollout", "check_attention_rollout",
                                  "    B, _, N, _ = attentions[0].shape\n",
                                  "    attentions = [A.double() for A in attentions]\n    B, _, N, _ = attentions[0].shape\n"),
}


@pytest.mark.parametrize("variant", list(DTYPE_VARIANTS))
def test_a_dtype_slip_gets_the_same_verdict_from_the_notebook_the_self_check_and_the_grader(variant, tmp_path):
    part, check, old, new = DTYPE_VARIANTS[variant]
    assert old in REFERENCE, "the reference changed: update DTYPE_VARIANTS"
    folder = _folder(tmp_path, REFERENCE.replace(old, new))
    graded = {p.part: p for p in grader.grade(folder, assignment=A6).parts}[part]
    assert graded.score < graded.max_score, variant
    status = {r.part: r for r in selfcheck.check_all(folder)}[part]
    assert status.status == selfcheck.WRONG and "input's dtype" in status.message, status
    f = impl.load(folder, modules=("finetune",), reload=True).finetune
    with pytest.raises(AssertionError, match="float"):
        getattr(nbchecks_transfer, check).strict(getattr(f, part.split(".")[1]))
