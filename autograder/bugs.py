"""The catalogue of common bugs: how to recognise each one from the outputs, and the hint it earns.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

A bug is recognised in one of three ways, all computed in the grader's process:

* `variant`: an independent re-implementation of the *buggy* computation on the case's inputs; when the
  student's output matches it (and not the correct one), the student made exactly that mistake;
* `error`: a regular expression on the error the student's code raised (e.g. autograd's in-place message);
* `nondeterministic`: two calls in eval mode gave different outputs (dropout left on in eval).

Hints say what is wrong and where to look, never the inputs or the reference code.

The bugs of a part declared whole in coursecore/parts/<module>.py are declared beside it (`bugs=` of its grader
region); this file keeps the bugs of any part and those of the parts not declared there yet, and reads both.
"""
from __future__ import annotations

import re
from typing import Optional

import torch

from coursecore import parts
from coursecore.parts.finetune import centre_edge_by_hand
from coursecore.parts.part import GRADER, Bug  # noqa: F401 - Bug: the catalogue's type

from autograder import runner


# ------------------------------------------------------------------------------------------ helpers
def _set_trainable_variant(bug: str, key: str):
    """set_trainable with one catalogued mistake, run on the case's toy backbone: its `key` output."""
    def compute(c):
        p = c["params"]
        model = runner.toy_backbone(p["kind"], p["depth"])
        for i, param in enumerate(model.parameters()):
            if p.get("prefrozen") and i % 2:
                param.requires_grad_(False)
        names = _buggy_set_trainable(model, p["mode"], p["k"], bug)
        if key == "held":
            return torch.tensor(runner.held_leaves(model, names))
        return torch.tensor([float(q.requires_grad) for q in model.parameters()])
    return compute


def _buggy_set_trainable(model, mode, k, bug):
    from torch import nn
    if mode in ("full", "scratch"):
        if bug != "full_not_reset":
            model.requires_grad_(True)
        return []
    learning = [model.head if isinstance(getattr(model, "head", None), nn.Module) else model.fc]
    if mode == "partial":
        if hasattr(model, "blocks"):
            blocks = list(model.blocks)
        elif hasattr(model, "layers"):
            blocks = [b for stage in model.layers for b in stage.blocks]
        else:
            blocks = [b for name in ("layer1", "layer2", "layer3", "layer4") for b in getattr(model, name)]
        learning += blocks[:k] if bug == "first_blocks" else blocks[-k:]
        norm = getattr(model, "norm", None)
        if norm is not None and bug != "no_final_norm":
            learning.append(norm)
    if bug == "root_params":
        for child in model.children():
            child.requires_grad_(False)
    else:
        model.requires_grad_(False)
    for module in learning:
        module.requires_grad_(True)
    ids = {id(m) for m in learning}
    frozen = []

    def walk(module, prefix):
        for name, child in module.named_children():
            if id(child) in ids:
                continue
            if any(id(m) in ids for m in child.modules()):
                walk(child, f"{prefix}{name}.")
            elif bug != "param_free_missed" or any(True for _ in child.parameters()):
                frozen.append(f"{prefix}{name}")
    walk(model, "")
    return [] if bug == "nothing_held" else frozen


def _rollout_variant(kind: str):
    def compute(c):
        t, p = c["tensors"], c["params"]
        maps = [t[f"A{i}"] for i in range(p["layers"])]
        w = p["residual_weight"]
        B, _, N, _ = maps[0].shape
        eye = torch.eye(N, dtype=maps[0].dtype)
        rollout = eye.expand(B, N, N)
        for A in maps:
            mixed = A.amax(dim=1) if kind == "max_heads" else A.mean(dim=1)
            if kind == "no_residual":
                a = mixed
            elif kind == "residual_swapped":
                a = (1 - w) * eye + w * mixed
            else:
                a = w * eye + (1 - w) * mixed
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = rollout @ a if kind == "wrong_order" else a @ rollout
        return rollout
    return compute


def _statistics_variant(kind: str):
    def compute(c):
        a, p = c["tensors"]["a"], c["params"]
        n, mass = a.shape[1], p["mass"]
        if kind == "std_unbiased":
            return a.std(dim=1, unbiased=True)
        if kind == "ratio_inverted":
            centre, edge = (torch.tensor(m) for m in centre_edge_by_hand(*p["grid"]))
            return a[:, edge].mean(dim=1) / a[:, centre].mean(dim=1)
        probs = a if kind == "unnormalised" else a / a.sum(dim=1, keepdim=True)
        cum = probs.sort(dim=1, descending=kind != "ascending").values.cumsum(dim=1)
        if kind == "no_plus_one":
            k = (cum < mass - 1e-12).sum(dim=1)
        elif kind == "le_mass":
            k = (cum <= mass + 1e-12).sum(dim=1) + 1
        else:
            k = (cum < mass - 1e-12).sum(dim=1) + 1
        return k.to(a.dtype) / n
    return compute


