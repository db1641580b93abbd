"""Student self-check: which parts of my transformer.py / ViT.py / finetune.py / cnn.py look done? (no hidden reference)

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

Run `python -m vitcourse check [FOLDER]`, or in a notebook::

    from vitcourse.course.selfcheck import check_all, format_results
    print(format_results(check_all(".")))

Every check uses a public oracle only: a torch built-in (`F.scaled_dot_product_attention`, `F.unfold`,
`F.conv2d`), an identity the docstrings promise (merge_heads inverts split_heads, fused == manual), or a
property (rows sum to 1, shapes, every parameter gets a gradient). Passing it does not guarantee full marks:
the grader uses more sizes and configurations. This module imports only torch and the student's files, so
it ships to students without the grader.
"""
from __future__ import annotations

import importlib.util
import math
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from coursecore.parts import analysers
from coursecore.parts.finetune import centre_edge_by_hand
from coursecore.registry import MODULE_NAMES

OK, TODO, WRONG, UNCHECKED = "ok", "not done", "wrong", "no check"
ATOL, RTOL = 1e-5, 1e-4  # float32 tolerances of every comparison below


@dataclass
class Result:
    part: str
    status: str
    message: str = ""


def load_modules(folder: str | Path, names) -> dict:
    """Import the student modules `names` (in import order) from `folder`; {name: module}."""
    folder = Path(folder).resolve()
    saved = {n: sys.modules.pop(n) for n in MODULE_NAMES if n in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        mods = {}
        for name in names:
            spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            mods[name] = module
        return mods
    finally:
        sys.path.remove(str(folder))
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def load_student(folder: str | Path):
    """Import transformer.py and ViT.py from `folder` (ViT.py does `from transformer import ...`)."""
    mods = load_modules(folder, ("transformer", "ViT"))
    return mods["transformer"], mods["ViT"]


def _close(name: str, actual, expected, part: str = "", sizes: dict | None = None, key: str = "out") -> None:
    """Raise what differs, with the analysers' reading of the error when one of them is sure."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name} is a {type(actual).__name__}, expected a torch.Tensor")
    if actual.shape == expected.shape and torch.allclose(actual, expected, RTOL, ATOL):
        return
    found = analysers.analyse_part(part, {key: expected}, {key: actual.detach()}, sizes or {}) if part else []
    hint = f" Hint: {found[0].message}" if found else ""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.{hint}")
    err = (actual - expected).abs().max().item()
    raise AssertionError(f"{name} differs from the oracle by up to {err:.3g}.{hint}")


# ----------------------------------------------------------------------------------------- checks
def _attention(T, V):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    mask = torch.rand(2, 3, 5, 5, generator=g) > 0.3
    mask |= torch.eye(5, dtype=torch.bool)
    eye = torch.eye(5).expand(2, 3, 5, 5)
    for m in (None, mask):
        out, weights = T.attention(q, k, v, m)
        # The built-in attending to the identity matrix returns the correct weights themselves.
        want_w = F.scaled_dot_product_attention(q, k, eye, attn_mask=m)
        found = analysers.analyse_part("transformer.attention", {"weights": want_w, "out": eye},
                                       {"weights": weights.detach(), "out": eye}, {"B": 2, "h": 3, "N": 5, "d": 4},
                                       {"mask": m})
        if found:
            raise AssertionError(f"the attention weights are wrong. Hint: {found[0].message}")
        _close("out", out, F.scaled_dot_product_attention(q, k, v, attn_mask=m), "transformer.attention",
               {"B": 2, "h": 3, "N": 5, "d": 4})
        _close("each row of weights (sum over keys)", weights.sum(-1), torch.ones(2, 3, 5))
        if m is not None and weights.masked_select(~m).abs().max() > 0:
            raise AssertionError("weights where the mask is False must be exactly 0")


def _heads(T, V):
    attn = T.Attention(12, num_heads=3)
    x = torch.randn(2, 5, 12)
    split = attn.split_heads(x)
    _close("split_heads(x)", split, torch.stack([x[..., i * 4:(i + 1) * 4] for i in range(3)], dim=1),
           "transformer.Attention.split_heads", {"B": 2, "N": 5, "D": 12, "h": 3})
    return split


def _merge(T, V):
    attn = T.Attention(12, num_heads=3)
    x = torch.randn(2, 3, 5, 4)
    _close("merge_heads(x)", attn.merge_heads(x), torch.cat(list(x.unbind(1)), dim=-1),
           "transformer.Attention.merge_heads", {"B": 2, "N": 5, "D": 12, "h": 3})


def _attention_forward(T, V):
    attn = T.Attention(12, num_heads=3).eval()
    x = torch.randn(2, 5, 12)
    fused = attn(x)
    attn.fused_attn = False
    _close("manual path vs fused path", attn(x), fused)


def _mlp(T, V):
    mlp = T.Mlp(12, 20, "gelu", drop=0.5).eval()
    x = torch.randn(2, 5, 12)
    _close("Mlp(x) in eval", mlp(x), mlp.fc2(mlp.act(mlp.fc1(x))))


def _block(T, V):
    block = T.Block(12, 3, mlp_ratio=2.0).eval()
    x = torch.randn(2, 5, 12, requires_grad=True)
    out = block(x)
    _close("Block(x) shape", out.detach(), out.detach().new_zeros(2, 5, 12) + out.detach())
    out.sum().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None]
    if missing:
        raise AssertionError(f"no gradient reached {missing}")
    with torch.no_grad():  # zero sublayer outputs: the residual branches must give x back
        for layer in (block.attn.proj, block.mlp.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
    _close("Block(x) with zeroed sublayers (residuals)", block(x).detach(), x.detach())


def _unfold_patches(x: torch.Tensor, P: int) -> torch.Tensor:
    """patchify's layout from F.unfold: (B, C, H, W) -> (B, N, P·P·C), values (row, column, channel)."""
    B, C = x.shape[:2]
    cols = F.unfold(x, P, stride=P)  # (B, C·P·P, N), values in (C, P, P) order
    return cols.reshape(B, C, P * P, -1).permute(0, 3, 2, 1).reshape(B, -1, P * P * C)  # (B, N, P·P·C)


def _patchify(T, V):
    x = torch.randn(2, 3, 8, 12)
    _close("patchify(x)", V.patchify(x, 4), _unfold_patches(x, 4), "ViT.patchify",
           {"B": 2, "C": 3, "H": 8, "W": 12, "P": 4})


def _unpatchify(T, V):
    x = torch.randn(2, 3, 8, 12)
    _close("unpatchify(patches of x)", V.unpatchify(_unfold_patches(x, 4), 4, (8, 12)), x, "ViT.unpatchify",
           {"B": 2, "C": 3, "H": 8, "W": 12, "P": 4})


def _sincos_1d(T, V):
    n, D = 5, 12
    table = torch.tensor([[math.sin(p * 10000 ** (-(c - c % 2) / D)) if c % 2 == 0 else
                           math.cos(p * 10000 ** (-(c - c % 2) / D)) for c in range(D)] for p in range(n)])
    emb = V.sincos_1d_embedding(n, D)
    _close("sincos_1d_embedding(5, 12)", emb, table, "ViT.sincos_1d_embedding", {"n": n, "D": D})
    if emb.dtype != torch.float32:
        raise AssertionError(f"dtype is {emb.dtype}, expected torch.float32")


def _sincos_1d_oracle(n: int, D: int) -> torch.Tensor:
    return torch.tensor([[math.sin(p * 10000 ** (-(c - c % 2) / D)) if c % 2 == 0 else
                          math.cos(p * 10000 ** (-(c - c % 2) / D)) for c in range(D)] for p in range(n)])


def _sincos_2d(T, V):
    gh, gw, D = 3, 5, 12
    # A correct 1-D table underneath (the formula), so that a wrong sincos_1d_embedding is not blamed here.
    saved = V.sincos_1d_embedding
    V.sincos_1d_embedding = _sincos_1d_oracle
    try:
        got = V.sincos_2d_embedding(gh, gw, D)
    finally:
        V.sincos_1d_embedding = saved
    rows, cols = _sincos_1d_oracle(gh, D // 2), _sincos_1d_oracle(gw, D // 2)
    oracle = torch.stack([torch.cat([rows[n // gw], cols[n % gw]]) for n in range(gh * gw)])
    _close("sincos_2d_embedding(3, 5, 12)", got, oracle, "ViT.sincos_2d_embedding", {"grid_h": gh, "grid_w": gw, "D": D})


def _patch_embed(T, V):
    embed = V.PatchEmbed((8, 12), 4, 3, 10)
    x = torch.randn(2, 3, 8, 12)
    w = embed.proj.weight.permute(0, 2, 3, 1).reshape(10, -1)  # (D, P·P·C), patchify's order
    with torch.no_grad():  # F.unfold's patches, not the student's patchify: each part is checked alone
        oracle = _unfold_patches(x, 4) @ w.T + embed.proj.bias
        _close("PatchEmbed(x) vs patches @ Wᵀ + b", embed(x), oracle, "ViT.PatchEmbed.forward",
               {"B": 2, "C": 3, "H": 8, "W": 12, "P": 4, "D": 10})


class _UnfoldEmbed(torch.nn.Module):
    """The patch embedding through F.unfold: checks forward_features without the student's PatchEmbed."""

    def __init__(self, proj, P):
        super().__init__()
        self.proj, self.P = proj, P

    def forward(self, x):
        w = self.proj.weight.permute(0, 2, 3, 1).reshape(self.proj.weight.shape[0], -1)
        return _unfold_patches(x, self.P) @ w.T + self.proj.bias


class _TorchBlock(torch.nn.Module):
    """A pre-norm block of torch built-ins (nn.MultiheadAttention): checks forward_features alone."""

    def __init__(self, D, h):
        super().__init__()
        self.norm1, self.norm2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
        self.attn = torch.nn.MultiheadAttention(D, h, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, 2 * D), torch.nn.GELU(), torch.nn.Linear(2 * D, D))

    def forward(self, x, mask=None):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def _features(T, V):
    model = V.ViT(image_size=(8, 12), patch_size=4, in_chans=3, embed_dim=12, depth=1, num_heads=3,
                  num_classes=5).eval()
    model.patch_embed = _UnfoldEmbed(model.patch_embed.proj, 4)
    model.blocks = torch.nn.ModuleList([_TorchBlock(12, 3).eval()])
    x = torch.randn(2, 3, 8, 12)
    try:
        tokens = model.forward_features(x)
    except NotImplementedError:
        raise
    except RuntimeError as err:
        hint = analysers.explain_error(str(err), "ViT.ViT.forward_features", {"B": 2})
        raise AssertionError(f"forward_features raised {type(err).__name__}: {str(err).splitlines()[0].rstrip('.')}"
                             + (f". Hint: {hint}" if hint else "")) from None
    if tuple(tokens.shape) != (2, 7, 12):
        raise AssertionError(f"forward_features returned shape {tuple(tokens.shape)}, expected (2, 7, 12)")
    with torch.no_grad():
        seq = torch.cat([model.cls_token.expand(2, -1, -1), model.patch_embed(x)], dim=1) + model.pos_embed
        want = model.norm(model.blocks[0](seq))
    _close("forward_features(x) vs class token, positions, blocks, norm", tokens.detach(), want)
    logits = model(x)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise AssertionError(f"no gradient reached {missing[:3]}")


def _model(T, V):
    model = V.ViT(image_size=8, patch_size=4, in_chans=1, embed_dim=8, depth=2, num_heads=2, num_classes=4,
                  pos_embed="sincos2d").eval()
    x = torch.randn(2, 1, 8, 8)
    fused = model(x)
    for block in model.blocks:
        block.attn.fused_attn = False
    _close("logits, manual vs fused attention", model(x), fused)


CHECKS = {
    "transformer.attention": _attention,
    "transformer.Attention.split_heads": _heads,
    "transformer.Attention.merge_heads": _merge,
    "transformer.Attention.forward": _attention_forward,
    "transformer.Mlp.forward": _mlp,
    "transformer.Block.forward": _block,
    "ViT.patchify": _patchify,
    "ViT.unpatchify": _unpatchify,
    "ViT.sincos_1d_embedding": _sincos_1d,
    "ViT.sincos_2d_embedding": _sincos_2d,
    "ViT.PatchEmbed.forward": _patch_embed,
    "ViT.ViT.forward_features": _features,
    "ViT.model": _model,
}


# ----------------------------------------------------------------------------------------- finetune.py
def _toy_vit(depth: int = 3, dim: int = 4) -> torch.nn.Module:
    """The module tree of a timm ViT (cls_token, pos_embed, patch_embed with a BatchNorm, pos_drop, blocks,
    norm, head_drop, head), tiny and never run: what set_trainable reads."""
    from torch import nn

    m = nn.Module()
    m.cls_token, m.pos_embed = nn.Parameter(torch.zeros(1, 1, dim)), nn.Parameter(torch.zeros(1, 5, dim))
    m.patch_embed = nn.Module()
    m.patch_embed.proj, m.patch_embed.norm = nn.Conv2d(3, dim, 2, 2), nn.BatchNorm2d(dim)
    m.pos_drop = nn.Dropout(0.1)
    m.blocks = nn.Sequential(*(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Dropout(0.1))
                               for _ in range(depth)))
    m.norm, m.head_drop, m.head = nn.LayerNorm(dim), nn.Dropout(0.1), nn.Linear(dim, 3)
    return m


def _set_trainable(F_):
    """Each mode by its definition: which parameters learn, and that the returned subtrees cover exactly the
    frozen leaf modules."""
    for mode, learning in (("head", ("head",)), ("partial", ("blocks.2", "norm", "head")), ("full", ("",))):
        model = _toy_vit()
        frozen = F_.set_trainable(model, mode, 1)
        if not isinstance(frozen, (list, tuple)) or not all(isinstance(n, str) for n in frozen):
            raise AssertionError(f"set_trainable(..., {mode!r}) returned {type(frozen).__name__}: return a list of "
                                 "module names (str)")
        learns = lambda n: any(n == m or n.startswith(m + ".") or m == "" for m in learning)  # noqa: E731
        for name, param in model.named_parameters():
            if param.requires_grad != learns(name):
                raise AssertionError(f"in {mode!r} mode parameter {name!r} {'learns' if param.requires_grad else 'is frozen'};"
                                     f" only {', '.join(m or 'everything' for m in learning)} should learn")
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                held = any(name == f or name.startswith(f + ".") for f in frozen)
                if held == learns(name):
                    raise AssertionError(f"in {mode!r} mode module {name!r} "
                                         + ("learns but is returned as frozen" if held else
                                            "is frozen but no returned subtree holds it (dropouts count too)"))


def rollout_by_hand(maps, w: float) -> torch.Tensor:
    """Attention rollout by its definition, one image and one layer at a time (an oracle for checks)."""
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


def _attention_rollout(F_):
    g = torch.Generator().manual_seed(0)
    maps = [torch.softmax(2 * torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64), -1) for _ in range(3)]
    for layers, w in ((1, 0.5), (3, 0.5), (3, 0.3)):
        _close(f"attention_rollout({layers} layer(s), residual_weight={w})",
               F_.attention_rollout([m.clone() for m in maps[:layers]], w), rollout_by_hand(maps[:layers], w))


def statistics_by_hand(row: list[float], grid, mass: float) -> dict:
    """attention_statistics of one image by its definition: `statistics` and a loop over sorted weights."""
    import statistics

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


STAT_KEYS = ("mean", "std", "mass_fraction", "centre_edge_ratio")


def _attention_statistics(F_):
    g = torch.Generator().manual_seed(0)
    rows = 3 * torch.softmax(1.5 * torch.randn(3, 20, generator=g, dtype=torch.float64), -1)
    for a, grid in ((rows, (4, 5)), (torch.full((1, 16), 1 / 16, dtype=torch.float64), (4, 4))):
        got = F_.attention_statistics(a.clone(), grid, 0.5)
        if not isinstance(got, dict):
            raise AssertionError(f"attention_statistics returned {type(got).__name__}: return a dict of (B,) tensors")
        want = [statistics_by_hand(r.tolist(), grid, 0.5) for r in a]
        for key in STAT_KEYS:
            if key not in got:
                raise AssertionError(f"attention_statistics' dict has no {key!r}")
            _close(f"attention_statistics(...)[{key!r}] on grid {grid}", got[key],
                   torch.tensor([w[key] for w in want], dtype=a.dtype))


FINETUNE_CHECKS = {
    "finetune.set_trainable": _set_trainable,
    "finetune.attention_rollout": _attention_rollout,
    "finetune.attention_statistics": _attention_statistics,
}


# ----------------------------------------------------------------------------------------------- cnn.py
def _cnn_close(what: str, got, want, hint: str, atol: float = 1e-5) -> None:
    """Raise what differs between `got` and PyTorch's `want` (shape, NaN, the largest error), with a hint."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} returned a {type(got).__name__}, not a tensor")
    if got.shape != want.shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.isfinite(got).all():
        raise AssertionError(f"{what} has NaN or inf values where PyTorch's are finite. Hint: {hint}")
    err = (got.detach().double() - want.detach().double()).abs()
    if err.max() > atol + 1e-4 * want.detach().double().abs().max():
        raise AssertionError(f"{what} differs from PyTorch's: max error {err.max():.3g}. Hint: {hint}")


def verify_batch_norm(batch_norm) -> None:
    """batch_norm against F.batch_norm: (B, C), (B, C, L), (B, C, H, W); train and eval; values, gradients and
    the running statistics updated in place."""
    g = torch.Generator().manual_seed(7)
    for shape, training in (((6, 3), True), ((2, 3, 5), True), ((2, 3, 4, 5), True), ((2, 3, 4, 5), False)):
        C = shape[1]
        x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_(True)
        weight = (1 + torch.rand(C, generator=g, dtype=torch.float64)).requires_grad_(True)
        bias = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_(True)
        mean0, var0 = torch.randn(C, generator=g, dtype=torch.float64), 1 + torch.rand(C, generator=g, dtype=torch.float64)
        mine, theirs = (mean0.clone(), var0.clone()), (mean0.clone(), var0.clone())
        where = f"batch_norm(x of shape {shape}, training={training})"
        out = batch_norm(x, *mine, weight, bias, training=training, momentum=0.2, eps=1e-5)
        want = F.batch_norm(x, *theirs, weight, bias, training, 0.2, 1e-5)
        _cnn_close(where, out, want, "training: the batch's mean and biased variance over every axis but 1; eval: "
                   "the running statistics; (x - mean) / sqrt(var + eps) · weight + bias")
        cot = torch.randn(*shape, generator=g, dtype=torch.float64)
        mine_g = torch.autograd.grad((out * cot).sum(), (x, weight, bias), allow_unused=True)
        want_g = torch.autograd.grad((want * cot).sum(), (x, weight, bias))
        for name, a, b in zip(("x", "weight", "bias"), mine_g, want_g):
            if a is None:
                raise AssertionError(f"{where}: no gradient reaches {name} (.detach() or a new tensor?)")
            _cnn_close(f"{where}: the gradient of {name}", a, b, "the batch statistics must stay in the autograd "
                       "graph in training mode (no .detach(), no torch.no_grad() around the normalisation)")
        _cnn_close(f"{where}: running_mean after the call", mine[0], theirs[0],
                   "update in place: running_mean.mul_(1 - momentum).add_(momentum * batch mean)")
        _cnn_close(f"{where}: running_var after the call", mine[1], theirs[1],
                   "the running update uses the UNBIASED variance (biased · n / (n - 1)), the normalisation the biased")


def verify_fold_conv_bn(fold_conv_bn) -> None:
    """fold_conv_bn against torch.nn.utils.fusion.fuse_conv_bn_eval and bn(conv(x)), with and without a conv
    bias, with stride, padding, dilation and groups; the inputs must stay unchanged."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    g = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    for bias, kwargs in ((False, dict(padding=1)), (True, dict(stride=2, padding=2, dilation=2, groups=2))):
        conv = nn.Conv2d(4, 6, 3, bias=bias, **kwargs).double()
        bn = nn.BatchNorm2d(6, eps=1e-3).double()
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(6, generator=g, dtype=torch.float64))
            bn.running_var.copy_(0.5 + torch.rand(6, generator=g, dtype=torch.float64))
            bn.weight.copy_(1 + torch.randn(6, generator=g, dtype=torch.float64) / 2)
            bn.bias.copy_(torch.randn(6, generator=g, dtype=torch.float64))
        bn.eval()
        before = [t.clone() for t in (*conv.state_dict().values(), *bn.state_dict().values())]
        where = f"fold_conv_bn(Conv2d(4, 6, 3, bias={bias}, {', '.join(f'{k}={v}' for k, v in kwargs.items())}), bn)"
        fused = fold_conv_bn(conv, bn)
        if not isinstance(fused, nn.Conv2d) or fused.bias is None:
            raise AssertionError(f"{where} must return a new nn.Conv2d with a bias")
        if not all(torch.equal(a, b) for a, b in zip(before, (*conv.state_dict().values(), *bn.state_dict().values()))):
            raise AssertionError(f"{where} changed the conv or the batch norm it was given: write into fused only")
        oracle = fuse_conv_bn_eval(conv.eval(), bn)
        _cnn_close(f"{where}: the folded weight", fused.weight, oracle.weight,
                   "scale each OUTPUT channel of the kernel by bn.weight / sqrt(running_var + eps)")
        _cnn_close(f"{where}: the folded bias", fused.bias, oracle.bias,
                   "s·(conv.bias - running_mean) + bn.bias, with conv.bias = 0 when it is None")
        x = torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64)
        _cnn_close(f"{where}: fused(x)", fused(x), bn(conv(x)), "the folded conv must equal bn(conv(x)) in eval mode")


def verify_mish(mish) -> None:
    """mish against F.mish, values and gradients, also where exp(x) overflows float32."""
    x = torch.cat([torch.linspace(-6, 6, 25), torch.tensor([-100.0, 100.0])]).requires_grad_(True)
    out = mish(x)
    _cnn_close("mish", out, F.mish(x), "x · tanh(softplus(x))")
    (grad,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(F.mish(x).sum(), x)
    _cnn_close("the gradient of mish", grad, want, "use F.softplus: log(1 + exp(x)) overflows for x = 100")


def verify_conv_block(C) -> None:
    """ConvBlock (batch norm, ReLU) in eval mode against relu(F.batch_norm(conv(x)))."""
    from torch import nn

    block = C.ConvBlock(3, 4, C.ConvNetConfig(batch_norm=True, act="relu", fused_bn=True)).eval()
    x = torch.randn(2, 3, 5, 5)
    want = torch.relu(nn.functional.batch_norm(block.conv(x), block.bn.running_mean, block.bn.running_var,
                                               block.bn.weight, block.bn.bias, False))
    _cnn_close("ConvBlock (batch norm, ReLU) in eval mode", block(x), want, "conv -> bn -> act")


def verify_convnet(C) -> None:
    """ConvNet logits against head(forward_features(x)) in eval mode (dropout is off)."""
    model = C.ConvNet(C.ConvNetConfig(stages=((4,), (6,)), image_size=8, act="relu", num_classes=5)).eval()
    x = torch.randn(2, 3, 8, 8)
    _cnn_close("ConvNet(...)(x)", model(x), model.head(model.forward_features(x)),
               "pooled features -> dropout -> head, logits of shape (B, K)")


CNN_CHECKS = {
    "cnn.batch_norm": lambda C: verify_batch_norm(C.batch_norm),
    "cnn.fold_conv_bn": lambda C: verify_fold_conv_bn(C.fold_conv_bn),
    "cnn.mish": lambda C: verify_mish(C.mish),
    "cnn.ConvBlock.forward": verify_conv_block,
    "cnn.ConvNet.forward": verify_convnet,
}


_MISSING = re.compile(r"implement ([\w.]+)")


def _not_done(part: str, err: NotImplementedError) -> str:
    """Name the part that is really missing: the stub that raised, which may be another part this one uses."""
    m = _MISSING.search(str(err))
    own = part.split(".", 1)[1]
    if m and m.group(1) != own:
        return (f"needs {m.group(1)}, which is not done yet (this check runs it); write {m.group(1)} first, "
                f"then {own} is checked")
    return str(err)


def _present(folder: Path) -> list[str]:
    """The parts whose student module is in `folder` (a release folder holds only its assignment's files)."""
    from coursecore.parts import POINTS

    have = {n for n in MODULE_NAMES if (folder / f"{n}.py").is_file()}
    return [p for p in POINTS if p.split(".", 1)[0] in have]


def _course_order(assignment: str) -> tuple:
    """Sort key: a1 < a2 < ... < a10 (then by name)."""
    m = re.match(r"a(\d+)", assignment)
    return (int(m.group(1)) if m else math.inf, assignment)


def parts_through(assignment: str) -> list[str]:
    """The parts `assignment` grades and the parts of earlier assignments it builds on, in report order.

    Assignment 3's ViT uses the patches of assignment 1 and the blocks of assignment 2, so its self-check
    shows those; assignment 1's shows only its own (no "not done" for parts nobody asked for yet)."""
    from coursecore.parts import ASSIGNMENT_PARTS, POINTS

    wanted = {p for a, parts in ASSIGNMENT_PARTS.items() if _course_order(a) <= _course_order(assignment) for p in parts}
    return [p for p in POINTS if p in wanted]


def check_all(folder: str | Path = ".", parts=None, assignment: str | None = None) -> list[Result]:
    """Run the self-checks of `parts` (default: those of `assignment` and the ones it builds on, else of
    every student module in `folder`), for the modules present in `folder`; never raises."""
    folder = Path(folder)
    if parts is None and assignment is not None:
        present = set(_present(folder))
        parts = [p for p in parts_through(assignment) if p in present]
    parts = list(parts) if parts is not None else _present(folder)
    vit_parts = [p for p in parts if p in CHECKS]
    results = _run_checks(folder, vit_parts, ("transformer", "ViT"), lambda m: (m["transformer"], m["ViT"]), CHECKS)
    finetune_parts = [p for p in parts if p in FINETUNE_CHECKS]
    results += _run_checks(folder, finetune_parts, ("finetune",), lambda m: (m["finetune"],), FINETUNE_CHECKS)
    cnn_parts = [p for p in parts if p in CNN_CHECKS]
    results += _run_checks(folder, cnn_parts, ("cnn",), lambda m: (m["cnn"],), CNN_CHECKS)
    legacy = {*CHECKS, *FINETUNE_CHECKS, *CNN_CHECKS}
    results += _run_declared(folder, [p for p in parts if p not in legacy])
    return results


def _run_declared(folder: Path, parts: list) -> list[Result]:
    """Parts declared whole in coursecore/parts/<module>.py: their own public check. A part without one is listed,
    never silently left out of "n/m parts look done"."""
    from types import SimpleNamespace

    from coursecore.parts import BY_ID

    checks = {p: BY_ID[p].check for p in parts if p in BY_ID and BY_ID[p].check is not None}
    results = []
    for part in parts:
        if part not in checks:
            results.append(Result(part, UNCHECKED, "no self-check for this part yet: only the grader checks it"))
            continue
        module = BY_ID[part].module
        results += _run_checks(folder, [part], (module,), lambda m: (SimpleNamespace(**m),), checks)
    return results


def _run_checks(folder: Path, parts: list, modules: tuple, args_of, table: dict) -> list[Result]:
    if not parts:
        return []
    try:
        args = args_of(load_modules(folder, modules))
    except Exception as err:  # noqa: BLE001 - tell the student what broke the import
        where = traceback.extract_tb(err.__traceback__)[-1]
        msg = f"your files do not import: {type(err).__name__}: {err} ({Path(where.filename).name}, line {where.lineno})"
        return [Result(part, WRONG, msg) for part in parts]
    results = []
    status = {}
    for part in parts:
        check = table[part]
        torch.manual_seed(0)
        try:
            check(*args)
            results.append(Result(part, OK))
        except NotImplementedError as err:
            results.append(Result(part, TODO, _not_done(part, err)))
        except AssertionError as err:
            results.append(Result(part, WRONG, str(err)))
        except Exception as err:  # noqa: BLE001 - a student-facing message, not a traceback
            hint = analysers.explain_error(str(err), part, {"B": 2})
            first = (str(err).splitlines() or [""])[0].rstrip(".")
            results.append(Result(part, WRONG, f"{type(err).__name__}: {first}" + (f". Hint: {hint}" if hint else "")))
        status[part] = results[-1].status
        broken = [d.split(".", 1)[1] for d in USES.get(part, ()) if status.get(d) == WRONG]
        if results[-1].status == WRONG and broken:
            results[-1].message = (f"uses {', '.join(broken)}, which {'is' if len(broken) == 1 else 'are'} wrong "
                                   f"(above): fix {'it' if len(broken) == 1 else 'them'} first. ({results[-1].message})")
    return results


# The parts each composite check runs: its failure is blamed on them first when they are wrong.
USES = {
    "transformer.Attention.forward": ("transformer.attention", "transformer.Attention.split_heads",
                                      "transformer.Attention.merge_heads"),
    "ViT.model": tuple(p for p in CHECKS if p != "ViT.model"),
}


def format_results(results: list[Result]) -> str:
    if not results:
        return "no part of this folder's student files has a self-check"
    width = max(len(r.part) for r in results)
    lines = [f"{r.part:<{width}}  {r.status:<8}  {r.message}".rstrip() for r in results]
    done = sum(r.status == OK for r in results)
    checked = sum(r.status != UNCHECKED for r in results)
    lines.append(f"\n{done}/{checked} parts look done. The grader checks more sizes and configurations.")
    return "\n".join(lines)
