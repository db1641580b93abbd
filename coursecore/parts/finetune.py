"""The graded parts of `finetune.py` (assignment 6): what trains, attention rollout and its statistics.

Each part is declared whole here: its points, assignment, hint and public check (the `verify_*` functions, against
the definitions written the slow, obvious way: the modes' parameter names on stand-ins with timm's and torchvision's
module names, rollout one image and one layer at a time, the statistics with Python's `statistics` module; the
notebook's check cells and `python -m vitcourse check` run them), and in the grader's region its hidden cases, how
the sandboxed runner runs one, and its catalogued bugs (each with the mutation of the reference that makes it). A
release strips the grader's region (coursetools/release.py).

Shape legend: B batch, N tokens (class token first), h heads, H'/W' the patch grid (n = H'·W' patches), K classes.
"""
from __future__ import annotations

import statistics

import torch

from coursecore.parts.checks import matches as _close
from coursecore.parts.part import Part

STAT_KEYS = ("mean", "std", "mass_fraction", "centre_edge_ratio")  # what attention_statistics returns


# ---- the definitions, by hand: the public checks' oracles -------------------------------------------------
def centre_edge_by_hand(gh: int, gw: int) -> tuple[list[bool], list[bool]]:
    """The centre and edge patches of `attention_statistics`' docstring on a gh×gw grid, row by row.

    Edge: the outer ring. Centre: the middle half in each direction (a quarter of the grid trimmed on every
    side), never on the edge. Written as loops so that it reads as the definition."""
    edge = [r in (0, gh - 1) or c in (0, gw - 1) for r in range(gh) for c in range(gw)]
    qh, qw = gh // 4, gw // 4
    centre = [qh <= r < gh - qh and qw <= c < gw - qw and not edge[r * gw + c] for r in range(gh) for c in range(gw)]
    return centre, edge


def rollout_by_hand(maps, w: float) -> torch.Tensor:
    """Attention rollout by its definition, one image and one layer at a time: (B, N, N) from L maps (B, h, N, N)."""
    B, _, N, _ = maps[0].shape
    out = torch.empty(B, N, N, dtype=maps[0].dtype)
    for b in range(B):
        R = torch.eye(N, dtype=maps[0].dtype)
        for A in maps:
            mix = w * torch.eye(N, dtype=A.dtype) + (1 - w) * sum(A[b, i] for i in range(A.shape[1])) / A.shape[1]
            mix = torch.stack([row / row.sum() for row in mix])
            R = mix @ R
        out[b] = R
    return out


def statistics_by_hand(row: list[float], grid, mass: float) -> dict:
    """attention_statistics of one image by its definition: `statistics` and a loop over the sorted weights."""
    total, k, acc = sum(row), 0, 0.0
    for value in sorted(row, reverse=True):
        if acc >= mass * total - 1e-12:
            break
        acc += value
        k += 1
    centre, edge = centre_edge_by_hand(*grid)
    mean_of = lambda mask: statistics.fmean(v for v, m in zip(row, mask) if m)  # noqa: E731
    return {"mean": statistics.fmean(row), "std": statistics.pstdev(row), "mass_fraction": k / len(row),
            "centre_edge_ratio": mean_of(centre) / mean_of(edge)}


# ---- stand-ins for the backbones: the module names and nesting set_trainable reads --------------------------
def toy_backbone(kind: str, depth, dim: int = 4, classes: int = 3):
    """A stand-in for a timm ViT / Swin or a torchvision ResNet: the same module names and nesting (all that
    `set_trainable` reads), tiny widths, never run forward. `depth`: blocks (ViT), blocks per stage (Swin, a
    list) or per layer (ResNet). The ViT has a BatchNorm in its stem (a hybrid ViT): its statistics must
    stay frozen too."""
    from torch import nn

    def block():
        b = nn.Module()
        b.norm1, b.attn, b.drop_path = nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Dropout(0.1)
        b.norm2, b.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        return b

    m = nn.Module()
    if kind == "vit":
        m.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        m.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        m.patch_embed = nn.Module()
        m.patch_embed.proj, m.patch_embed.norm = nn.Conv2d(3, dim, 2, 2), nn.BatchNorm2d(dim)
        m.pos_drop = nn.Dropout(0.1)
        m.blocks = nn.Sequential(*(block() for _ in range(depth)))
        m.norm, m.fc_norm, m.head_drop = nn.LayerNorm(dim), nn.Identity(), nn.Dropout(0.1)
        m.head = nn.Linear(dim, classes)
    elif kind == "swin":
        m.patch_embed = nn.Module()
        m.patch_embed.proj, m.patch_embed.norm = nn.Conv2d(3, dim, 2, 2), nn.LayerNorm(dim)
        m.layers = nn.Sequential()
        for i, n in enumerate(depth):
            stage = nn.Module()
            stage.downsample = nn.Identity() if i == 0 else nn.Linear(dim, dim)
            stage.blocks = nn.Sequential(*(block() for _ in range(n)))
            m.layers.append(stage)
        m.norm = nn.LayerNorm(dim)
        m.head = nn.Module()
        m.head.global_pool, m.head.drop, m.head.fc = nn.Identity(), nn.Dropout(0.1), nn.Linear(dim, classes)
    elif kind == "resnet":
        m.conv1, m.bn1, m.relu, m.maxpool = nn.Conv2d(3, dim, 3), nn.BatchNorm2d(dim), nn.ReLU(), nn.MaxPool2d(2)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            layer = nn.Sequential()
            for _ in range(depth):
                b = nn.Module()
                b.conv1, b.bn1, b.relu = nn.Conv2d(dim, dim, 3), nn.BatchNorm2d(dim), nn.ReLU()
                b.conv2, b.bn2 = nn.Conv2d(dim, dim, 3), nn.BatchNorm2d(dim)
                layer.append(b)
            setattr(m, name, layer)
        m.avgpool, m.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(dim, classes)
    else:
        raise ValueError(f"unknown toy backbone {kind!r}")
    return m


def held_leaves(model, names) -> list:
    """1.0 for every leaf module (no children) inside one of the subtrees `names`, else 0.0: what the trainer
    holds in eval mode, however the subtrees are cut."""
    held = [n for n in names if n]
    return [float(any(name == h or name.startswith(h + ".") for h in held))
            for name, module in model.named_modules() if name and not any(True for _ in module.children())]