# ------------------------------------------------------------------------------------------ catalogue
INPLACE = r"in-?place operation|a leaf Variable that requires grad"
DROPOUT_HINT = ("two calls in eval mode gave different outputs: dropout is active in eval mode. Use the "
                "nn.Dropout modules built in __init__ (they switch off in eval), or pass "
                "training=self.training to F.dropout.")

# The bugs of any part (`"*"`), and those of the parts not declared whole in coursecore/parts/<module>.py (their
# `grader(..., bugs=...)` region holds their own: `catalogue()` is both).
CATALOGUE: tuple[Bug, ...] = (
    # Bugs of any part; their mutations edit transformer.py's Mlp.forward and Block.forward (where tests make them).
    Bug("dropout_in_eval", "*", DROPOUT_HINT, nondeterministic=True,
        mutation=("x = self.drop1(self.act(self.fc1(x)))",
                  "x = F.dropout(self.act(self.fc1(x)), self.drop1.p, training=True)")),
    Bug("inplace", "*",
        "an in-place operation (x += ..., x[...] = ..., relu_(), masked_fill_()) overwrote a tensor that "
        "autograd still needs: write x = x + ... so that a new tensor is created.",
        error=INPLACE,
        mutation=("x = x + self.drop_path1(",
                  "x += self.drop_path1(")),
    Bug("set_trainable.first_blocks", "finetune.set_trainable",
        "partial mode trains the FIRST k blocks; it must train the LAST k (blocks_of(model)[-k:]): the late "
        "blocks hold the task-specific features, the early ones generic edges and textures.",
        variant=_set_trainable_variant("first_blocks", "requires_grad"), key="requires_grad",
        mutation=("learning += blocks[-partial_blocks:]",
                  "learning += blocks[:partial_blocks]")),
    Bug("set_trainable.no_final_norm", "finetune.set_trainable",
        "in partial mode the final norm stays frozen: it normalises the features the head reads, so it "
        "learns with the last blocks (final_norm_of(model), when it is not None).",
        variant=_set_trainable_variant("no_final_norm", "requires_grad"), key="requires_grad",
        mutation=("        if norm is not None:\n"
                   "            learning.append(norm)\n",
                  "")),
    Bug("set_trainable.root_params", "finetune.set_trainable",
        "parameters that sit on the model itself (cls_token, pos_embed) still learn: freezing each child "
        "module misses them. Call model.requires_grad_(False) first, then unfreeze the learning modules.",
        variant=_set_trainable_variant("root_params", "requires_grad"), key="requires_grad",
        mutation=("    model.requires_grad_(False)\n"
                   "    for module in learning:",
                  "    for child in model.children():\n"
                  "        child.requires_grad_(False)\n"
                  "    for module in learning:")),
    Bug("set_trainable.full_not_reset", "finetune.set_trainable",
        "full / scratch must make every parameter learn, also one that was frozen before this call: "
        "call model.requires_grad_(True).",
        variant=_set_trainable_variant("full_not_reset", "requires_grad"), key="requires_grad",
        mutation=("        model.requires_grad_(True)\n"
                   "        return []",
                  "        return []")),
    Bug("set_trainable.nothing_held", "finetune.set_trainable",
        "requires_grad may be right, but no module is returned as frozen: return the names of the frozen "
        "subtrees so the trainer holds them in eval mode (a frozen BatchNorm still updates its running "
        "statistics in train mode, a frozen dropout still drops).",
        variant=_set_trainable_variant("nothing_held", "held"), key="held",
        mutation=('    walk(model, "")\n'
                   "    return frozen",
                  '    walk(model, "")\n'
                  "    return []")),
    Bug("set_trainable.param_free_missed", "finetune.set_trainable",
        "the parameter-free modules outside the learning ones (dropouts such as pos_drop, drop_path, "
        "head_drop) are not returned: they are part of the frozen model too and must be held in eval mode.",
        variant=_set_trainable_variant("param_free_missed", "held"), key="held",
        mutation=("            else:\n"
                   "                frozen.append(full)",
                  "            elif any(True for _ in child.parameters()):\n"
                  "                frozen.append(full)")),
    Bug("rollout.no_residual", "finetune.attention_rollout",
        "the residual connection is missing: each layer's mixing is residual_weight·I + "
        "(1 - residual_weight)·(mean over heads), not the attention alone.",
        variant=_rollout_variant("no_residual"),
        mutation=("a = residual_weight * eye + (1.0 - residual_weight) * A.mean(dim=1)",
                  "a = A.mean(dim=1)")),
    Bug("rollout.residual_swapped", "finetune.attention_rollout",
        "the two weights are swapped: the identity gets residual_weight, the attention 1 - residual_weight.",
        variant=_rollout_variant("residual_swapped"),
        mutation=("a = residual_weight * eye + (1.0 - residual_weight) * A.mean(dim=1)",
                  "a = (1.0 - residual_weight) * eye + residual_weight * A.mean(dim=1)")),
    Bug("rollout.wrong_order", "finetune.attention_rollout",
        "the layers are multiplied in the wrong order: a later layer acts after the earlier ones, so it "
        "multiplies from the left (R = a @ R).",
        variant=_rollout_variant("wrong_order"),
        mutation=("rollout = a @ rollout  # (B, N, N)",
                  "rollout = rollout @ a")),
    Bug("rollout.max_heads", "finetune.attention_rollout",
        "the heads are combined with a max; rollout averages them (A.mean(dim=1)).",
        variant=_rollout_variant("max_heads"),
        mutation=("(1.0 - residual_weight) * A.mean(dim=1)",
                  "(1.0 - residual_weight) * A.amax(dim=1)")),
    Bug("statistics.std_unbiased", "finetune.attention_statistics",
        "std divides by n - 1: the statistic is the population std of the patches (unbiased=False).",
        variant=_statistics_variant("std_unbiased"), key="std",
        mutation=('"std": a.std(dim=1, unbiased=False)',
                  '"std": a.std(dim=1)')),
    Bug("statistics.ascending", "finetune.attention_statistics",
        "mass_fraction counts the smallest weights first: sort each row in descending order, so k is the "
        "fewest patches that hold the mass.",
        variant=_statistics_variant("ascending"), key="mass_fraction",
        mutation=("p.sort(dim=1, descending=True)",
                  "p.sort(dim=1)")),
    Bug("statistics.no_plus_one", "finetune.attention_statistics",
        "mass_fraction is one patch short: the entries below `mass` do not yet hold it; add the patch that "
        "reaches it (k = count + 1).",
        variant=_statistics_variant("no_plus_one"), key="mass_fraction",
        mutation=("k = (cum < mass - 1e-12).sum(dim=1) + 1",
                  "k = (cum < mass - 1e-12).sum(dim=1)")),
    Bug("statistics.le_mass", "finetune.attention_statistics",
        "when the cumulative sum lands exactly on `mass`, one patch too many is counted: count the entries "
        "strictly below mass (compare with mass - 1e-12), then add one.",
        variant=_statistics_variant("le_mass"), key="mass_fraction",
        mutation=("k = (cum < mass - 1e-12).sum(dim=1) + 1",
                  "k = (cum <= mass).sum(dim=1) + 1")),
    Bug("statistics.unnormalised", "finetune.attention_statistics",
        "mass_fraction compares raw weights with `mass`: normalise each row to sum to 1 first (the class "
        "token's weights on the patches alone need not sum to 1).",
        variant=_statistics_variant("unnormalised"), key="mass_fraction",
        mutation=("    p = a / a.sum(dim=1, keepdim=True)\n",
                  "    p = a\n")),
    Bug("statistics.averaged", "finetune.attention_statistics",
        "the statistics are averaged over the images: return one value per image, a (B,) tensor (reduce over "
        "the patches, dim=1, only; the notebook averages over images itself).",
        variant=lambda c: c["tensors"]["a"].mean(), key="mean",
        mutation=('"mean": a.mean(dim=1),',
                  '"mean": a.mean(),')),
    Bug("statistics.ratio_inverted", "finetune.attention_statistics",
        "centre_edge_ratio is upside down: the centre mean divided by the edge mean.",
        variant=_statistics_variant("ratio_inverted"), key="centre_edge_ratio",
        mutation=("a[:, centre].mean(dim=1) / a[:, edge].mean(dim=1)",
                  "a[:, edge].mean(dim=1) / a[:, centre].mean(dim=1)")),
)

# What to look at when no catalogued bug matches: each part's own `hint` (coursecore/parts/<module>.py).
GENERIC_HINTS = parts.GENERIC_HINTS


def _declared() -> tuple[Bug, ...]:
    """The bugs of the parts declared whole in coursecore/parts/<module>.py."""
    return tuple(bug for hooks in GRADER.values() for bug in hooks.bugs)


def catalogue() -> tuple[Bug, ...]:
    """Every catalogued bug: those of any part and of the undeclared parts here, then the declared parts' own."""
    return (*CATALOGUE, *_declared())


def for_part(part: str) -> list[Bug]:
    return [b for b in catalogue() if b.part in (part, "*")]


def by_id(bug_id: str) -> Bug:
    for bug in catalogue():
        if bug.id == bug_id:
            return bug
    raise KeyError(bug_id)


def match_error(part: str, message: str) -> Optional[Bug]:
    for bug in for_part(part):
        if bug.error and re.search(bug.error, message, re.IGNORECASE):
            return bug
    return None
