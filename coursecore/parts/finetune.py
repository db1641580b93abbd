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


def _close(what: str, got, want, hint: str, atol: float = 1e-5) -> None:
    """Raise what differs between `got` and the definition's `want` (type, shape, NaN, the largest error), with a hint."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} is a {type(got).__name__}, not a tensor. Hint: {hint}")
    if got.shape != want.shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}. Hint: {hint}")
    if not torch.isfinite(got).all():
        raise AssertionError(f"{what} has NaN or inf values. Hint: {hint}")
    err = (got.detach().double() - want.detach().double()).abs()
    if err.max() > atol + 1e-4 * want.detach().double().abs().max():
        where = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(f"{what} differs from the definition: max error {err.max():.3g} at index {where}. "
                             f"Hint: {hint}")


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
    for layers, w in ((1, 0.5), (3, 0.5), (3, 0.3)):
        got = attention_rollout([m.clone() for m in maps[:layers]], w)
        _close(f"attention_rollout({layers} layer(s) of shape (B, h, N, N) = (2, 3, 5, 5), residual_weight={w})", got,
               rollout_by_hand(maps[:layers], w),
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
    for a, grid in ((rows, (4, 5)), (uniform, (4, 4))):
        got = attention_statistics(a.clone(), grid, 0.5)
        if not isinstance(got, dict):
            raise AssertionError(f"attention_statistics returned a {type(got).__name__}: return a dict of (B,) tensors "
                                 f"with the keys {', '.join(STAT_KEYS)}")
        want = [statistics_by_hand(r.tolist(), grid, 0.5) for r in a]
        for key in STAT_KEYS:
            if key not in got:
                raise AssertionError(f"attention_statistics' dict has no {key!r}: it needs {', '.join(STAT_KEYS)}")
            _close(f"attention_statistics(...)[{key!r}] on grid {grid}", got[key],
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
        return {"requires_grad": torch.tensor([float(q.requires_grad) for q in model.parameters()]),
                "held": torch.tensor(held_leaves(model, names))}

    if op == "attention_rollout":
        fn = h.need(F_, "attention_rollout", ff)
        maps = [t[f"A{i}"].clone() for i in range(p["layers"])]
        return {"out": h.tensor(fn(maps, p["residual_weight"]), "attention_rollout")}

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
        return {k: res[k] for k in STAT_KEYS}

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

CASES = {"finetune.set_trainable": _set_trainable_cases, "finetune.attention_rollout": _rollout_cases,
         "finetune.attention_statistics": _statistics_cases}
for _declared in PARTS:
    grader(_declared.id, cases=CASES[_declared.id], run=_run, bugs=[b for b in BUGS if b.part == _declared.id],
           describe=_describe_set_trainable if _declared.id == "finetune.set_trainable" else None)
### END GRADER
