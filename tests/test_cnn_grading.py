"""Assignment 7's student module `cnn.py`: graded against the reference with partial credit and hints.

The grader's oracle is the reference (solutions/cnn.py); the reference itself is checked here against
PyTorch (F.batch_norm, torch.nn.utils.fusion.fuse_conv_bn_eval, F.mish), and so are the self-check and the
notebook's visible checks. Bugs are text edits of the reference (what students write), and an independent,
differently written implementation must score full marks.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vitcourse.course import selfcheck

from autograder import bugs, cases, grader
from coursecore.parts import POINTS, parts_for
from coursecore import impl
from vitcourse.course import nbchecks_cnn

A7 = "a7_cnn"
REFERENCE = (impl.solutions_dir() / "cnn.py").read_text()

# The solution regions of the reference, written another way: var_mean with a correction, the statistics
# through a (C, n) reshape, the fold with einsum-free broadcasting on a flattened kernel, mish via log1p/exp
# guarded by where, sequential calls in the modules.
_OTHER_BODIES = [
    '''    C = x.shape[1]
    flat = x.transpose(0, 1).reshape(C, -1)  # (C, B·H·W)
    if training:
        var, mean = torch.var_mean(flat, dim=1, correction=0)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.copy_(running_mean + momentum * (mean - running_mean))
                running_var.copy_(running_var + momentum * (var * n / (n - 1) - running_var))
    else:
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = weight.reshape(shape) * y
    return y if bias is None else y + bias.reshape(shape)
''',
    '''        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_var)
        s = gamma / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight.reshape(conv.out_channels, -1) * s[:, None]
        fused.weight.copy_(w.reshape(conv.weight.shape))
        b = conv.bias if conv.bias is not None else 0.0
        fused.bias.copy_(beta + s * (b - bn.running_mean))
''',
    '''    sp = torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))
    return x * torch.tanh(sp)
''',
    '''        z = self.conv(x)
        z = self.bn(z)
        return self.act(z)
''',
    '''        features = self.forward_features(x)
        return self.head(self.head_drop(features))
''',
]


def _independent() -> str:
    regions = re.compile(r"(### BEGIN SOLUTION\n).*?(\s*### END SOLUTION)", re.S)
    bodies = iter(_OTHER_BODIES)
    text = regions.sub(lambda m: m.group(1) + next(bodies).rstrip("\n") + m.group(2), REFERENCE)
    assert next(bodies, None) is None
    return text


INDEPENDENT = _independent()

def _catalogued(bug_id: str) -> tuple:
    """(old, new, part, bug id) of a catalogued bug: its mutation lives with it (Bug.mutation, autograder/bugs.py)."""
    bug = bugs.by_id(bug_id)
    return (*bug.mutation, bug.part, bug.id)


# Text edits of the reference: (old, new, part that must lose points, catalogued bug id or None). A catalogued
# bug's edit is its own `mutation`; only the edits no bug names are written here.
MUTANTS = {
    "biased_running_var": _catalogued("cnn.biased_running_var"),
    "momentum_swapped": _catalogued("cnn.momentum_swapped"),
    "not_in_place": _catalogued("cnn.running_not_in_place"),
    "unbiased_normalise": _catalogued("cnn.unbiased_normalise"),
    "detached_statistics": _catalogued("cnn.detached_statistics"),
    "eval_batch_stats": _catalogued("cnn.eval_batch_stats"),
    "eps_outside_sqrt": _catalogued("cnn.eps_outside_sqrt"),
    "fold_no_conv_bias": _catalogued("cnn.fold_no_conv_bias"),
    "fold_bias_unscaled": _catalogued("cnn.fold_bias_unscaled"),
    "fold_no_eps": _catalogued("cnn.fold_no_eps"),
    "fold_var_not_sqrt": _catalogued("cnn.fold_var_not_sqrt"),
    "fold_input_axis": _catalogued("cnn.fold_input_axis"),
    "fold_in_place": ("        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))",
                      "        conv.weight.mul_(scale.view(-1, 1, 1, 1))\n        fused.weight.copy_(conv.weight)",
                      "cnn.fold_conv_bn", None),
    "mish_naive": _catalogued("cnn.mish_naive_softplus"),
    "mish_no_tanh": _catalogued("cnn.mish_no_tanh"),
    "act_before_bn": _catalogued("cnn.block_act_before_bn"),
    "no_head": ("return self.head(self.head_drop(self.forward_features(x)))",
                "return self.head_drop(self.forward_features(x))", "cnn.ConvNet.forward", None),
    "head_on_unpooled": _catalogued("cnn.convnet_head_on_unpooled"),
}


def _folder(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cnn.py").write_text(text)
    return tmp_path


def _grade(tmp_path: Path, text: str):
    return grader.grade(_folder(tmp_path, text), assignment=A7)


@pytest.fixture(scope="module")
def graded_reference(tmp_path_factory):
    return _grade(tmp_path_factory.mktemp("ref"), REFERENCE)


def test_a7_grades_only_cnn_parts_out_of_their_points(graded_reference):
    assert [r.part for r in graded_reference.parts] == list(parts_for(A7))
    assert graded_reference.max_score == sum(POINTS[p] for p in parts_for(A7))
    assert graded_reference.score == graded_reference.max_score, graded_reference.table()


def test_a7_stubs_score_zero_and_say_not_implemented(tmp_path):
    result = _grade(tmp_path, (impl.stubs_dir() / "cnn.py").read_text())
    assert result.score == 0
    assert all("implement" in r.feedback() for r in result.parts)


def test_an_independent_correct_cnn_scores_full_marks(tmp_path):
    result = _grade(tmp_path, INDEPENDENT)
    assert result.score == result.max_score, result.table()


def test_the_reference_outputs_are_pytorchs():
    """The grader's expected outputs (the reference's) equal PyTorch's on every graded case."""
    ref = impl.reference()
    for case, expected in cases.graded_part(str(impl.solutions_dir()), "cnn.batch_norm"):
        t, p = case["tensors"], case["params"]
        x = t["x"].clone().requires_grad_(True)
        affine = {k: t[k].clone().requires_grad_(True) for k in ("weight", "bias") if k in t}
        rm, rv = (t["running_mean"].clone(), t["running_var"].clone()) if "running_mean" in t else (None, None)
        out = F.batch_norm(x, rm, rv, affine.get("weight"), affine.get("bias"), p["training"], p["momentum"], p["eps"])
        grads = torch.autograd.grad((out * t["g"]).sum(), [x, *affine.values()])
        torch.testing.assert_close(expected["out"], out.detach(), msg=case["label"])
        for name, g in zip(["x", *affine], grads):
            torch.testing.assert_close(expected[f"grad:{name}"], g, msg=case["label"])
        if rm is not None:
            torch.testing.assert_close(expected["running_mean"], rm)
            torch.testing.assert_close(expected["running_var"], rv)
    for case, expected in cases.graded_part(str(impl.solutions_dir()), "cnn.fold_conv_bn"):
        p, t = case["params"], case["tensors"]
        conv = nn.Conv2d(p["in"], p["out"], p["k"], stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                         groups=p["groups"], bias=p["conv_bias"], dtype=t["x"].dtype)
        conv.load_state_dict({k[7:]: v for k, v in t.items() if k.startswith("w.conv.")})
        bn = nn.BatchNorm2d(p["out"], eps=p["eps"], affine=p["affine"], dtype=t["x"].dtype).eval()
        bn.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("w.bn.")}, strict=False)
        oracle = fuse_conv_bn_eval(conv.eval(), bn)
        torch.testing.assert_close(expected["weight"], oracle.weight.detach(), msg=case["label"])
        torch.testing.assert_close(expected["bias"], oracle.bias.detach(), msg=case["label"])
        torch.testing.assert_close(expected["out"], bn(conv(t["x"])).detach(), msg=case["label"])
    for case, expected in cases.graded_part(str(impl.solutions_dir()), "cnn.mish"):
        torch.testing.assert_close(expected["out"], F.mish(case["tensors"]["x"]))
    assert ref.cnn  # loaded with the other reference modules


