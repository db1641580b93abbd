"""The graded parts of `deit.py` (assignment 8): the distillation token, the two distillation losses, attention distance.

Each part is declared whole here: its points, assignment, hint and public check (the `verify_*` functions, against
oracles a student can read: DeiT's forward written out with the model's own layers, torch's `F.cross_entropy` and
the KL written out, and a by-hand loop over the patches for the attention distance; the notebook's
check cells and `python -m vitcourse check` run them), and in the grader's region its hidden cases, how the sandboxed
runner runs one, its catalogued bugs (each with the mutation of the reference that makes it) and its analysers. A
release strips the grader's region (coursetools/release.py).

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding, h heads, K classes,
T temperature; H'/W' the patch grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from coursecore.parts.checks import matches
from coursecore.parts.part import Part

PREFIX = 2  # a DistilledViT's prefix tokens: the class token, then the distillation token


def _matches(what, got, want, hint, oracle="the definition", atol=1e-5):
    matches(what, got, want, hint, oracle=oracle, atol=atol)


def _as_pair(out, what: str):
    """The two logits a DistilledViT returns in train mode, or an AssertionError that says what came back."""
    if isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list)) or len(out) != 2:
        kind = f"one tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise AssertionError(f"{what} returned {kind}: in train mode (model.train()) DistilledViT.forward returns the "
                             "pair (cls_logits, dist_logits), one (B, K) tensor per head, for the two terms of the loss")
    return out


class _Taps:
    """What each layer of a DistilledViT saw and gave in one forward pass (forward hooks on the given layers): the
    check reads the student's forward through its layers, one definition at a time, instead of re-writing it."""

    def __init__(self, model):
        self.seen, handles = {}, []
        layers = {"patch_embed": model.patch_embed, "norm": model.norm, "head": model.head,
                  "head_dist": model.head_dist}
        for name, layer in layers.items():
            handles.append(layer.register_forward_hook(self._keep(name)))
        handles.append(model.blocks[0].register_forward_pre_hook(self._keep("block0")))
        self.handles = handles

    def _keep(self, name: str):
        def hook(module, args, out=None):  # the first call only; returns None, so nothing is changed
            self.seen.setdefault(name, (args[0] if args else None, out))
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def get(self, name: str, where: str, what: str):
        if name not in self.seen:
            raise AssertionError(f"{where}: self.{name} was never called; {what}")
        return self.seen[name]


def _check_layers(model, taps: _Taps, where: str) -> None:
    """Each step of DeiT's forward against its definition, on what the model's own layers saw."""
    _, patches = taps.get("patch_embed", where, "the patches come from self.patch_embed(x)")
    tokens, _ = taps.get("block0", where, "the tokens go through self.blocks")
    _, normed = taps.get("norm", where, "the blocks' output goes through self.norm")
    D, n = model.pos_embed.shape[-1], patches.shape[1]
    if tuple(tokens.shape[1:]) != (n + 2, D):
        raise AssertionError(f"{where}: the blocks received tokens of shape {tuple(tokens.shape)}, expected (B, {n + 2}, "
                             f"{D}): the class token, the distillation token, then the {n} patches")
    pos = model.pos_embed[0]  # (N, D)
    steps = (("token 0 entering the blocks", tokens[:, 0], model.cls_token[0, 0] + pos[0],
              "token 0 is self.cls_token + pos_embed[:, 0]: the class token comes first"),
             ("token 1 entering the blocks", tokens[:, 1], model.dist_token[0, 0] + pos[1],
              "token 1 is self.dist_token + pos_embed[:, 1]: the distillation token right after the class token"),
             ("the patch tokens entering the blocks", tokens[:, 2:], patches + pos[2:],
              "tokens 2.. are the patches of self.patch_embed(x), each + its row of pos_embed"))
    for what, got, want, hint in steps:
        _matches(f"{where}: {what}", got, want.expand_as(got), hint, oracle="DeiT's definition")
    head_in, head_out = taps.get("head", where, "cls_logits = self.head(x[:, 0])")
    dist_in, dist_out = taps.get("head_dist", where, "dist_logits = self.head_dist(x[:, 1])")
    _matches(f"{where}: the input of self.head", head_in, normed[:, 0], "self.head reads the normalised class token, "
             "x[:, 0] after self.norm", oracle="DeiT's definition")
    _matches(f"{where}: the input of self.head_dist", dist_in, normed[:, 1], "self.head_dist reads the normalised "
             "distillation token, x[:, 1] after self.norm", oracle="DeiT's definition")
    return head_out, dist_out


def verify_distilled_vit(D) -> None:
    """DistilledViT step by step against DeiT's definitions, read through its own layers (forward hooks; the whole
    forward is held against timm's VisionTransformerDistilled in tests/test_deit_grading.py): the tokens entering the
    blocks, what each head reads, the pair returned in train mode, the gradients of the tokens and pos_embed, the
    mean of the two heads in eval mode; a non-square grid."""
    torch.manual_seed(11)
    cfg = D.DeiTConfig(image_size=(12, 8), patch_size=4, in_chans=3, num_classes=5, embed_dim=12, depth=2, num_heads=3,
                       mlp_ratio=2.0)
    model = D.DistilledViT(cfg).double()
    with torch.no_grad():  # tokens and positions of unit size, so a wrong order or a missing pos_embed shows
        for p in (model.cls_token, model.dist_token, model.pos_embed):
            p.normal_()
    x = torch.randn(2, 3, 12, 8, dtype=torch.float64)
    where = "DistilledViT(image_size=(12, 8), patch_size=4, num_classes=5, embed_dim=12, depth=2, num_heads=3)"
    model.train()
    with _Taps(model) as taps:
        out = model(x)
    cls, dist = _as_pair(out, f"{where} in train mode")
    head_out, dist_out = _check_layers(model, taps, f"{where} in train mode")
    _matches(f"{where} in train mode: cls_logits", cls, head_out, "return the pair (cls_logits, dist_logits): "
             "cls_logits = self.head(x[:, 0]) first", oracle="DeiT's definition")
    _matches(f"{where} in train mode: dist_logits", dist, dist_out, "dist_logits = self.head_dist(x[:, 1]) second",
             oracle="DeiT's definition")
    g = torch.randn(2, 5, dtype=torch.float64)
    params = (model.cls_token, model.dist_token, model.pos_embed)
    grads = torch.autograd.grad((cls * g).sum() + (dist * g.flip(0)).sum(), params, allow_unused=True)
    for name, grad in zip(("cls_token", "dist_token", "pos_embed"), grads):
        if grad is None or not grad.abs().sum() > 0:
            raise AssertionError(f"{where}: no gradient reaches self.{name} (.detach(), .data or a new tensor?): the "
                                 "tokens and the position embedding must learn")
    model.eval()
    with torch.no_grad(), _Taps(model) as taps:
        out = model(x)
        if not isinstance(out, torch.Tensor):
            raise AssertionError(f"{where} in eval mode returned a {type(out).__name__}: at test time DeiT returns one "
                                 "(B, K) tensor, the mean of the two heads' logits (cls_logits + dist_logits) / 2")
        head_out, dist_out = _check_layers(model, taps, f"{where} in eval mode")
    _matches(f"{where} in eval mode", out, (head_out + dist_out) / 2, "at test time: the mean of the two heads, "
             "(cls_logits + dist_logits) / 2, not one head alone and not their sum", oracle="DeiT's definition")


