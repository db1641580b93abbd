"""Visible checks for assignment 6 (`finetune.py`): the student's functions against independent oracles.

Shape legend: B batch, N tokens (class token first), h heads, H'/W' the patch grid, K classes.

Like `vitcourse.course.nbchecks`, these never use the hidden reference, so they ship with the release. The
oracles are the definitions themselves, written the slow, obvious way: parameter names matched against the
blocks a mode trains in real timm / torchvision models, and the self-check's by-hand rollout (one image and
one layer at a time) and statistics (Python's `statistics` module and a loop over sorted weights).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from vitcourse.course.selfcheck import rollout_by_hand, statistics_by_hand
from vitcourse.course.nbchecks import CheckFailed, _assert_close, _gen, _ok, _part, notebook_check

WHERE = "finetune.py"


# ---- set_trainable ----------------------------------------------------------------------------------------
def _tiny_vit(depth: int = 3) -> nn.Module:
    """A real timm ViT, small enough to build in a second (timm's names: blocks, norm, head, cls_token, ...)."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8, embed_dim=16,
                             depth=depth, num_heads=2, num_classes=3, drop_rate=0.1)


def _leaves(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]


def _covered(name: str, frozen) -> bool:
    return any(name == f or name.startswith(f + ".") for f in frozen)


def _expect(model, mode, trains, what: str, fn) -> None:
    """set_trainable(model, mode) must make exactly the parameters under the prefixes `trains` learn, and
    return subtrees that cover every other leaf module and none of theirs."""
    with _part("set_trainable", WHERE):
        frozen = fn(model, mode, 1)
    if not isinstance(frozen, (list, tuple)) or not all(isinstance(n, str) for n in frozen):
        raise CheckFailed(f"set_trainable({what}, {mode!r}) returned {type(frozen).__name__}: return a list of "
                          "module names (str), e.g. ['patch_embed', 'blocks.0']")
    learns = lambda n: any(n == t or n.startswith(t + ".") for t in trains)  # noqa: E731
    for name, param in model.named_parameters():
        if param.requires_grad != learns(name):
            state = "learns" if param.requires_grad else "is frozen"
            should = "learn" if learns(name) else "be frozen"
            raise CheckFailed(f"set_trainable({what}, {mode!r}, partial_blocks=1): parameter {name!r} {state}, but "
                              f"it should {should} (in {mode!r} mode only {', '.join(trains) or 'everything'} learn)")
    names = dict(model.named_modules())
    unknown = [n for n in frozen if n not in names or n == ""]
    if unknown:
        raise CheckFailed(f"set_trainable returned {unknown[0]!r}, which is not a submodule name of the model: use "
                          "the dotted names of model.named_modules(), e.g. 'blocks.0'")
    for leaf in _leaves(model):
        if _covered(leaf, frozen) == learns(leaf):
            if learns(leaf):
                raise CheckFailed(f"set_trainable({what}, {mode!r}) returned a subtree holding {leaf!r}, which learns: "
                                  "return only subtrees without learning modules")
            raise CheckFailed(f"set_trainable({what}, {mode!r}) does not return a subtree holding {leaf!r}, which is "
                              "frozen: every module outside the learning ones (dropouts too) must be held in eval "
                              "mode, so return it (or a module above it)")