# (backbone, depth, mode, the modules that learn with partial_blocks=1): the three families the course fine-tunes.
SET_TRAINABLE_CHECKS = (
    ("vit", 3, "head", ("head",)),
    ("vit", 3, "partial", ("blocks.2", "norm", "head")),
    ("vit", 3, "full", ("",)),
    ("swin", [1, 2], "partial", ("layers.1.blocks.1", "norm", "head")),
    ("resnet", 2, "partial", ("layer4.1", "fc")),
    ("resnet", 2, "head", ("fc",)),
)
FAMILY = {"vit": "a timm ViT", "swin": "a timm Swin", "resnet": "a torchvision ResNet"}


def verify_set_trainable(set_trainable) -> None:
    """Every mode by its definition on stand-ins with timm's ViT / Swin and torchvision's ResNet module names:
    exactly the right parameters learn (also after some were frozen before), and the returned subtrees hold every
    frozen leaf module (dropouts and BatchNorms too) and no learning one."""
    for kind, depth, mode, learning in SET_TRAINABLE_CHECKS:
        model = toy_backbone(kind, depth)
        for i, param in enumerate(model.parameters()):  # frozen before: full must unfreeze, head must re-freeze
            param.requires_grad_(bool(i % 2))
        what = f"set_trainable({FAMILY[kind]}, {mode!r}, partial_blocks=1)"
        frozen = set_trainable(model, mode, 1)
        if not isinstance(frozen, (list, tuple)) or not all(isinstance(n, str) for n in frozen):
            raise AssertionError(f"{what} returned a {type(frozen).__name__}: return a list of module names (str), "
                                 "e.g. ['patch_embed', 'blocks.0']")
        learns = lambda n: any(m == "" or n == m or n.startswith(m + ".") for m in learning)  # noqa: E731
        for name, param in model.named_parameters():
            if param.requires_grad != learns(name):
                state, should = ("learns", "be frozen") if param.requires_grad else ("is frozen", "learn")
                raise AssertionError(f"{what}: parameter {name!r} {state}, but it should {should} (in {mode!r} mode "
                                     f"only {', '.join(m or 'everything' for m in learning)} learn)")
        names = dict(model.named_modules())
        unknown = [n for n in frozen if n not in names or n == ""]
        if unknown:
            raise AssertionError(f"{what} returned {unknown[0]!r}, which is not a submodule name of the model: use the "
                                 "dotted names of model.named_modules(), e.g. 'blocks.0'")
        for leaf, held in zip((n for n, m in model.named_modules() if n and not any(True for _ in m.children())),
                              held_leaves(model, frozen)):
            if bool(held) == learns(leaf):
                raise AssertionError(
                    f"{what} returned a subtree holding {leaf!r}, which learns: return only subtrees without learning "
                    "modules" if held else
                    f"{what} does not return a subtree holding {leaf!r}, which is frozen: every module outside the "
                    "learning ones (dropouts and BatchNorms too) must be held in eval mode, so return it (or a module "
                    "above it)")


def verify_attention_rollout(attention_rollout) -> None:
    """Rollout against its definition computed by hand, for one and three layers and two residual weights."""
    g = torch.Generator().manual_seed(10)
    maps = [torch.softmax(2 * torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64), -1) for _ in range(3)]
    # float64 and float32 maps: the result keeps the maps' dtype (the grader checks the dtype too).
    for layers, w, dtype in ((1, 0.5, torch.float64), (3, 0.5, torch.float64), (3, 0.3, torch.float64),
                             (3, 0.5, torch.float32)):
        given = [m.to(dtype) for m in maps[:layers]]
        got = attention_rollout([m.clone() for m in given], w)
        _close(f"attention_rollout({layers} layer(s) of shape (B, h, N, N) = (2, 3, 5, 5), residual_weight={w}, "
               f"{str(dtype)[6:]})", got, rollout_by_hand(given, w),
               "one layer: w·I + (1 - w)·(the mean over the heads), rows renormalised" if layers == 1 else
               "multiply the layers' mixings with the newest on the left: R = a @ R")
        if not torch.allclose(got.sum(-1).double(), torch.ones(2, 5, dtype=torch.float64)):
            raise AssertionError("the rows of the rollout do not sum to 1: renormalise each layer's mixing")


STATISTIC_HINTS = {
    "mean": "the mean of each row over the patches (dim=1)",
    "std": "the population std of each row: unbiased=False",
    "mass_fraction": "sort each normalised row in descending order; count the entries whose cumulative sum is below "
                     "mass, add one, divide by the number of patches",
    "centre_edge_ratio": "the mean over the centre patches divided by the mean over the edge patches",
}


def verify_attention_statistics(attention_statistics) -> None:
    """The four statistics against `statistics.fmean/pstdev` and a loop over the sorted weights, on random rows
    that do not sum to 1, and on uniform attention (the mass is reached exactly at half the patches)."""
    g = torch.Generator().manual_seed(20)
    rows = 3 * torch.softmax(1.5 * torch.randn(3, 20, generator=g, dtype=torch.float64), dim=-1)
    uniform = torch.full((1, 16), 1 / 16, dtype=torch.float64)
    # float64 and float32 rows: every statistic keeps cls_attention's dtype (the grader checks the dtype too).
    for a, grid in ((rows, (4, 5)), (uniform, (4, 4)), (rows.float(), (4, 5))):
        got = attention_statistics(a.clone(), grid, 0.5)
        if not isinstance(got, dict):
            raise AssertionError(f"attention_statistics returned a {type(got).__name__}: return a dict of (B,) tensors "
                                 f"with the keys {', '.join(STAT_KEYS)}")
        want = [statistics_by_hand(r.tolist(), grid, 0.5) for r in a]
        for key in STAT_KEYS:
            if key not in got:
                raise AssertionError(f"attention_statistics' dict has no {key!r}: it needs {', '.join(STAT_KEYS)}")
            _close(f"attention_statistics(...)[{key!r}] on grid {grid}, {str(a.dtype)[6:]}", got[key],
                   torch.tensor([w[key] for w in want], dtype=a.dtype), STATISTIC_HINTS[key])


PARTS = (
    Part("finetune.set_trainable", 3, "a6_transfer",
         hint=("head: only classifier_of(model) learns; partial: also the last k blocks and the final norm; "
               "return the largest subtrees without a learning module."),
         check=lambda m: verify_set_trainable(m.finetune.set_trainable)),
    Part("finetune.attention_rollout", 3, "a6_transfer",
         hint="R = I; per layer a = w·I + (1 - w)·A.mean(1), rows renormalised, R = a @ R.",
         check=lambda m: verify_attention_rollout(m.finetune.attention_rollout)),
    Part("finetune.attention_statistics", 3, "a6_transfer",
         hint=("per image (dim=1): mean, std (unbiased=False), the patches needed for `mass` of the normalised "
               "weights sorted descending, centre mean / edge mean."),
         check=lambda m: verify_attention_statistics(m.finetune.attention_statistics)),
)