@pytest.mark.parametrize("name", MUTANTS)
def test_each_cnn_mutant_loses_points_on_its_part_only_with_its_hint(name, tmp_path):
    """Graded in this process (the mutants are our own code): the same cases, comparisons and catalogue as the
    sandbox, which the reference, stub and independent tests above go through."""
    old, new, part, bug = MUTANTS[name]
    assert old in REFERENCE, f"mutant {name}: the reference changed"
    result = grader.grade_in_process(_folder(tmp_path, REFERENCE.replace(old, new)), list(parts_for(A7)))
    by_part = {r.part: r for r in result.parts}
    assert by_part[part].score < by_part[part].max_score
    for other, r in by_part.items():
        if other != part:
            assert r.score == r.max_score, f"{name} cost {other} points"
    if bug:
        assert bug in by_part[part].bug_ids, by_part[part].feedback()


def test_a_fold_that_changes_its_inputs_is_told_so(tmp_path):
    old, new, *_ = MUTANTS["fold_in_place"]
    feedback = _grade(tmp_path, REFERENCE.replace(old, new)).part("cnn.fold_conv_bn").feedback()
    assert "changed the conv or the batch norm it was given" in feedback


def test_every_catalogued_cnn_bug_has_a_mutant():
    assert {m[3] for m in MUTANTS.values() if m[3]} == {b.id for p in parts_for(A7) for b in bugs.for_part(p) if b.part == p}