@notebook_check
def check_set_trainable(set_trainable: Callable) -> None:
    """Every mode on a small timm ViT and on a torchvision ResNet-18 (BatchNorm), by the definition of the modes;
    then a training step of a frozen ResNet held in eval mode leaves its frozen weights and BN statistics alone."""
    import torchvision

    vit = _tiny_vit(depth=3)
    _expect(vit, "head", ["head"], "a timm ViT", set_trainable)
    _expect(vit, "partial", ["blocks.2", "norm", "head"], "a timm ViT", set_trainable)
    _expect(vit, "full", [n for n, _ in vit.named_children()] + ["cls_token", "pos_embed"], "a timm ViT",
            set_trainable)
    resnet = torchvision.models.resnet18(num_classes=3)
    _expect(resnet, "partial", ["layer4.1", "fc"], "a torchvision ResNet-18", set_trainable)
    _expect(resnet, "head", ["fc"], "a torchvision ResNet-18", set_trainable)

    # The behaviour that matters: train the frozen model one step the way the trainer does.
    frozen = set_trainable(resnet, "head", 1)
    before = {k: v.clone() for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    resnet.train()
    for name in frozen:
        resnet.get_submodule(name).eval()
    opt = torch.optim.SGD([p for p in resnet.parameters() if p.requires_grad], lr=0.1)
    loss = resnet(torch.randn(4, 3, 32, 32, generator=_gen(3))).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    changed = [k for k, v in resnet.state_dict().items() if k in before and not torch.equal(v, before[k])]
    if changed:
        raise CheckFailed(f"after one training step in head mode, {changed[0]!r} changed: a frozen BatchNorm must be "
                          "held in eval mode (return it among the frozen subtrees)")
    _ok("set_trainable trains the right parameters in every mode, and the frozen part stays bit-identical")


# ---- attention_rollout ------------------------------------------------------------------------------------
def _random_attention(B: int, h: int, N: int, seed: int) -> torch.Tensor:
    return torch.softmax(2 * torch.randn(B, h, N, N, generator=_gen(seed), dtype=torch.float64), dim=-1)


@notebook_check
def check_attention_rollout(attention_rollout: Callable) -> None:
    """Rollout against its definition computed by hand, for one and three layers and two residual weights."""
    maps = [_random_attention(2, 3, 5, seed) for seed in (10, 11, 12)]
    with _part("attention_rollout", WHERE):
        got = attention_rollout(maps[:1], 0.5)
    _assert_close("attention_rollout (one layer)", got, rollout_by_hand(maps[:1], 0.5),
                  "one layer: 0.5·I + 0.5·(the mean over the heads), rows renormalised")
    for w in (0.5, 0.3):
        got = attention_rollout([m.clone() for m in maps], w)
        _assert_close(f"attention_rollout (three layers, residual_weight={w})", got, rollout_by_hand(maps, w),
                      "multiply the layers' mixings with the newest on the left: R = a @ R")
    if not torch.allclose(got.sum(-1), torch.ones(2, 5, dtype=got.dtype)):
        raise CheckFailed("the rows of the rollout do not sum to 1: renormalise each layer's mixing")
    _ok("attention_rollout matches the definition (one and three layers, two residual weights)")


# ---- attention_statistics ---------------------------------------------------------------------------------
@notebook_check
def check_attention_statistics(attention_statistics: Callable) -> None:
    """The four statistics against `statistics.fmean/pstdev` and a loop over the sorted weights, on random rows
    that do not sum to 1, and on uniform attention (the mass is reached exactly at half the patches)."""
    grid, mass = (4, 5), 0.5
    n = grid[0] * grid[1]
    a = 3 * torch.softmax(1.5 * torch.randn(3, n, generator=_gen(20), dtype=torch.float64), dim=-1)
    uniform = torch.full((1, 16), 1 / 16, dtype=torch.float64)
    for rows, g in ((a, grid), (uniform, (4, 4))):
        with _part("attention_statistics", WHERE):
            got = attention_statistics(rows.clone(), g, mass)
        if not isinstance(got, dict):
            raise CheckFailed(f"attention_statistics returned {type(got).__name__}: return a dict of (B,) tensors")
        want = [statistics_by_hand(r.tolist(), g, mass) for r in rows]
        for key in ("mean", "std", "mass_fraction", "centre_edge_ratio"):
            if key not in got:
                raise CheckFailed(f"attention_statistics' dict has no {key!r}")
            expected = torch.tensor([w[key] for w in want], dtype=rows.dtype)
            _assert_close(f"attention_statistics()[{key!r}] on grid {g}", got[key], expected, {
                "mean": "the mean of each row over the patches (dim=1)",
                "std": "the population std of each row: unbiased=False",
                "mass_fraction": "sort each normalised row in descending order; count the entries whose cumulative "
                                 "sum is below mass, add one, divide by the number of patches",
                "centre_edge_ratio": "the mean over the centre patches divided by the mean over the edge patches",
            }[key])
    if not math.isclose(float(got["mass_fraction"][0]), 0.5):
        raise CheckFailed("uniform attention over 16 patches needs exactly 8 of them for half the mass")
    _ok("attention_statistics matches the definitions (random rows, and uniform attention)")