### BEGIN GRADER
# The grader's side: hidden cases, the run of one case in the sandbox, the catalogued bugs. Not in a release.
from coursecore.parts.draws import _gen, _randn  # noqa: E402
from coursecore.parts.part import Bug, grader  # noqa: E402
from typing import Optional  # noqa: E402

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


def _set_trainable_cases(ref=None):
    cases = []
    for kind, depth, mode, k, prefrozen in SET_TRAINABLE_CASES:
        family = {"vit": "a timm-style ViT", "swin": "a timm-style Swin", "resnet": "a torchvision-style ResNet"}[kind]
        label = f"set_trainable({family} with depth {depth}, mode={mode!r}, partial_blocks={k})"
        label += ", some parameters frozen beforehand" if prefrozen else ""
        cases.append({"op": "set_trainable", "params": {"kind": kind, "depth": depth, "mode": mode, "k": k,
                                                        "prefrozen": prefrozen}, "tensors": {}, "label": label})
    for kind, depth in (("vit", 3), ("resnet", 1)):  # partial_blocks outside 1..len(blocks): a ValueError (step 2)
        blocks = depth if kind == "vit" else 4 * depth
        out_of_range = [0, blocks + 1]
        cases.append({"op": "set_trainable_range", "params": {"kind": kind, "depth": depth, "k": out_of_range},
                      "tensors": {}, "label": f"set_trainable({FAMILY[kind]} with {blocks} blocks, 'partial', "
                                               f"partial_blocks={' and '.join(map(str, out_of_range))})"})
    return cases


def _attention_maps(g, B, h, N, dtype, sharp=1.0):
    """Row-stochastic attention weights (B, h, N, N), as a softmax produces them."""
    return torch.softmax(sharp * _randn(g, B, h, N, N, dtype=torch.float64), dim=-1).to(dtype)


def _rollout_cases(ref=None):
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


def _statistics_cases(ref=None):
    sizes = [  # (B, grid, mass, dtype, kind)
        (2, (4, 4), 0.5, torch.float32, "softmax"),
        (3, (3, 5), 0.3, torch.float64, "scaled"),  # rows that do not sum to 1
        (2, (8, 8), 0.5, torch.float32, "uniform"),  # the mass is reached exactly at half the patches
        (1, (6, 4), 0.8, torch.float64, "peaked"),
        (2, (10, 10), 0.5, torch.float32, "softmax"),  # ViT-S/16 at 160 px: the edge ring and the centre's
        (1, (14, 14), 0.5, torch.float64, "peaked"),  # complement differ from 10×10 up (224 px: 14×14)
    ]
    cases = []
    for i, (B, grid, mass, dtype, kind) in enumerate(sizes):
        g = _gen(110 + i)
        n = grid[0] * grid[1]
        if kind == "uniform":
            a = torch.full((B, n), 1.0 / n, dtype=dtype)
        else:
            a = torch.softmax((4.0 if kind == "peaked" else 1.5) * _randn(g, B, n, dtype=torch.float64), -1)
            # "scaled": every row its own total (0.5 to 3), as the class token's weight on itself varies by image,
            # so a statistic taken over the whole batch differs from the per-image one
            a = (a * (torch.linspace(0.5, 3.0, B, dtype=torch.float64)[:, None] if kind == "scaled" else 1.0)).to(dtype)
        label = f"attention_statistics(cls_attention of shape (B, H'·W') = {(B, n)}, grid={grid}, mass={mass}), " \
                f"{str(dtype)[6:]}" + (", rows not summing to 1" if kind == "scaled" else "")
        cases.append({"op": "attention_statistics", "params": {"grid": list(grid), "mass": mass},
                      "tensors": {"a": a}, "label": label})
    return cases