def _loss_inputs(seed: int, B: int = 4, K: int = 5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    cls, dist, teacher = (2 * torch.randn(B, K, generator=g, dtype=dtype) for _ in range(3))
    labels = torch.randint(0, K, (B,), generator=g)
    labels[0] = (int(teacher[0].argmax()) + 1) % K  # the teacher disagrees with the label at least once
    return cls.requires_grad_(True), dist.requires_grad_(True), labels, teacher.requires_grad_(True)


def _no_teacher_gradient(loss, teacher, what: str) -> None:
    (grad,) = torch.autograd.grad(loss, teacher, retain_graph=True, allow_unused=True)
    if grad is not None and grad.abs().max() > 0:
        raise AssertionError(f"{what}: a gradient flows into teacher_logits. The teacher is fixed: use "
                             "teacher_logits.detach()")


def verify_hard_distillation_loss(hard_distillation_loss) -> None:
    """The hard-label loss against torch's F.cross_entropy: ½·CE(cls, labels) + ½·CE(dist, teacher's argmax); values,
    the gradients of both heads' logits, none for the teacher."""
    cls, dist, labels, teacher = _loss_inputs(21)
    what = "hard_distillation_loss(cls_logits, dist_logits, labels, teacher_logits) with B = 4, K = 5"
    got = hard_distillation_loss(cls, dist, labels, teacher)
    want = 0.5 * F.cross_entropy(cls, labels) + 0.5 * F.cross_entropy(dist, teacher.argmax(-1))
    _matches(what, got, want, "½·F.cross_entropy(cls_logits, labels) + ½·F.cross_entropy(dist_logits, "
             "teacher_logits.argmax(dim=-1)): the class head learns the labels, the distillation head the teacher's "
             "decisions", oracle="torch's F.cross_entropy")
    mine = torch.autograd.grad(got, (cls, dist), retain_graph=True, allow_unused=True)
    theirs = torch.autograd.grad(want, (cls, dist))
    for name, a, b in zip(("cls_logits", "dist_logits"), mine, theirs):
        if a is None:
            raise AssertionError(f"{what}: no gradient reaches {name}: keep the loss in the autograd graph")
        _matches(f"{what}: the gradient of {name}", a, b, "both cross-entropies are means over the batch",
                 oracle="torch's F.cross_entropy")
    _no_teacher_gradient(got, teacher, what)


def soft_by_hand(cls, dist, labels, teacher, T: float, alpha: float) -> torch.Tensor:
    """(1 − α)·CE(cls, labels) + α·T²·KL(p_teacher ‖ p_student), the KL written out: Σ_k p_t (log p_t − log p_s),
    averaged over the batch."""
    log_s = F.log_softmax(dist / T, dim=-1)
    log_t = F.log_softmax(teacher.detach() / T, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    return (1 - alpha) * F.cross_entropy(cls, labels) + alpha * T * T * kl


def verify_soft_distillation_loss(soft_distillation_loss) -> None:
    """The soft loss against its definition (F.cross_entropy and the KL written out), at two temperatures and two
    weights; values, gradients, none for the teacher."""
    for seed, T, alpha in ((31, 3.0, 0.5), (32, 2.0, 0.3)):
        cls, dist, labels, teacher = _loss_inputs(seed)
        what = f"soft_distillation_loss(..., T={T}, alpha={alpha}) with B = 4, K = 5"
        got = soft_distillation_loss(cls, dist, labels, teacher, T=T, alpha=alpha)
        want = soft_by_hand(cls, dist, labels, teacher, T, alpha)
        _matches(what, got, want, "(1 − alpha)·CE(cls_logits, labels) + alpha·T²·KL(softmax(teacher/T) ‖ "
                 "softmax(dist/T)): F.kl_div(F.log_softmax(dist/T), F.log_softmax(teacher/T), reduction='batchmean', "
                 "log_target=True) · T·T")
        mine = torch.autograd.grad(got, (cls, dist), retain_graph=True, allow_unused=True)
        theirs = torch.autograd.grad(want, (cls, dist))
        for name, a, b in zip(("cls_logits", "dist_logits"), mine, theirs):
            if a is None:
                raise AssertionError(f"{what}: no gradient reaches {name}: keep the loss in the autograd graph")
            _matches(f"{what}: the gradient of {name}", a, b, "divide the logits by T once; KL summed over the "
                     "classes and averaged over the batch ('batchmean')")
        _no_teacher_gradient(got, teacher, what)


def distance_by_hand(attn, grid, patch_size: int, num_prefix_tokens: int) -> torch.Tensor:
    """Mean attention distance with Python loops over heads, queries and keys: the definition, slowly."""
    gh, gw = grid
    B, heads = attn.shape[:2]
    out = []
    for head in range(heads):
        total = 0.0
        for b in range(B):
            for q in range(gh * gw):
                row = attn[b, head, num_prefix_tokens + q, num_prefix_tokens:].double()
                row = row / row.sum()  # the prefix tokens are dropped as keys: the patches' weights sum to 1
                qr, qc = divmod(q, gw)
                for k in range(gh * gw):
                    kr, kc = divmod(k, gw)
                    total += float(row[k]) * patch_size * math.hypot(qr - kr, qc - kc)
        out.append(total / (B * gh * gw))
    return torch.tensor(out, dtype=attn.dtype)


def verify_mean_attention_distance(mean_attention_distance) -> None:
    """mean_attention_distance against a loop over heads, images, query and key patches: a non-square grid with two
    prefix tokens (a DistilledViT), a square one with one (a ViT), float32 and float64."""
    g = torch.Generator().manual_seed(41)
    for B, heads, grid, P, prefix, dtype in ((2, 3, (3, 4), 4, 2, torch.float64), (1, 2, (4, 4), 8, 1, torch.float32)):
        N = prefix + grid[0] * grid[1]
        scores = 2 * torch.randn(B, heads, N, N, generator=g, dtype=torch.float64)
        scores[..., :prefix] += 1.5  # the prefix tokens take a good share, so dropping them changes the rows
        attn = scores.softmax(-1).to(dtype)
        what = (f"mean_attention_distance(attn of shape {(B, heads, N, N)}, grid={grid}, patch_size={P}, "
                f"num_prefix_tokens={prefix}), {str(dtype)[6:]}")
        got = mean_attention_distance(attn.clone(), grid, P, prefix)
        _matches(what, got, distance_by_hand(attn, grid, P, prefix), "drop the prefix tokens as queries and keys, "
                 "renormalise each row over the patches, weight the Euclidean distances in PIXELS (patch (row, col) "
                 "times patch_size), mean over images and query patches -> (h,)", oracle="a loop over the patches",
                 atol=1e-4 if dtype == torch.float32 else 1e-9)


PARTS = (
    Part("deit.DistilledViT.forward", 4, "a8_data",  # train (two heads), eval (their mean), gradients: thirds
         hint=("tokens [cls_token, dist_token, patches] + pos_embed -> blocks -> norm; self.head(x[:, 0]) and "
               "self.head_dist(x[:, 1]); train mode returns both, eval mode their mean."),
         check=lambda m: verify_distilled_vit(m.deit)),
    Part("deit.hard_distillation_loss", 2, "a8_data",
         hint="½·F.cross_entropy(cls_logits, labels) + ½·F.cross_entropy(dist_logits, teacher_logits.argmax(-1)).",
         check=lambda m: verify_hard_distillation_loss(m.deit.hard_distillation_loss)),
    Part("deit.soft_distillation_loss", 2, "a8_data",
         hint=("(1 − alpha)·CE(cls_logits, labels) + alpha·T²·F.kl_div(log_softmax(dist/T), log_softmax(teacher/T), "
               "'batchmean', log_target=True); the teacher detached."),
         check=lambda m: verify_soft_distillation_loss(m.deit.soft_distillation_loss)),
    Part("deit.mean_attention_distance", 3, "a8_data",
         hint=("drop the prefix tokens as queries and keys, renormalise the rows, Σ_k a[q, k]·(Euclidean distance in "
               "pixels), mean over images and queries -> (h,)."),
         check=lambda m: verify_mean_attention_distance(m.deit.mean_attention_distance)),
)


### BEGIN GRADER
# The grader's side: hidden cases, the run of one case in the sandbox, the catalogued bugs, the analysers.
import warnings  # noqa: E402
from typing import Optional  # noqa: E402

from coursecore.parts.draws import _gen, _randn, _weights  # noqa: E402
from coursecore.parts.part import Bug, grader  # noqa: E402

DF = "deit.py"
TOKEN_KEYS = ("cls_token", "dist_token", "pos_embed")  # the parameters DistilledViT.forward uses itself

VIT_SIZES = [  # (image (H, W), P, C, D, h, depth, K, B, dtype): grids 2×2, 4×3, 8×8, 2×3; 1 to 6 heads
    ((8, 8), 4, 3, 12, 3, 1, 5, 2, torch.float32),
    ((16, 12), 4, 3, 16, 2, 2, 7, 3, torch.float64),
    ((24, 24), 3, 1, 8, 1, 1, 4, 2, torch.float32),
    ((10, 15), 5, 2, 18, 6, 1, 3, 1, torch.float64),
]


def _vit_config(p: dict) -> dict:
    return {"image_size": tuple(p["image_size"]), "patch_size": p["patch_size"], "in_chans": p["in_chans"],
            "num_classes": p["num_classes"], "embed_dim": p["embed_dim"], "depth": p["depth"],
            "num_heads": p["num_heads"], "mlp_ratio": 2.0}


def _vit_cases(ref) -> list:
    cases = []
    for i, (image, P, C, D, heads, depth, K, B, dtype) in enumerate(VIT_SIZES):
        g = _gen(800 + i)
        params = {"image_size": list(image), "patch_size": P, "in_chans": C, "num_classes": K, "embed_dim": D,
                  "depth": depth, "num_heads": heads}
        model = ref.deit.DistilledViT(ref.deit.DeiTConfig(**_vit_config(params)))
        t = {k: v.to(dtype) for k, v in _weights(model, g).items()}
        for name in TOKEN_KEYS:  # unit-size tokens and positions: a wrong order or a missing pos_embed shows
            t[f"w.{name}"] = _randn(g, *t[f"w.{name}"].shape, dtype=dtype)
        t.update(x=_randn(g, B, C, *image, dtype=dtype), **{"g.cls": _randn(g, B, K, dtype=dtype),
                                                            "g.dist": _randn(g, B, K, dtype=dtype)})
        grid = (image[0] // P, image[1] // P)
        label = (f"DistilledViT(image_size={image}, patch_size={P}, in_chans={C}, embed_dim={D}, num_heads={heads}, "
                 f"depth={depth}, num_classes={K}) on {B} image(s), a {grid[0]}×{grid[1]} patch grid, train and eval "
                 f"mode, {str(dtype)[6:]}")
        cases.append({"op": "vit", "params": params, "tensors": t, "label": label,
                      "sizes": {"B": B, "N": PREFIX + grid[0] * grid[1], "D": D, "h": heads, "K": K}})
    return cases


LOSS_SIZES = [  # (B, K, T, alpha, dtype): alpha ≠ ½ and T ≠ 1 in most, so swapped weights and a lost T show
    (4, 5, 3.0, 0.5, torch.float32),
    (3, 10, 2.0, 0.3, torch.float64),
    (6, 3, 4.0, 0.9, torch.float32),
    (1, 7, 0.5, 0.7, torch.float64),
]


def _loss_cases(op: str):
    cases = []
    for i, (B, K, T, alpha, dtype) in enumerate(LOSS_SIZES):
        g = _gen(820 + i + (10 if op == "soft" else 0))
        t = {name: 2 * _randn(g, B, K, dtype=dtype) for name in ("cls_logits", "dist_logits", "teacher_logits")}
        labels = torch.randint(0, K, (B,), generator=g)
        teacher_labels = t["teacher_logits"].argmax(-1)
        labels[0] = (int(teacher_labels[0]) + 1) % K  # the teacher and the labels disagree at least once
        t["labels"] = labels
        t["g"] = _randn(g, 1, dtype=dtype).reshape(())  # a scalar cotangent
        params = {"T": T, "alpha": alpha} if op == "soft" else {}
        extra = f", T={T}, alpha={alpha}" if op == "soft" else ""
        label = f"{op}_distillation_loss(logits of shape (B, K) = {(B, K)}{extra}), {str(dtype)[6:]}"
        cases.append({"op": op, "params": params, "tensors": t, "label": label, "sizes": {"B": B, "K": K}})
    return cases


DISTANCE_SIZES = [  # (B, h, grid, P, prefix tokens, dtype): grids 2×2 … 8×8 and non-square, 1 and 2 prefix tokens
    (2, 3, (2, 2), 4, 1, torch.float32),
    (1, 2, (4, 3), 4, 2, torch.float64),
    (2, 4, (8, 8), 2, 1, torch.float32),
    (3, 1, (3, 5), 16, 2, torch.float64),
    (1, 6, (5, 5), 8, 2, torch.float32),
]


def _distance_cases(ref=None):
    cases = []
    for i, (B, heads, grid, P, prefix, dtype) in enumerate(DISTANCE_SIZES):
        g = _gen(840 + i)
        N = prefix + grid[0] * grid[1]
        scores = 2 * _randn(g, B, heads, N, N, dtype=torch.float64)
        scores[..., :prefix] += 1.5  # the prefix tokens hold a good share: renormalising the rows matters
        attn = scores.softmax(-1).to(dtype)
        label = (f"mean_attention_distance(attn of shape (B, h, N, N) = {(B, heads, N, N)}, grid={grid}, "
                 f"patch_size={P}, num_prefix_tokens={prefix}), {str(dtype)[6:]}")
        cases.append({"op": "distance", "params": {"grid": list(grid), "patch_size": P, "prefix": prefix},
                      "tensors": {"attn": attn}, "label": label, "sizes": {"B": B, "h": heads, "N": N, "P": P}})
    return cases


def per_query_probe(attn: torch.Tensor, grid, prefix: int) -> torch.Tensor:
    """A designed input whose head j isolates query patch j: (1, H'·W', N, N).

    Every patch query attends only to itself (distance 0), except query j of head j, which keeps the case's row
    (image 0, head 0), prefix tokens included. So head j of the result is query j's distance divided by H'·W'.
    """
    M = grid[0] * grid[1]
    N = prefix + M
    probe = torch.zeros(M, N, N, dtype=attn.dtype)
    probe[:, :prefix] = 1.0 / N  # the prefix queries: any row (they are dropped)
    eye = torch.arange(prefix, N)
    probe[:, eye, eye] = 1.0
    j = torch.arange(M)
    probe[j, prefix + j] = attn[0, 0, prefix:].to(attn.dtype)  # (M, N): query j's own row in head j
    return probe.unsqueeze(0)  # (1, H'·W', N, N)


def _run(mods, case: dict, h) -> dict:
    """One case on the student's deit.py (in the grader's sandbox); `h` is the runner's harness."""
    torch_ = h.torch()
    D_ = getattr(mods, "deit", None)
    if D_ is None:
        raise h.StudentError("deit.py was not imported for this assignment")
    op, p, t = case["op"], case["params"], case["tensors"]
    if op == "vit":
        return _run_vit(D_, case, h, torch_)
    if op in ("hard", "soft"):
        fn = h.need(D_, f"{op}_distillation_loss", DF)
        leaves = {k: h.leaf(t[k]) for k in ("cls_logits", "dist_logits", "teacher_logits")}
        kwargs = {"T": p["T"], "alpha": p["alpha"]} if op == "soft" else {}
        what = f"{op}_distillation_loss"
        out = h.tensor(fn(leaves["cls_logits"], leaves["dist_logits"], t["labels"].clone(), leaves["teacher_logits"],
                          **kwargs), what)
        result = {"out": out}
        if out.numel() == 1 and out.requires_grad:
            result.update(h.grads(out.sum() * t["g"].to(out.dtype), leaves))
        # The teacher is fixed: its gradient must be zero (a missing one is zero).
        result.setdefault("grad:teacher_logits", torch_.zeros_like(t["teacher_logits"]))
        # Probes for the analysers (never scored): one head's logits set to zero reads the other head's term, since a
        # cross-entropy or KL of zero logits does not depend on that head's input.
        zeros = torch_.zeros_like(t["cls_logits"])
        for name, (c_, d_) in {"base": (zeros, zeros), "cls_term": (t["cls_logits"], zeros),
                               "dist_term": (zeros, t["dist_logits"])}.items():
            try:
                with torch_.no_grad():
                    result[f"probe:{name}"] = h.tensor(fn(c_.clone(), d_.clone(), t["labels"].clone(),
                                                          t["teacher_logits"].clone(), **kwargs), what)
            except Exception:  # noqa: BLE001 - a probe is for the hint only
                pass
        return result
    if op == "distance":
        fn = h.need(D_, "mean_attention_distance", DF)
        grid = tuple(p["grid"])
        result = {"out": h.tensor(fn(t["attn"].clone(), grid, p["patch_size"], p["prefix"]), "mean_attention_distance")}
        try:  # a probe for the analysers (never scored): head j isolates query patch j
            probe = per_query_probe(t["attn"], grid, p["prefix"])
            result["probe:per_query"] = h.tensor(fn(probe, grid, p["patch_size"], p["prefix"]), "mean_attention_distance")
        except Exception:  # noqa: BLE001 - a probe is for the hint only
            pass
        return result
    raise ValueError(f"unknown case op {op!r}")


def _run_vit(D_, case: dict, h, torch_) -> dict:
    p, t = case["params"], case["tensors"]
    dtype = t["x"].dtype
    cfg = h.need(D_, "DeiTConfig", DF)(**_vit_config(p))
    model = h.need(D_, "DistilledViT", DF)(cfg).to(dtype)
    h.load(model, {k[2:]: v for k, v in t.items() if k.startswith("w.")}, "DistilledViT")
    seen = {}  # the tokens that enter the first block: the analysers read order and pos_embed mistakes from them

    def record(module, args) -> None:  # returns None: a pre-hook's return value would replace the input
        if args and type(args[0]) is torch_.Tensor:
            seen.setdefault("tokens", args[0].detach().clone())
    hook = model.blocks[0].register_forward_pre_hook(record) if len(getattr(model, "blocks", ())) else None
    result = {}
    model.train()
    train = model(t["x"])
    if isinstance(train, (tuple, list)) and len(train) == 2:
        cls, dist = h.tensor(train[0], "DistilledViT.forward (train mode)[0]"), h.tensor(
            train[1], "DistilledViT.forward (train mode)[1]")
        result.update(cls=cls, dist=dist)
        total = [(v * t[f"g.{k}"]).sum() for k, v in (("cls", cls), ("dist", dist)) if v.shape == t[f"g.{k}"].shape]
    else:  # one tensor in train mode: what the student returned, for the analysers
        single = h.tensor(train[0] if isinstance(train, (tuple, list)) and train else train,
                          "DistilledViT.forward (train mode)")
        result["probe:train_single"] = single.detach().clone()
        total = [(single * t["g.cls"]).sum()] if single.shape == t["g.cls"].shape else []
    if hook is not None:
        hook.remove()
    if "tokens" in seen:
        result["probe:tokens"] = seen["tokens"]
    if total and total[0].requires_grad:
        named = {k: getattr(model, k) for k in TOKEN_KEYS if type(getattr(model, k, None)) is torch_.nn.Parameter}
        result.update(h.grads(sum(total), named))
    model.eval()
    with torch_.no_grad():
        out = model(t["x"])
    if isinstance(out, (tuple, list)):  # the pair in eval mode: no `out`, a flag for the analysers
        result["probe:eval_pair"] = torch_.ones(1)
    else:
        result["out"] = h.tensor(out, "DistilledViT.forward (eval mode)")
    return result


# ------------------------------------------------------------------------------------ the grader's oracles
def _case_model(c: dict):
    """The reference DistilledViT (timm's blocks; tests/test_deit_grading.py holds it equal to timm's
    VisionTransformerDistilled) with the case's weights, in the case's dtype, in eval mode (the grader's process)."""
    from coursecore import impl

    ref = impl.load(impl.solutions_dir(), modules=("deit",)).deit
    t = c["tensors"]
    model = ref.DistilledViT(ref.DeiTConfig(**_vit_config(c["params"]))).to(t["x"].dtype)
    model.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("w.")})
    return model.eval()


TOKEN_ORDERS = {"cls_dist": ("cls", "dist", "patches"), "dist_cls": ("dist", "cls", "patches"),
                "patches_first": ("patches", "cls", "dist")}


@torch.no_grad()
def _vit_tokens(c: dict, order: str = "cls_dist", pos: str = "all", model=None) -> torch.Tensor:
    """The tokens that enter the first block, (B, N, D), with the prefix in `order` and pos_embed added as `pos`."""
    m = model or _case_model(c)
    x = c["tensors"]["x"]
    parts = {"patches": m.patch_embed(x), "cls": m.cls_token.expand(x.shape[0], -1, -1),
             "dist": m.dist_token.expand(x.shape[0], -1, -1)}
    if pos == "patches":  # positions for the patches only, added before the prefix tokens are joined
        parts["patches"] = parts["patches"] + m.pos_embed[:, PREFIX:]
    tokens = torch.cat([parts[k] for k in TOKEN_ORDERS[order]], dim=1)  # (B, N, D)
    return tokens + m.pos_embed * {"all": 1, "none": 0, "patches": 0, "twice": 2}[pos]


@torch.no_grad()
def _vit_heads(c: dict, order="cls_dist", pos="all", norm=True, read=(0, 1), heads="normal", model=None):
    """(cls_logits, dist_logits) of the case's model computed by hand with one catalogued mistake."""
    m = model or _case_model(c)
    y = m.blocks(_vit_tokens(c, order, pos, m))
    y = m.norm(y) if norm else y
    a, b = y[:, read[0]], y[:, read[1]]
    return (m.head_dist(a), m.head(b)) if heads == "swapped" else (m.head(a), m.head_dist(b))


def _vit_variant(key: str, eval_rule: str = "mean", **mistake):
    """DistilledViT.forward with one mistake: its 'cls' or 'dist' logits in train mode, or 'out' in eval mode
    (`eval_rule`: the mean of the heads, or 'cls', 'dist', 'sum')."""
    def compute(c):
        cls, dist = _vit_heads(c, **mistake)
        if key in ("cls", "dist"):
            return cls if key == "cls" else dist
        return {"mean": (cls + dist) / 2, "cls": cls, "dist": dist, "sum": cls + dist}[eval_rule]
    return compute


TRAIN_SINGLE_HINT = ("in train mode (model.train()) DistilledViT.forward returns one tensor: it must return the pair "
                     "(cls_logits, dist_logits), one per head, for the two terms of the distillation loss; the mean of "
                     "the two is for eval mode only (if self.training: ...)")
EVAL_PAIR_HINT = ("in eval mode (model.eval()) DistilledViT.forward returns the pair: at test time DeiT returns one "
                  "(B, K) tensor, the mean of the two heads' logits, (cls_logits + dist_logits) / 2 (if "
                  "self.training: ...)")

VIT_BUGS = (
    Bug("deit.token_order", "deit.DistilledViT.forward",
        "the tokens are in the order [dist_token, cls_token, patches]: DeiT's order is [cls_token, dist_token, patches] "
        "(pos_embed[:, 0] is the class token's position, self.head reads token 0 and self.head_dist token 1).",
        variant=_vit_variant("cls", order="dist_cls"), key="cls",
        mutation=("prefix = [self.cls_token.expand(B, -1, -1), self.dist_token.expand(B, -1, -1)]",
                  "prefix = [self.dist_token.expand(B, -1, -1), self.cls_token.expand(B, -1, -1)]")),
    Bug("deit.heads_swapped", "deit.DistilledViT.forward",
        "self.head reads the distillation token and self.head_dist the class token: cls_logits = self.head(x[:, 0]) "
        "(the class token), dist_logits = self.head_dist(x[:, 1]) (the distillation token).",
        variant=_vit_variant("cls", read=(1, 0)), key="cls",
        mutation=("self.head(x[:, 0]), self.head_dist(x[:, 1])", "self.head(x[:, 1]), self.head_dist(x[:, 0])")),
    Bug("deit.no_pos_embed", "deit.DistilledViT.forward",
        "self.pos_embed is not added: add it to the tokens [cls, dist, patches] (one position for each of the "
        "N = 2 + H'·W' tokens), before self.blocks.",
        variant=_vit_variant("cls", pos="none"), key="cls",
        mutation=("self.pos_drop(x + self.pos_embed)", "self.pos_drop(x)")),
    Bug("deit.eval_cls_only", "deit.DistilledViT.forward",
        "at test time (eval mode) only the class head's logits are returned: DeiT averages the two heads, "
        "(cls_logits + dist_logits) / 2.",
        variant=_vit_variant("out", "cls"),
        mutation=("return (cls_logits + dist_logits) / 2", "return cls_logits")),
    Bug("deit.eval_dist_only", "deit.DistilledViT.forward",
        "at test time (eval mode) only the distillation head's logits are returned: DeiT averages the two heads, "
        "(cls_logits + dist_logits) / 2.",
        variant=_vit_variant("out", "dist"),
        mutation=("return (cls_logits + dist_logits) / 2", "return dist_logits")),
    Bug("deit.eval_sum", "deit.DistilledViT.forward",
        "at test time the two heads' logits are added: DeiT takes their MEAN, (cls_logits + dist_logits) / 2 "
        "(the sum doubles every logit, and the softmax of the result is sharper).",
        variant=_vit_variant("out", "sum"),
        mutation=("return (cls_logits + dist_logits) / 2", "return cls_logits + dist_logits")),
    Bug("deit.train_returns_mean", "deit.DistilledViT.forward", TRAIN_SINGLE_HINT,
        mutation=("        if self.training:\n            return cls_logits, dist_logits", "        if False:\n"
                  "            return cls_logits, dist_logits")),
    Bug("deit.eval_returns_pair", "deit.DistilledViT.forward", EVAL_PAIR_HINT,
        mutation=("        if self.training:\n            return cls_logits, dist_logits", "        if True:\n"
                  "            return cls_logits, dist_logits")),
)


def _describe_vit(key, expected, actual, case, compare) -> Optional[str]:
    if actual is None and key in ("cls", "dist"):
        return "in train mode DistilledViT.forward returned one tensor, not the pair (cls_logits, dist_logits)"
    if actual is None and key == "out":
        return "in eval mode DistilledViT.forward returned a pair, not one (B, K) tensor"
    return compare(key, expected, actual)


def _vit_hypotheses(c: dict, key: str):
    """Every way of getting one or two pieces of the forward wrong, for the 'cls', 'dist' or 'tokens' quantity."""
    from coursecore.parts import analysers

    m = _case_model(c)
    out = []
    for picks, wrong in analysers.variants({
            "order": [("cls_dist", None), ("dist_cls", "the tokens are [dist_token, cls_token, patches]: the class "
                                                     "token comes first"),
                      ("patches_first", "the prefix tokens come after the patches: [cls_token, dist_token, patches]")],
            "pos": [("all", None), ("none", "self.pos_embed is not added"),
                    ("patches", "pos_embed is added to the patches only: the prefix tokens have positions too (add "
                                "self.pos_embed after the concatenation)"),
                    ("twice", "self.pos_embed is added twice")],
            "norm": [(True, None), (False, "self.norm is not applied after the blocks")],
            "read": [((0, 1), None), ((1, 0), "the heads read the wrong tokens: self.head reads token 0, "
                                              "self.head_dist token 1"),
                     ((0, 0), "self.head_dist reads token 0 (the class token): the distillation token is token 1"),
                     ((-1, -1), "the heads read the last token: the class token is token 0, the distillation token 1")],
            "heads": [("normal", None), ("swapped", "the heads are swapped: self.head makes cls_logits, self.head_dist "
                                                     "dist_logits")]}):
        if key == "tokens" and (picks["norm"] is not True or picks["read"] != (0, 1) or picks["heads"] != "normal"):
            continue
        if key == "tokens":
            value = _vit_tokens(c, picks["order"], picks["pos"], m)
        else:
            value = _vit_heads(c, model=m, **picks)[0 if key == "cls" else 1]
        out.append(("; ".join(wrong), value))
    return out


def _analyse_vit(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("deit.DistilledViT.forward", result.get("error", ""), c)]
    a = result["outputs"]
    found = []
    if "probe:train_single" in a:
        found.append(TRAIN_SINGLE_HINT)
    if "probe:eval_pair" in a:
        found.append(EVAL_PAIR_HINT)
    steps = [analysers.Step("the tokens that enter the first block ([cls_token, dist_token, patches] + pos_embed)",
                            expected.get("probe:tokens"), a.get("probe:tokens"), lambda: _vit_hypotheses(c, "tokens")),
             analysers.Step("cls_logits in train mode (self.head of token 0 after self.norm)", expected.get("cls"),
                            a.get("cls"), lambda: _vit_hypotheses(c, "cls")),
             analysers.Step("dist_logits in train mode (self.head_dist of token 1 after self.norm)", expected.get("dist"),
                            a.get("dist"), lambda: _vit_hypotheses(c, "dist"))]
    decomposed = analysers.decompose(steps)
    if decomposed:
        found.append(decomposed.message)
    elif "out" in a:
        cls, dist = expected.get("cls"), expected.get("dist")
        rules = [("only the class head's logits are returned: DeiT averages the two heads, (cls_logits + dist_logits) "
                  "/ 2", cls), ("only the distillation head's logits are returned: DeiT averages the two heads", dist),
                 ("the two heads' logits are added: DeiT takes their mean, (cls_logits + dist_logits) / 2",
                  None if cls is None else cls + dist)]
        eval_step = analysers.decompose([analysers.Step("the output in eval mode ((cls_logits + dist_logits) / 2)",
                                                        expected.get("out"), a.get("out"), lambda: rules)])
        if eval_step:
            found.append(eval_step.message)
    return found


# ------------------------------------------------------------------------------------ the losses
def _ce(logits, target):
    return F.cross_entropy(logits, target)


def _hard_by_parts(c: dict, cls=None, dist=None, cls_target="labels", dist_target="teacher", w_cls=0.5, w_dist=0.5):
    t = c["tensors"]
    cls = t["cls_logits"].double() if cls is None else cls
    dist = t["dist_logits"].double() if dist is None else dist
    teacher = t["teacher_logits"].double()
    targets = {"labels": t["labels"], "teacher": teacher.argmax(-1), "soft": teacher.softmax(-1),
               "argmin": teacher.argmin(-1)}
    return w_cls * _ce(cls, targets[cls_target]) + w_dist * _ce(dist, targets[dist_target])


def _hard_variant(**mistake):
    def compute(c):
        return _hard_by_parts(c, **mistake).to(c["tensors"]["cls_logits"].dtype)
    return compute


def _kl_term(c: dict, dist=None, teacher_grad=False, student_T="T", teacher_T="T", factor="T2", direction="ts",
             target="log", reduction="batchmean", weight="alpha", student_fn="log_softmax"):
    """α·T²·KL(p_t ‖ p_s) with the catalogued mistakes, from the case's logits (float64 unless `dist` is given)."""
    t, p = c["tensors"], c["params"]
    T, alpha = p["T"], p["alpha"]
    dist = t["dist_logits"].double() if dist is None else dist
    teacher = t["teacher_logits"].double()
    temps = {"T": T, "1": 1.0, "T2": T * T}
    s = dist / temps[student_T]
    s = F.log_softmax(s, -1) if student_fn == "log_softmax" else F.softmax(s, -1)
    tt = F.log_softmax(teacher / temps[teacher_T], -1)
    if target == "probs":  # probabilities given where log-probabilities are expected (log_target=True)
        tt = tt.exp()
    first, second = (s, tt) if direction == "ts" else (tt, s)
    with warnings.catch_warnings():  # reduction='mean' is a catalogued mistake: torch warns about it
        warnings.simplefilter("ignore")
        kl = F.kl_div(first, second, reduction=reduction, log_target=target != "nolog")
    w = {"alpha": alpha, "1-alpha": 1 - alpha, "1": 1.0}[weight]
    return w * {"T2": T * T, "1": 1.0, "T": T, "T4": T ** 4}[factor] * kl


def _soft_by_parts(c: dict, cls=None, dist=None, cls_weight="1-alpha", **kl):
    t, p = c["tensors"], c["params"]
    cls = t["cls_logits"].double() if cls is None else cls
    w = {"1-alpha": 1 - p["alpha"], "alpha": p["alpha"], "1": 1.0}[cls_weight]
    return w * _ce(cls, t["labels"]) + _kl_term(c, dist, **kl)


def _soft_variant(**mistake):
    def compute(c):
        return _soft_by_parts(c, **mistake).to(c["tensors"]["cls_logits"].dtype)
    return compute


def _soft_teacher_grad(c: dict):
    """The gradient that reaches teacher_logits when the teacher is not detached (the scalar cotangent g times it)."""
    t, p = c["tensors"], c["params"]
    T = p["T"]
    with torch.enable_grad():  # the grader diagnoses under torch.no_grad()
        teacher = t["teacher_logits"].double().requires_grad_(True)
        kl = F.kl_div(F.log_softmax(t["dist_logits"].double() / T, -1), F.log_softmax(teacher / T, -1),
                      reduction="batchmean", log_target=True)
        (grad,) = torch.autograd.grad(p["alpha"] * T * T * kl * t["g"].double(), teacher)
    return grad.to(t["teacher_logits"].dtype)


HARD = "deit.hard_distillation_loss"
SOFT = "deit.soft_distillation_loss"
LOSS_BUGS = (
    Bug("deit.hard.heads_swapped", HARD,
        "the class head learns the teacher's labels and the distillation head the true labels: it is the other way "
        "round, CE(cls_logits, labels) + CE(dist_logits, teacher_logits.argmax(-1)), each weighted ½.",
        variant=_hard_variant(cls_target="teacher", dist_target="labels"),
        mutation=("0.5 * F.cross_entropy(cls_logits, labels) + 0.5 * F.cross_entropy(dist_logits, teacher_labels)",
                  "0.5 * F.cross_entropy(cls_logits, teacher_labels) + 0.5 * F.cross_entropy(dist_logits, labels)")),
    Bug("deit.hard.dist_learns_labels", HARD,
        "the distillation head learns the true labels: its target is the teacher's hard label, "
        "teacher_logits.argmax(dim=-1), which is what makes it a distillation token.",
        variant=_hard_variant(dist_target="labels"),
        mutation=("0.5 * F.cross_entropy(dist_logits, teacher_labels)", "0.5 * F.cross_entropy(dist_logits, labels)")),
    Bug("deit.hard.soft_targets", HARD,
        "the distillation head's target is the teacher's softmax: HARD distillation uses the teacher's decision, "
        "teacher_logits.argmax(dim=-1), one class index per image (the soft version is soft_distillation_loss).",
        variant=_hard_variant(dist_target="soft"),
        mutation=("teacher_logits.detach().argmax(dim=-1)", "teacher_logits.detach().softmax(dim=-1)")),
    Bug("deit.hard.no_half", HARD,
        "the two cross-entropies are added with weight 1 each: the loss is their mean, ½·CE(cls_logits, labels) + "
        "½·CE(dist_logits, teacher's labels).",
        variant=_hard_variant(w_cls=1.0, w_dist=1.0),
        mutation=("return 0.5 * F.cross_entropy(cls_logits, labels) + 0.5 * F.cross_entropy(",
                  "return F.cross_entropy(cls_logits, labels) + F.cross_entropy(")),
    Bug("deit.soft.temperature_twice", SOFT,
        "the logits are divided by T twice (the temperature is applied twice): divide dist_logits and teacher_logits "
        "by T once, right before the log_softmax.",
        variant=_soft_variant(student_T="T2", teacher_T="T2"),
        mutation=("/ T, dim=-1)", "/ T / T, dim=-1)")),
    Bug("deit.soft.no_t_squared", SOFT,
        "the KL term is not multiplied by T²: softening by T shrinks its gradients by 1/T², and the factor T·T keeps "
        "the teacher's term on the scale of the labels' one (Hinton et al., 2015).",
        variant=_soft_variant(factor="1"), mutation=(" * (T * T)", "")),
    Bug("deit.soft.kl_reversed", SOFT,
        "the KL is reversed, KL(student ‖ teacher): F.kl_div(input, target) computes KL(target ‖ input), so the "
        "student's log-probabilities go first and the teacher's second.",
        variant=_soft_variant(direction="st"),
        mutation=("F.kl_div(student, teacher,", "F.kl_div(teacher, student,")),
    Bug("deit.soft.log_target_false", SOFT,
        "F.kl_div gets the teacher's LOG-probabilities with log_target=False, so it reads them as probabilities "
        "(negative: the loss is NaN). Pass log_target=True, or give it softmax probabilities.",
        variant=_soft_variant(target="nolog"), mutation=("log_target=True)", "log_target=False)")),
    Bug("deit.soft.probs_with_log_target", SOFT,
        "F.kl_div gets the teacher's probabilities (softmax) with log_target=True, which reads them as "
        "log-probabilities: use F.log_softmax for the teacher when log_target=True.",
        variant=_soft_variant(target="probs"),
        mutation=("teacher = F.log_softmax(teacher_logits", "teacher = F.softmax(teacher_logits")),
    Bug("deit.soft.alpha_swapped", SOFT,
        "the weights are swapped: (1 − alpha) goes with the labels' cross-entropy and alpha with the teacher's KL "
        "term.", variant=_soft_variant(cls_weight="alpha", weight="1-alpha"),
        mutation=("(1 - alpha) * F.cross_entropy(cls_logits, labels) + alpha * kl",
                  "alpha * F.cross_entropy(cls_logits, labels) + (1 - alpha) * kl")),
    Bug("deit.soft.reduction_mean", SOFT,
        "the KL is averaged over all B·K entries (reduction='mean'): KL is a sum over the classes, averaged over the "
        "batch, reduction='batchmean'.", variant=_soft_variant(reduction="mean"),
        mutation=('reduction="batchmean"', 'reduction="mean"')),
    Bug("deit.soft.softmax_input", SOFT,
        "F.kl_div's first argument must be LOG-probabilities: F.log_softmax(dist_logits / T, dim=-1), not F.softmax.",
        variant=_soft_variant(student_fn="softmax"),
        mutation=("student = F.log_softmax(dist_logits", "student = F.softmax(dist_logits")),
    Bug("deit.soft.teacher_not_detached", SOFT,
        "a gradient flows into teacher_logits: the teacher is fixed, use teacher_logits.detach() (or compute the "
        "teacher's logits under torch.no_grad()).",
        variant=_soft_teacher_grad, key="grad:teacher_logits",
        mutation=("teacher_logits.detach() / T", "teacher_logits / T")),
)

# The hard loss's teacher gets no gradient through argmax whatever the code: its gradient is checked with the others.
# The soft loss's is a mistake of its own (a third of the credit).
HARD_CHECKS = {"values": ("out",), "gradients": ("grad:cls_logits", "grad:dist_logits", "grad:teacher_logits")}
SOFT_CHECKS = {"values": ("out",), "gradients": ("grad:cls_logits", "grad:dist_logits"),
               "teacher fixed": ("grad:teacher_logits",)}


def _describe_loss(key, expected, actual, case, compare) -> Optional[str]:
    if key == "grad:teacher_logits" and type(actual) is torch.Tensor and actual.shape == expected.shape \
            and actual.abs().max() > 0:
        return "a gradient reaches teacher_logits: the teacher is fixed (teacher_logits.detach())"
    if key == "out" and type(actual) is torch.Tensor and actual.numel() != 1:
        return (f"the loss has shape {tuple(actual.shape)}: it is one number (a 0-dim tensor), each term averaged "
                "over the batch")
    return compare(key, expected, actual)


def _terms(expected: dict, a: dict) -> tuple:
    """The two heads' terms read from the probes: (your loss with the other head's logits zero) − (both zero)."""
    def term(outputs, name):
        base, value = outputs.get("probe:base"), outputs.get(f"probe:{name}")
        ok = type(base) is torch.Tensor and type(value) is torch.Tensor and base.shape == value.shape
        return value.double() - base.double() if ok else None
    return ((term(expected, "cls_term"), term(a, "cls_term")), (term(expected, "dist_term"), term(a, "dist_term")))


def _zero_diff(fn, c, which: str):
    """fn(logits) − fn(zero logits) for one head: how a hypothesis's term shows in the probes."""
    t = c["tensors"]
    x = t[f"{which}_logits"].double()
    return fn(x) - fn(torch.zeros_like(x))


def _hard_term_hypotheses(c: dict, which: str):
    from coursecore.parts import analysers

    right = "labels" if which == "cls" else "teacher"
    names = {"labels": "the true labels", "teacher": "the teacher's argmax", "soft": "the teacher's softmax (soft "
             "labels)", "argmin": "the teacher's argmin"}
    out = []
    for picks, wrong in analysers.variants({
            "target": [(right, None), *((k, f"its target is {names[k]}, not {names[right]}") for k in names
                                       if k != right)],
            "weight": [(0.5, None), (1.0, "its weight is 1, not ½")]}):
        def fn(x, picks=picks):
            t = c["tensors"]
            teacher = t["teacher_logits"].double()
            target = {"labels": t["labels"], "teacher": teacher.argmax(-1), "soft": teacher.softmax(-1),
                      "argmin": teacher.argmin(-1)}[picks["target"]]
            return picks["weight"] * _ce(x, target)
        out.append(("; ".join(wrong), _zero_diff(fn, c, which)))
    return out


def _soft_term_hypotheses(c: dict, which: str):
    from coursecore.parts import analysers

    if which == "cls":
        p = c["params"]
        return [(f"its weight is {label}, not 1 − alpha", _zero_diff(lambda x, w=w: w * _ce(x, c["tensors"]["labels"]),
                                                                     c, "cls"))
                for label, w in (("alpha", p["alpha"]), ("1", 1.0))]
    out = []
    for picks, wrong in analysers.variants({
            "student_T": [("T", None), ("1", "dist_logits are not divided by T"),
                          ("T2", "dist_logits are divided by T twice")],
            "teacher_T": [("T", None), ("1", "teacher_logits are not divided by T"),
                          ("T2", "teacher_logits are divided by T twice")],
            "factor": [("T2", None), ("1", "the T² factor is missing"), ("T", "it is multiplied by T, not T²"),
                       ("T4", "T² is applied twice")],
            "direction": [("ts", None), ("st", "the KL is reversed (F.kl_div(input=student log-probs, target=teacher))")],
            "target": [("log", None), ("probs", "the teacher's probabilities are passed with log_target=True"),
                       ("nolog", "the teacher's log-probabilities are passed with log_target=False")],
            "reduction": [("batchmean", None), ("mean", "reduction='mean' averages over B·K, not 'batchmean'"),
                          ("sum", "reduction='sum' is not averaged over the batch")],
            "weight": [("alpha", None), ("1-alpha", "its weight is 1 − alpha, not alpha"),
                       ("1", "its weight alpha is missing")],
            "student_fn": [("log_softmax", None), ("softmax", "the student's input is softmax, not log_softmax")]}):
        out.append(("; ".join(wrong), _zero_diff(lambda x, picks=picks: _kl_term(c, x, **picks), c, "dist")))
    return out


def _analyse_loss(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    part = HARD if c["op"] == "hard" else SOFT
    if not result.get("ok"):
        return [_error_hint(part, result.get("error", ""), c)]
    a = result["outputs"]
    (cls_e, cls_a), (dist_e, dist_a) = _terms(expected, a)
    hyps = _hard_term_hypotheses if c["op"] == "hard" else _soft_term_hypotheses
    cls_what, dist_what = (("the class head's term, ½·CE(cls_logits, labels)", "the distillation head's term, "
                            "½·CE(dist_logits, teacher_logits.argmax(-1))") if c["op"] == "hard" else
                           ("the class head's term, (1 − alpha)·CE(cls_logits, labels)", "the distillation head's "
                            "term, alpha·T²·KL(softmax(teacher/T) ‖ softmax(dist/T))"))
    found = analysers.decompose([
        analysers.Step(f"{cls_what} (your loss with dist_logits set to zero)", cls_e, cls_a, lambda: hyps(c, "cls")),
        analysers.Step(f"{dist_what} (your loss with cls_logits set to zero)", dist_e, dist_a, lambda: hyps(c, "dist")),
        analysers.Step("the loss", expected.get("out"), a.get("out"), name_unexplained=False)])
    if found:
        return [found.message]
    grad = a.get("grad:teacher_logits")
    if type(grad) is torch.Tensor and grad.abs().max() > 0:
        return ["a gradient reaches teacher_logits: the teacher is fixed, detach it (teacher_logits.detach())"]
    return []


# ------------------------------------------------------------------------------------ attention distance
PREFIX_WAYS = {
    "drop": None,
    "no_renorm": "the rows are not renormalised after dropping the prefix tokens as keys (each query's weights over "
                 "the patches must sum to 1 again)",
    "padded": "the prefix tokens are counted as queries and as keys at distance 0 (drop them both ways: "
              "attn[:, :, p:, p:], p = num_prefix_tokens, then renormalise the rows)",
    "query": "the prefix tokens are counted as queries (the mean runs over N tokens, not the H'·W' patches)",
    "index": "the positions come from the token index with the prefix tokens counted (patch k is token p + k: its "
             "position on the grid is k's)",
}


def distance_variant(attn, grid, P: int, prefix: int, units="px", metric="euclid", order="row", way="drop",
                     reduce="mean") -> torch.Tensor:
    """mean_attention_distance with the catalogued mistakes, in float64."""
    a = attn.double()
    gh, gw = grid
    M = gh * gw
    idx = torch.arange(M) + (prefix if way == "index" else 0)
    r, col = (idx // gw, idx % gw) if order == "row" else (idx % gh, idx // gh)
    pos = torch.stack([r, col], -1).double() * (P if units == "px" else 1)  # (H'·W', 2)
    diff = pos[:, None] - pos[None]  # (H'·W', H'·W', 2)
    dist = {"euclid": diff.norm(dim=-1), "manhattan": diff.abs().sum(-1), "squared": (diff ** 2).sum(-1),
            "max": diff.abs().amax(-1)}[metric]
    if way in ("drop", "index", "no_renorm"):
        w = a[..., prefix:, prefix:]
        w = w if way == "no_renorm" else w / w.sum(-1, keepdim=True)
        per = (w * dist).sum(-1)  # (B, h, H'·W')
    elif way == "padded":
        per = (a * F.pad(dist, (prefix, 0, prefix, 0))).sum(-1)  # (B, h, N)
    else:  # "query": prefix queries kept, at distance 0 from every patch
        w = a[..., prefix:]
        per = (w / w.sum(-1, keepdim=True) * F.pad(dist, (0, 0, prefix, 0))).sum(-1)  # (B, h, N)
    return per.mean((0, 2)) if reduce == "mean" else per.sum(-1).mean(0)


def _distance_bug(**mistake):
    def compute(c):
        t, p = c["tensors"], c["params"]
        return distance_variant(t["attn"], tuple(p["grid"]), p["patch_size"], p["prefix"], **mistake).to(t["attn"].dtype)
    return compute


MAD = "deit.mean_attention_distance"
_ROWS = "    rows = torch.arange(gh, device=attn.device).repeat_interleave(gw)  # (H'·W',): patches row by row\n"
_COLS = "    cols = torch.arange(gw, device=attn.device).repeat(gh)\n"
_POS = "    pos = torch.stack([rows, cols], dim=-1).to(attn.dtype) * patch_size  # (H'·W', 2) in pixels\n"
_DIST = "    dist = (pos[:, None] - pos[None]).norm(dim=-1)  # (H'·W', H'·W'): Euclidean, exactly 0 on the diagonal\n"
_SLICE = "    a = attn[:, :, num_prefix_tokens:, num_prefix_tokens:]  # (B, h, H'·W', H'·W'): patches only\n"
_RENORM = "    a = a / a.sum(dim=-1, keepdim=True)  # each query's weights over the patches sum to 1 again\n"
DISTANCE_BUGS = (
    Bug("deit.distance.patches", MAD,
        "the distance is in patches, not pixels: multiply each patch's (row, column) by patch_size before taking "
        "distances (the ViT paper's Fig. 7 is in pixels, so models with different patch sizes compare).",
        variant=_distance_bug(units="patches"),
        mutation=(".to(attn.dtype) * patch_size", ".to(attn.dtype)")),
    Bug("deit.distance.not_renormalised", MAD,
        "after dropping the prefix tokens (class / distillation) as keys, each query's weights over the patches no "
        "longer sum to 1: divide each row by its sum (keepdim=True) before weighting the distances.",
        variant=_distance_bug(way="no_renorm"), mutation=(_RENORM, "")),
    Bug("deit.distance.prefix_counted", MAD,
        "the class / distillation tokens are counted, as queries and as keys at distance 0: drop them both ways, "
        "attn[:, :, p:, p:] with p = num_prefix_tokens, and renormalise the rows over the patches.",
        variant=_distance_bug(way="padded"),
        mutation=(_SLICE + _RENORM + _ROWS + _COLS + _POS + _DIST,
                  "    a = attn\n" + _ROWS + _COLS + _POS + _DIST
                  + "    dist = F.pad(dist, (num_prefix_tokens, 0, num_prefix_tokens, 0))\n")),
    Bug("deit.distance.prefix_queries", MAD,
        "the class / distillation tokens are counted as queries: drop the first num_prefix_tokens rows too "
        "(attn[:, :, p:, p:]), so the mean runs over the H'·W' patch queries only.",
        variant=_distance_bug(way="query"),
        mutation=(_SLICE + _RENORM + _ROWS + _COLS + _POS + _DIST,
                  "    a = attn[:, :, :, num_prefix_tokens:]\n" + _RENORM + _ROWS + _COLS + _POS + _DIST
                  + "    dist = F.pad(dist, (0, 0, num_prefix_tokens, 0))\n")),
    Bug("deit.distance.manhattan", MAD,
        "the distance between two patches is Euclidean, sqrt(Δrow² + Δcol²) (times patch_size), not |Δrow| + |Δcol| "
        "(Manhattan).", variant=_distance_bug(metric="manhattan"),
        mutation=("(pos[:, None] - pos[None]).norm(dim=-1)", "(pos[:, None] - pos[None]).abs().sum(dim=-1)")),
    Bug("deit.distance.grid_transposed", MAD,
        "the patch grid is read column by column: patch i sits at row i // W', column i % W' (patches row by row, "
        "W' = grid[1] columns).", variant=_distance_bug(order="col"),
        mutation=(_ROWS + _COLS, _ROWS.replace("repeat_interleave(gw)", "repeat(gw)")
                  + _COLS.replace("repeat(gh)", "repeat_interleave(gh)"))),
)


def _distance_hypotheses(attn, c: dict):
    from coursecore.parts import analysers

    p = c["params"]
    out = []
    for picks, wrong in analysers.variants({
            "units": [("px", None), ("patches", "the distances are in patches, not pixels (times patch_size)")],
            "metric": [("euclid", None), ("manhattan", "the distance is Manhattan, |Δrow| + |Δcol|, not Euclidean"),
                       ("squared", "the distance is squared (no square root)"),
                       ("max", "the distance is max(|Δrow|, |Δcol|), not Euclidean")],
            "order": [("row", None), ("col", "the grid is read column by column: patch i is at row i // W', column "
                                             "i % W'")],
            "way": [(k, v) for k, v in PREFIX_WAYS.items()],
            "reduce": [("mean", None), ("sum", "the distances are summed over the query patches, not averaged")]}):
        out.append(("; ".join(wrong), distance_variant(attn, tuple(p["grid"]), p["patch_size"], p["prefix"], **picks)))
    return out


def _analyse_distance(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint(MAD, result.get("error", ""), c)]
    a, t, p = result["outputs"], c["tensors"], c["params"]
    probe = per_query_probe(t["attn"], tuple(p["grid"]), p["prefix"])
    found = analysers.decompose([
        analysers.Step("each query patch's distance, Σ_k a[q, k]·‖pos(q) − pos(k)‖ in pixels (your function on "
                       "attention where only one query per head looks beyond itself)", expected.get("probe:per_query"),
                       a.get("probe:per_query"), lambda: _distance_hypotheses(probe, c)),
        analysers.Step("the mean over images and query patches", expected.get("out"), a.get("out"),
                       lambda: _distance_hypotheses(t["attn"], c))])
    return [found.message] if found else []


def _error_hint(part: str, message: str, c: dict) -> str:
    from coursecore.parts import analysers

    return analysers.explain_error(message, part, c.get("sizes", {})) or ""


BUGS = VIT_BUGS + LOSS_BUGS + DISTANCE_BUGS
grader("deit.DistilledViT.forward", cases=_vit_cases, run=_run, analyse=_analyse_vit, describe=_describe_vit,
       checks={"train": ("cls", "dist"), "eval": ("out",), "gradients": tuple(f"grad:{k}" for k in TOKEN_KEYS)},
       bugs=[b for b in BUGS if b.part == "deit.DistilledViT.forward"])
grader(HARD, cases=lambda ref: _loss_cases("hard"), run=_run, analyse=_analyse_loss, describe=_describe_loss,
       checks=HARD_CHECKS, bugs=[b for b in BUGS if b.part == HARD])
grader(SOFT, cases=lambda ref: _loss_cases("soft"), run=_run, analyse=_analyse_loss, describe=_describe_loss,
       checks=SOFT_CHECKS, bugs=[b for b in BUGS if b.part == SOFT])
grader(MAD, cases=_distance_cases, run=_run, analyse=_analyse_distance, bugs=DISTANCE_BUGS)
### END GRADER