def test_selfcheck_knows_cnn(tmp_path):
    (tmp_path / "ok").mkdir()
    assert {r.part: r.status for r in selfcheck.check_all(_folder(tmp_path / "ok", REFERENCE))} \
        == {p: selfcheck.OK for p in parts_for(A7)}
    (tmp_path / "stub").mkdir()
    stub = (impl.stubs_dir() / "cnn.py").read_text()
    assert {r.status for r in selfcheck.check_all(_folder(tmp_path / "stub", stub))} == {selfcheck.TODO}
    for name in ("biased_running_var", "fold_no_conv_bias", "mish_no_tanh"):
        old, new, part, _ = MUTANTS[name]
        (tmp_path / name).mkdir()
        status = {r.part: r.status for r in selfcheck.check_all(_folder(tmp_path / name, REFERENCE.replace(old, new)))}
        assert status[part] == selfcheck.WRONG, name


def _load(tmp_path, text):
    return impl.load(_folder(tmp_path, text), modules=("cnn",), reload=True).cnn


def test_visible_checks_pass_the_reference_and_the_independent_version(tmp_path):
    for i, text in enumerate((REFERENCE, INDEPENDENT)):
        (tmp_path / str(i)).mkdir()
        c = _load(tmp_path / str(i), text)
        nbchecks_cnn.check_batch_norm.strict(c.batch_norm)
        nbchecks_cnn.check_fold_conv_bn.strict(c.fold_conv_bn)
        nbchecks_cnn.check_mish.strict(c.mish)


@pytest.mark.parametrize("name, check", [("biased_running_var", "check_batch_norm"),
                                         ("eval_batch_stats", "check_batch_norm"),
                                         ("fold_no_conv_bias", "check_fold_conv_bn"),
                                         ("fold_input_axis", "check_fold_conv_bn"),
                                         ("mish_naive", "check_mish")])
def test_visible_checks_catch_the_mutants(name, check, tmp_path):
    old, new, *_ = MUTANTS[name]
    c = _load(tmp_path, REFERENCE.replace(old, new))
    fn = {"check_batch_norm": c.batch_norm, "check_fold_conv_bn": c.fold_conv_bn, "check_mish": c.mish}[check]
    with pytest.raises(AssertionError):
        getattr(nbchecks_cnn, check).strict(fn)