def _run(mods, case: dict, h) -> dict:
    """One case on the student's finetune.py (in the grader's sandbox); `h` is the runner's harness."""
    torch = h.torch()
    op, p, t = case["op"], case["params"], case["tensors"]
    F_, ff = getattr(mods, "finetune", None), "finetune.py"
    if F_ is None:
        raise h.StudentError("finetune.py was not imported for this assignment")

    if op == "set_trainable":
        fn = h.need(F_, "set_trainable", ff)
        model = toy_backbone(p["kind"], p["depth"])
        for i, param in enumerate(model.parameters()):  # a model someone froze before: full must unfreeze
            if p.get("prefrozen") and i % 2:
                param.requires_grad_(False)
        names = fn(model, p["mode"], p["k"])
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise h.StudentError(f"set_trainable returned a {type(names).__name__}; it must return a list of module "
                               "names (str), e.g. ['patch_embed', 'blocks.0']")
        known = dict(model.named_modules())
        unknown = [n for n in names if n not in known or n == ""]
        if unknown:
            raise h.StudentError(f"set_trainable returned {unknown[0]!r}, which is not the name of a submodule of the "
                               "model: use the dotted names of model.named_modules(), e.g. 'blocks.0'")
        leaves = len(held_leaves(model, []))
        return {"requires_grad": torch.tensor([float(q.requires_grad) for q in model.parameters()]),
                "held": torch.tensor(held_leaves(model, names)),
                # per returned name, the leaves it covers (never scored): the analysers tell a learning module
                # returned from a subtree returned whole although a learning module lies below it
                "probe:held_by_name": torch.tensor([held_leaves(model, [n]) for n in names]).reshape(-1, leaves)}

    if op == "set_trainable_range":
        fn = h.need(F_, "set_trainable", ff)
        raised = []  # per k: 1 a ValueError, 0 no error, -1 another exception
        for k in p["k"]:
            try:
                fn(toy_backbone(p["kind"], p["depth"]), "partial", k)
                raised.append(0.0)
            except ValueError:
                raised.append(1.0)
            except Exception:  # noqa: BLE001 - the wrong kind of error is this check's result
                raised.append(-1.0)
        return {"raises_value_error": torch.tensor(raised)}

    if op == "attention_rollout":
        fn = h.need(F_, "attention_rollout", ff)
        maps = [t[f"A{i}"].clone() for i in range(p["layers"])]
        result = {"out": h.tensor(fn(maps, p["residual_weight"]), "attention_rollout")}
        # Probes for the analysers (never scored): one layer alone, its heads made equal, residual weights 0 and 1,
        # and the batch reversed. Each isolates one piece of the recipe; a probe that fails leaves no key.
        A0, w = t["A0"], p["residual_weight"]
        probes = {"one": ([A0], w), "equal_heads": ([A0.mean(1, keepdim=True).expand_as(A0)], w), "w0": ([A0], 0.0),
                  "w1": ([A0], 1.0), "batch_reversed": ([t[f"A{i}"].flip(0) for i in range(p["layers"])], w)}
        for name, (probe_maps, weight) in probes.items():
            try:
                result[f"probe:{name}"] = h.tensor(fn([m.clone() for m in probe_maps], weight), "attention_rollout")
            except Exception:  # noqa: BLE001 - a probe is for the hint only
                pass
        return result

    if op == "attention_statistics":
        fn = h.need(F_, "attention_statistics", ff)
        res = fn(t["a"].clone(), tuple(p["grid"]), p["mass"])
        if not isinstance(res, dict):
            raise h.StudentError(f"attention_statistics returned a {type(res).__name__}; it must return a dict with "
                               f"the keys {', '.join(STAT_KEYS)}")
        missing = [k for k in STAT_KEYS if k not in res]
        if missing:
            raise h.StudentError(f"attention_statistics' dict has no {missing[0]!r}: it needs {', '.join(STAT_KEYS)}")
        for k in STAT_KEYS:
            if type(res[k]) is not torch.Tensor:
                raise h.StudentError(f"attention_statistics(...)[{k!r}] is a {type(res[k]).__name__}: return one value "
                                   "per image, a (B,) tensor (reduce over the patches, dim=1, only)")
        result = {k: res[k] for k in STAT_KEYS}
        # Probes for the analysers (never scored): every weight times 3 (mass_fraction and the ratio must not change)
        # and the patches in another order (mean, std and mass_fraction must not change).
        n = t["a"].shape[1]
        perm = torch.arange(n).roll(n // 2)
        other_mass = 0.9 if p["mass"] < 0.7 else 0.2  # mass_fraction must follow the `mass` argument
        for name, a, mass in (("x3", 3 * t["a"], p["mass"]), ("shuffled", t["a"][:, perm], p["mass"]),
                              ("other_mass", t["a"], other_mass)):
            try:
                probe = fn(a.clone(), tuple(p["grid"]), mass)
                for k in STAT_KEYS:
                    result[f"probe:{name}:{k}"] = h.tensor(probe[k], "attention_statistics")
            except Exception:  # noqa: BLE001 - a probe is for the hint only
                pass
        return result

    raise ValueError(f"unknown case op {op!r}")


def _set_trainable_variant(bug: str, key: str):
    """set_trainable with one catalogued mistake, run on the case's toy backbone: its `key` output."""
    def compute(c):
        p = c["params"]
        model = toy_backbone(p["kind"], p["depth"])
        for i, param in enumerate(model.parameters()):
            if p.get("prefrozen") and i % 2:
                param.requires_grad_(False)
        names = _buggy_set_trainable(model, p["mode"], p["k"], bug)
        if key == "held":
            return torch.tensor(held_leaves(model, names))
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


def _describe_set_trainable(key: str, expected, actual, case: dict, compare) -> str | None:
    """set_trainable's outputs are flags per parameter / leaf module: name the ones that are wrong."""
    if key == "raises_value_error":  # per out-of-range k: 1 a ValueError, 0 no error, -1 another exception
        if type(actual) is not torch.Tensor or actual.shape != expected.shape:
            return compare(key, expected, actual)
        for k, flag in zip(case["params"]["k"], actual.tolist()):
            if flag != 1:
                did = "raised another exception" if flag < 0 else "returned normally"
                return (f"set_trainable(model, 'partial', partial_blocks={k}) {did}: raise a ValueError when "
                        "partial_blocks is not in 1..len(blocks_of(model)) (the banner's step 2)")
        return None
    if type(actual) is not torch.Tensor or actual.shape != expected.shape:
        return compare(key, expected, actual)
    wrong = (actual != expected).nonzero().flatten().tolist()
    if not wrong:
        return None
    p, first = case["params"], wrong[0]
    more = lambda what: f" (and {len(wrong) - 1} more {what}{'s' if len(wrong) > 2 else ''})" if len(wrong) > 1 else ""  # noqa: E731
    model = toy_backbone(p["kind"], p["depth"])  # the same structure the student's call saw
    if key == "requires_grad":
        names = [n for n, _ in model.named_parameters()]
        state, should = ("learns", "be frozen") if actual[first] else ("is frozen", "learn")
        return f"parameter {names[first]!r} {state} but should {should}" + more("parameter")
    names = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    if actual[first]:
        return f"module {names[first]!r} is in a returned frozen subtree, but it learns" + more("module")
    return (f"module {names[first]!r} is frozen, but no returned subtree holds it, so the trainer would not keep "
            f"it in eval mode" + more("module"))


BUGS = (
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

# ---- the analysers: each part's quantities on their own, with generated wrong versions (analysers.decompose),
# computed here from the case's inputs, never from the reference's source.
def _error_hint(part: str, message: str) -> Optional[str]:
    """torch's (or the runner's) error, said for finetune.py; torch's generic translation otherwise."""
    import re

    from coursecore.parts import analysers

    if part == "finetune.set_trainable":
        if re.search(r"has no attribute '(norm|head|fc|blocks|layers|layer\d)'", message):
            return ("the backbones differ (a ResNet has no .norm, .head or .blocks; a Swin's blocks sit in "
                    ".layers[i].blocks): use classifier_of(model), blocks_of(model) and final_norm_of(model), which "
                    "find them in each")
        if "not the name of a submodule" in message:
            return ("return the dotted names exactly as model.named_modules() gives them, e.g. 'blocks.0' (no trailing "
                    "dot, no 'model.' prefix)")
    if part == "finetune.attention_rollout" and re.search(r"size of tensor a \(\d+\) must match", message):
        return ("two tensors of different shapes were combined element-wise: a sum or mean over an axis drops it "
                "unless keepdim=True, so renormalise with a.sum(dim=-1, keepdim=True) (B, N, 1), and average the "
                "heads over dim=1 of (B, h, N, N)")
    return analysers.explain_error(message, "", {})  # torch's wording, never another module's


def _unit(name: str) -> str:
    """The unit a parameter or module belongs to: a block ('blocks.2', 'layers.1.blocks.0', 'layer4.1'), a
    parameter on the model itself ('cls_token'), or a top-level child ('patch_embed', 'norm', 'head')."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 1:
        return ".".join(parts[:2])
    if parts[0] == "layers" and len(parts) > 3 and parts[2] == "blocks":
        return ".".join(parts[:4])
    if parts[0] == "layers" and len(parts) > 2:
        return ".".join(parts[:3])
    if parts[0].startswith("layer") and parts[0][5:].isdigit() and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def _listing(names: list) -> str:
    names = list(dict.fromkeys(names))
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _trainable_finding(c: dict, expected, actual) -> Optional[str]:
    """Which units learn that should not, and the pattern behind it (the first blocks, one block too many …)."""
    p = c["params"]
    model = toy_backbone(p["kind"], p["depth"])
    names = [n for n, _ in model.named_parameters()]
    e, a = expected.tolist(), actual.tolist()
    extra = [_unit(n) for n, x, y in zip(names, e, a) if y and not x]
    missing = [_unit(n) for n, x, y in zip(names, e, a) if x and not y]
    mode, k = p["mode"], p["k"]
    whole = lambda unit: all(x != y for n, x, y in zip(names, e, a) if _unit(n) == unit)  # noqa: E731 - all wrong
    blocks = [_unit(f"{n}.x") for n in _block_names(model)]
    learning_blocks = [b for b in blocks if any(_unit(n) == b and y for n, y in zip(names, a))]
    wrong = [n for n, x, y in zip(names, e, a) if x != y]
    suffixes = {n.rsplit(".", 1)[-1] for n in wrong}
    right_in_units = [n for n, x, y in zip(names, e, a) if x == y and _unit(n) in {_unit(w_) for w_ in wrong}]
    if len(suffixes) == 1 and right_in_units:  # parts of modules are right, one kind of tensor (.bias) is not
        kind = suffixes.pop()
        state = "learn" if a[names.index(wrong[0])] else "are frozen"
        return (f"only some parameters of a module are set: the .{kind} parameters of {_listing([_unit(n) for n in wrong])} "
                f"{state}, unlike the module's other parameters. (Un)freeze whole modules, module.requires_grad_(...)")
    if any(e) and not any(a) and mode not in ("full", "scratch"):
        return ("after the call no parameter learns, not even the classifier's: freeze everything first "
                "(model.requires_grad_(False)), then call module.requires_grad_(True) on each learning module, which "
                "sets requires_grad on every parameter inside it")
    if mode in ("full", "scratch") and missing:
        return (f"in {mode!r} mode every parameter learns, also the ones frozen before the call: {_listing(missing)} "
                "stay frozen. Call model.requires_grad_(True)")
    roots = [u for u in extra if "." not in u and u in dict(model.named_parameters())]
    if roots:
        return (f"{_listing(roots)} sit on the model itself, not in a child module, and still learn: freezing each "
                "child misses them; model.requires_grad_(False) first, then unfreeze the learning modules")
    if mode == "partial" and learning_blocks != blocks[-k:]:
        if learning_blocks == blocks[:k]:
            return (f"partial mode trains the FIRST {k} block(s) ({_listing(learning_blocks)}); it trains the LAST "
                    f"{k}, blocks_of(model)[-k:] ({_listing(blocks[-k:])})")
        if learning_blocks == blocks[-k - 1:]:
            return (f"one block too many learns: partial_blocks={k} means the last {k} block(s), blocks[-k:] "
                    f"({_listing(blocks[-k:])}), not {_listing(learning_blocks)}")
        if k > 1 and learning_blocks == blocks[-k + 1:]:
            return (f"one block too few learns: partial_blocks={k} means the last {k} blocks, blocks[-k:] "
                    f"({_listing(blocks[-k:])})")
    # The patterns below are named only when they account for every wrong unit: otherwise the listing says the facts.
    if set(missing) == {"norm"} and not extra and mode == "partial" and whole("norm"):
        return ("the final norm stays frozen: in partial mode it learns with the last blocks (final_norm_of(model)), "
                "since it normalises the features the head reads")
    if set(extra) == {"norm"} and not missing and mode == "head" and whole("norm"):
        return "in head mode only the classifier learns: the final norm must stay frozen"
    head = _unit(next(n for n, _ in model.named_parameters() if n.startswith(("head", "fc"))))
    if set(missing) == {head} and not extra and whole(head):
        return f"the classifier ({head}) is frozen: it learns in every mode (classifier_of(model))"
    parts = []
    if extra:
        parts.append(f"{_listing(extra)} learn(s) but should be frozen")
    if missing:
        parts.append(f"{_listing(missing)} {'is' if len(set(missing)) == 1 else 'are'} frozen but should learn")
    return f"in {mode!r} mode with partial_blocks={k}: " + "; ".join(parts) if parts else None


def _block_names(model) -> list:
    if hasattr(model, "blocks"):
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    if hasattr(model, "layers"):
        return [f"layers.{i}.blocks.{j}" for i, stage in enumerate(model.layers) for j in range(len(stage.blocks))]
    return [f"{name}.{i}" for name in ("layer1", "layer2", "layer3", "layer4") for i in range(len(getattr(model, name)))]


def _held_finding(c: dict, expected, actual, by_name=None) -> Optional[str]:
    p = c["params"]
    model = toy_backbone(p["kind"], p["depth"])
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    e, a = expected.tolist(), actual.tolist()
    if e and not any(a) and any(e):
        return ("no module is returned as frozen: return the names of the largest frozen subtrees (e.g. "
                "'patch_embed', 'blocks.0') so the trainer holds them in eval mode")
    wrong = [n for (n, _), x, y in zip(leaves, e, a) if y and not x]
    if wrong:
        learning = {n for (n, _), x in zip(leaves, e) if not x}
        above = []  # returned subtrees that hold learning modules and frozen ones: searched too little
        for row in (by_name.tolist() if type(by_name) is torch.Tensor and by_name.dim() == 2 else []):
            covered = {n for (n, _), y in zip(leaves, row) if y}
            if covered & learning and covered - learning:
                above += [n for n, m in model.named_modules()
                          if n and {leaf for leaf, _ in leaves if leaf == n or leaf.startswith(n + ".")} == covered][:1]
        if above:
            inside = [_unit(n) for n in wrong if any(n.startswith(u + ".") for u in above)]
            return (f"the returned {_listing([repr(n) for n in above])} hold(s) learning modules below it "
                    f"({_listing(inside)}): a returned subtree must hold no learning module, so search further a "
                    "child that holds one below it, and skip a child that is a learning module")
        return (f"the returned names hold {_listing(wrong)}, which learn(s): return the frozen subtrees, not the "
                "learning modules (skip a child that is a learning module)")
    missing = [(n, m) for (n, m), x, y in zip(leaves, e, a) if x and not y]
    if missing and all(not any(True for _ in m.parameters()) for _, m in missing):
        return (f"the parameter-free modules outside the learning ones ({_listing([n for n, _ in missing])}) are not "
                "returned: dropouts and activations are part of the frozen model too and must be held in eval mode")
    if missing:
        return f"{_listing([n for n, _ in missing])} are frozen, but no returned subtree holds them"
    return None


def _analyse_set_trainable(c: dict, expected: dict, result: dict) -> list:
    if not result.get("ok"):
        return [_error_hint("finetune.set_trainable", result.get("error", ""))]
    a = result["outputs"]
    found = []
    if c["op"] == "set_trainable_range":
        got = a.get("raises_value_error")
        message = _describe_set_trainable("raises_value_error", expected["raises_value_error"], got, c,
                                          lambda *args: None)
        return [message] if message else []
    held = lambda c_, e, g: _held_finding(c_, e, g, a.get("probe:held_by_name"))  # noqa: E731
    for key, explain in (("requires_grad", _trainable_finding), ("held", held)):
        e, g = expected.get(key), a.get(key)
        if type(g) is torch.Tensor and g.shape == e.shape and not torch.equal(g, e):
            found.append(explain(c, e, g))
    return found[:1]


def _rollout_components(h: int):
    return {
        "layout": [("given", None),
                   ("transposed", "each layer's attention is used transposed: A[b, h, i, j] is how much query i (the "
                                  "row) reads from key j, so use A as given, rows as queries")],
        "heads": [("mean", None), ("sum", "the heads are summed: average them, A.mean(dim=1)"),
                  ("max", "the heads are combined with a max: average them, A.mean(dim=1)"),
                  *((i, f"only head {i} is used: average over the heads, A.mean(dim=1)") for i in range(h))],
        "residual": [("weighted", None),
                     ("none", "the residual is left out: each layer's mixing is residual_weight·I + "
                              "(1 - residual_weight)·(mean over heads)"),
                     ("swapped", "the two weights are swapped: the identity gets residual_weight, the attention "
                                 "1 - residual_weight"),
                     ("plain", "the identity is added without the weights: residual_weight·I + "
                               "(1 - residual_weight)·(mean over heads)")],
        "norm": [("rows", None),
                 ("columns", "each layer's mixing is normalised over its columns (dim=-2): divide every ROW by its "
                             "sum, a.sum(dim=-1, keepdim=True)"),
                 ("none", "the rows of each layer's mixing are not renormalised to sum to 1"),
                 ("total", "each layer's mixing is divided by its total sum: divide every ROW by its own sum, "
                           "a.sum(dim=-1, keepdim=True)")],
        "product": [("left", None),
                    ("right", "the layers are multiplied in the wrong order: a later layer acts after the earlier "
                              "ones, so it multiplies from the left, R = a @ R"),
                    ("elementwise", "the layers are combined with an elementwise product (a * R): rollout is a "
                                    "matrix product, R = a @ R"),
                    ("last", "each layer replaces the rollout instead of multiplying into it: R = a @ R"),
                    ("sum", "the layers' mixings are added: rollout is a matrix product, R = a @ R")],
        "start": [("identity", None),
                  ("uniform", "the rollout starts from a uniform matrix: start from the identity, R = I (B, N, N)"),
                  ("zeros", "the rollout starts from zeros: start from the identity, R = I (B, N, N)")],
        "first": [("same", None), ("bare", "the residual is left out of the first layer: start from R = I and mix "
                                           "every layer, the first too, with residual_weight·I")],
        "returned": [("all", None),
                     ("cls", "only the class token's row is returned: return the whole rollout R of shape (B, N, N) "
                             "(the caller reads R[:, 0, 1:])"),
                     ("cls_patches", "only the class token's row over the patches is returned: return the whole "
                                     "rollout R of shape (B, N, N)"),
                     ("transposed", "the rollout is returned transposed: row i of R is how much of every input token "
                                    "flows into output token i (rows sum to 1); do not transpose it")],
    }


def _rollout_hypotheses(c: dict):
    from coursecore.parts import analysers

    t, p = c["tensors"], c["params"]
    maps = [t[f"A{i}"].double() for i in range(p["layers"])]
    w = p["residual_weight"]
    B, _, N, _ = maps[0].shape
    eye = torch.eye(N, dtype=torch.float64)
    out = []
    for picks, wrong in analysers.variants(_rollout_components(maps[0].shape[1] if maps[0].shape[1] > 1 else 0)):
        def mix(A, first: bool):
            A = A.transpose(-1, -2) if picks["layout"] == "transposed" else A
            heads = {"mean": A.mean(1), "sum": A.sum(1), "max": A.amax(1)}.get(picks["heads"])
            heads = A[:, picks["heads"]] if heads is None else heads
            if first and picks["first"] == "bare":
                return heads
            a = {"weighted": w * eye + (1 - w) * heads, "none": heads, "swapped": (1 - w) * eye + w * heads,
                 "plain": eye + heads}[picks["residual"]]
            if picks["norm"] == "rows":
                a = a / a.sum(-1, keepdim=True)
            elif picks["norm"] == "columns":
                a = a / a.sum(-2, keepdim=True)
            elif picks["norm"] == "total":
                a = a / a.sum()
            return a

        R = {"identity": eye, "uniform": torch.full((N, N), 1.0 / N, dtype=torch.float64),
             "zeros": torch.zeros(N, N, dtype=torch.float64)}[picks["start"]].expand(B, N, N)
        for i, A in enumerate(maps):
            a = mix(A, i == 0)
            if i == 0 and picks["first"] == "bare":
                R = a
                continue
            R = {"left": a @ R, "right": R @ a, "elementwise": a * R, "last": a, "sum": R + a}[picks["product"]]
        R = {"all": R, "cls": R[:, 0], "cls_patches": R[:, 0, 1:], "transposed": R.transpose(1, 2)}[picks["returned"]]
        out.append(("; ".join(wrong), R))
    return out


def _analyse_rollout(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("finetune.attention_rollout", result.get("error", ""))]
    found = analysers.decompose([analysers.Step("the rollout R", expected.get("out"), result["outputs"].get("out"),
                                                lambda: _rollout_hypotheses(c), name_unexplained=False)])
    if found:
        return [found.message]
    piece = _rollout_piece(c, expected, result["outputs"])
    return [piece] if piece else []


def _fitted_residual(c: dict, one) -> Optional[float]:
    """The identity's weight w' in the student's one-layer mixing, when it is w'·I + (1 - w')·Ā (Ā the head mean)."""
    from coursecore.parts import analysers

    A = c["tensors"]["A0"].double()
    if type(one) is not torch.Tensor or one.shape != A.shape[:1] + A.shape[2:]:
        return None
    mean = A.mean(1)
    eye = torch.eye(A.shape[-1], dtype=torch.float64).expand_as(mean)
    d, e = (one.double() - mean).flatten(), (eye - mean).flatten()
    w = float((d @ e) / (e @ e))
    if abs(w - c["params"]["residual_weight"]) > 1e-3 and analysers.agrees(one, w * eye + (1 - w) * mean, one.dtype):
        return w
    return None


def _rollout_piece(c: dict, expected: dict, a: dict) -> Optional[str]:
    """Which piece of the recipe is wrong, read from the probes: each holds the others right or neutral."""
    from coursecore.parts import analysers

    ok = lambda key: key in a and analysers.agrees(a[key], expected[key])  # noqa: E731
    out = a.get("out")
    reversed_ = a.get("probe:batch_reversed")
    if type(out) is torch.Tensor and type(reversed_) is torch.Tensor and out.shape == reversed_.shape \
            and out.shape[0] > 1 and not analysers.agrees(reversed_, out.flip(0), out.dtype):
        return ("the rollout of one image depends on the other images of the batch: keep the batch axis apart (the "
                "mean over the heads is dim=1, the products act on the last two axes)")
    if type(out) is torch.Tensor and out.dim() == 3 and out.shape[0] > 1 and out.shape == expected["out"].shape \
            and analysers.agrees(out, out[:1].expand_as(out), out.dtype) \
            and not analysers.agrees(expected["out"], expected["out"][:1].expand_as(out)):
        return ("every image gets the same rollout: the batch axis is reduced (a mean or sum over dim=0); keep one "
                "R per image, (B, N, N)")
    if "probe:one" not in a:
        return None
    if ok("probe:one"):
        if c["params"]["layers"] > 1:
            return ("one layer alone gives the right R, so each layer's mixing is right and combining the layers is "
                    "wrong: start from R = I and, layer by layer, R = a @ R (a matrix product, the newest layer on the "
                    "left)")
        return None
    if ok("probe:equal_heads"):
        return ("with identical heads one layer is right, so the heads are combined wrongly: average them, "
                "A.mean(dim=1)")
    one = a["probe:one"]
    if type(one) is torch.Tensor and one.dim() == 3 and not torch.allclose(one.double().sum(-1), torch.ones(
            one.shape[:-1], dtype=torch.float64), 1e-4, 1e-4):
        return ("the rows of a layer's mixing do not sum to 1: divide every row by its sum, a.sum(dim=-1, "
                "keepdim=True), after mixing in the residual")
    fitted = _fitted_residual(c, a["probe:one"])
    if fitted is not None:
        return (f"a layer's mixing gives the identity the weight {fitted:.3g} instead of residual_weight = "
                f"{c['params']['residual_weight']:g}: a = residual_weight·I + (1 - residual_weight)·A.mean(dim=1), "
                "rows renormalised")
    if "probe:w1" in a and not ok("probe:w1"):
        return ("with residual_weight = 1 a layer's mixing must be the identity (the residual alone): the residual "
                "term is wrong, residual_weight·I + (1 - residual_weight)·(mean over heads)")
    if "probe:w0" in a and not ok("probe:w0"):
        return ("with residual_weight = 0 a layer's mixing must be the head-averaged attention: the attention term "
                "is wrong, residual_weight·I + (1 - residual_weight)·A.mean(dim=1)")
    return "the first quantity that differs is one layer's mixing a (the rollout of a single layer)."


def _statistics_hypotheses(c: dict, key: str):
    from coursecore.parts import analysers

    a = c["tensors"]["a"].double()
    grid, mass = tuple(c["params"]["grid"]), c["params"]["mass"]
    B, n = a.shape
    p = a / a.sum(1, keepdim=True)
    if key == "mean":
        return [("the statistics are averaged over the images too: return one value per image, a (B,) tensor "
                 "(reduce over the patches, dim=1, only)", a.mean()),
                ("the mean is taken over the images (dim=0): take it over the patches, dim=1", a.mean(0)),
                ("the weights are summed, not averaged over the patches", a.sum(1)),
                ("the mean is of the normalised row: the mean of the raw weights a_i", p.mean(1))]
    if key == "std":
        return [("the std divides by n - 1: the statistic is the population std (unbiased=False)", a.std(1)),
                ("this is the variance, not the standard deviation: take its square root (a.std(dim=1, "
                 "unbiased=False))", a.var(1, unbiased=False)),
                ("this is the variance with n - 1, not the population standard deviation", a.var(1)),
                ("the std is of the normalised row: the std of the raw weights a_i", p.std(1, unbiased=False)),
                ("the std is taken over the images too: one value per image, over the patches (dim=1)", a.std()),
                ("the std is taken over the images (dim=0): take it over the patches, dim=1", a.std(0, unbiased=False)),
                *([("the std is taken over the images (dim=0) with n - 1: take the population std over the patches, "
                    "dim=1", a.std(0))] if B > 1 else [])]
    if key == "mass_fraction":
        components = {
            "norm": [("p", None), ("raw", "the raw weights are compared with `mass`: normalise each row to sum to 1 "
                                          "first")],
            "order": [("desc", None), ("asc", "the weights are sorted in ascending order: sort them in DESCENDING "
                                              "order, so k is the fewest patches that hold the mass"),
                      ("none", "the cumulative sum runs over the unsorted weights (patch order): sort each row in "
                               "descending order first")],
            "count": [("below+1", None), ("below", "one patch short: the entries below `mass` do not yet hold it; "
                                                   "add the patch that reaches it (k = count + 1)"),
                      ("le+1", "a sum that lands exactly on `mass` counts one patch too many: count the entries "
                               "strictly below mass - 1e-12, then add one")],
            "divide": [("n", None), ("no", "this is the count of patches k, not the fraction: divide k by the number "
                                           "of patches H'·W'")],
        }
        out = []
        for picks, wrong in analysers.variants(components):
            q = p if picks["norm"] == "p" else a
            q = {"desc": q.sort(1, descending=True).values, "asc": q.sort(1).values, "none": q}[picks["order"]]
            cum = q.cumsum(1)
            k = {"below+1": (cum < mass - 1e-12).sum(1) + 1, "below": (cum < mass - 1e-12).sum(1),
                 "le+1": (cum <= mass + 1e-12).sum(1) + 1}[picks["count"]].double()
            out.append(("; ".join(wrong), k / n if picks["divide"] == "n" else k))
        return out
    centre, edge = (torch.tensor(m) for m in centre_edge_by_hand(*grid))
    gh, gw = grid
    r = torch.arange(gh)[:, None].expand(gh, gw).reshape(-1)
    col = torch.arange(gw)[None, :].expand(gh, gw).reshape(-1)
    quarter = (r >= gh // 4) & (r < gh - gh // 4) & (col >= gw // 4) & (col < gw - gw // 4)
    ratio = lambda c_, e_: a[:, c_].mean(1) / a[:, e_].mean(1)  # noqa: E731
    return [("centre_edge_ratio is upside down: the centre mean divided by the edge mean", ratio(edge, centre)),
            ("the edge mask is the complement of the centre: the edge is the outer ring only (first or last row or "
             "column); the patches between the centre and the ring count in neither", ratio(centre, ~centre)),
            ("the centre is everything inside the ring: it is the middle half in each direction (⌊H'/4⌋ rows and "
             "⌊W'/4⌋ columns trimmed on every side)", ratio(~edge, edge)),
            ("the centre includes patches of the outer ring: exclude the edge from the centre", ratio(quarter, edge)),
            *([("the centre and edge masks are built for the grid with its sides swapped, (W', H'): grid is (H', W'), "
                "H' rows of W' patches, row by row", ratio(*(torch.tensor(m) for m in centre_edge_by_hand(gw, gh))))]
              if gh != gw else []),
            ("centre_edge_ratio divides the sums: divide the MEANS (the centre and the edge hold different numbers "
             "of patches)", a[:, centre].sum(1) / a[:, edge].sum(1)),
            ("the centre mean is divided by the mean over all patches: divide by the edge mean",
             a[:, centre].mean(1) / a.mean(1)),
            ("centre_edge_ratio divides the maxima: divide the MEANS over the centre and the edge patches",
             a[:, centre].amax(1) / a[:, edge].amax(1)),
            ("centre_edge_ratio divides the medians: divide the MEANS over the centre and the edge patches",
             a[:, centre].median(1).values / a[:, edge].median(1).values)]


STAT_WORDS = {"mean": "the mean", "std": "the std", "mass_fraction": "mass_fraction",
              "centre_edge_ratio": "centre_edge_ratio"}


def _analyse_statistics(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("finetune.attention_statistics", result.get("error", ""))]
    a, found = result["outputs"], []
    ignored = a.get("probe:other_mass:mass_fraction")
    if "mass_fraction" in a and type(ignored) is torch.Tensor and analysers.agrees(ignored, a["mass_fraction"]) \
            and not analysers.agrees(expected["probe:other_mass:mass_fraction"], expected["mass_fraction"]) \
            and not analysers.agrees(a["mass_fraction"], expected["mass_fraction"]):
        found.append("mass_fraction does not change with the `mass` argument: count the patches needed to reach "
                     "`mass` (the share asked for), not a fixed share")
    for key in STAT_KEYS:  # each statistic on its own: a mistake in one never hides another
        if key == "mass_fraction" and found:
            continue
        hint = ("k is an integer count, and k / n gives the default dtype float32: convert it, k.to(a.dtype) / n "
                "(every statistic is in cls_attention's dtype)" if key == "mass_fraction" else
                "every statistic is in cls_attention's dtype")
        step = analysers.Step(STAT_WORDS[key], expected.get(key), a.get(key),
                              lambda key=key: _statistics_hypotheses(c, key), name_unexplained=False, dtype_hint=hint)
        finding = analysers.decompose([step])
        if finding:
            found.append(finding.message)
        elif key in expected and not analysers.agrees(a.get(key), expected[key]):
            prop = _statistic_property(key, a)
            if prop:
                found.append(prop)
    return found


def _statistic_property(key: str, a: dict) -> Optional[str]:
    """A property the statistic must have that the student's breaks: invariance to the scale of the weights or to the
    order of the patches (read from the probes), one value per image."""
    from coursecore.parts import analysers

    got, x3, shuffled = a.get(key), a.get(f"probe:x3:{key}"), a.get(f"probe:shuffled:{key}")
    if type(got) is not torch.Tensor:
        return None
    if got.dim() != 1:
        return f"{key} has shape {tuple(got.shape)}: return one value per image, a (B,) tensor (reduce over dim=1)"
    if got.numel() > 1 and analysers.agrees(got, got[:1].expand_as(got)):
        return f"{key} is the same for every image: compute it per row (per image), over dim=1"
    if key in ("mass_fraction", "centre_edge_ratio") and x3 is not None and not analysers.agrees(x3, got):
        return (f"{key} changes when every weight is multiplied by 3: it must depend on the weights' proportions only "
                + ("(normalise each row to sum to 1 before the cumulative sum)" if key == "mass_fraction" else
                   "(divide the mean over the centre by the mean over the edge)"))
    if key in ("mean", "std") and x3 is not None and not analysers.agrees(x3, 3 * got):
        return f"{key} does not triple when every weight is multiplied by 3: it must be linear in the weights"
    if key in ("mean", "std", "mass_fraction") and shuffled is not None and not analysers.agrees(shuffled, got):
        return (f"{key} changes when the patches are listed in another order: "
                + ("sort the normalised weights in descending order before the cumulative sum"
                   if key == "mass_fraction" else "it must treat every patch alike"))
    if key == "std":
        return "the std is not the population standard deviation of each row: sqrt(mean((a_i - mean)²)) over dim=1"
    return None


ANALYSERS = {"finetune.set_trainable": _analyse_set_trainable, "finetune.attention_rollout": _analyse_rollout,
             "finetune.attention_statistics": _analyse_statistics}


CASES = {"finetune.set_trainable": _set_trainable_cases, "finetune.attention_rollout": _rollout_cases,
         "finetune.attention_statistics": _statistics_cases}
for _declared in PARTS:
    grader(_declared.id, cases=CASES[_declared.id], run=_run, bugs=[b for b in BUGS if b.part == _declared.id],
           describe=_describe_set_trainable if _declared.id == "finetune.set_trainable" else None,
           analyse=ANALYSERS[_declared.id])
### END GRADER
