"""Student self-check: which parts of my transformer.py / ViT.py look done? (no hidden reference)

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

Run `python -m autograder check [FOLDER]`, or in a notebook::

    from autograder.selfcheck import check_all, format_results
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
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from autograder.registry import MODULE_NAMES

OK, TODO, WRONG = "ok", "not done", "wrong"
ATOL, RTOL = 1e-5, 1e-4  # float32 tolerances of every comparison below


@dataclass
class Result:
    part: str
    status: str
    message: str = ""


def load_student(folder: str | Path):
    """Import transformer.py and ViT.py from `folder` (ViT.py does `from transformer import ...`)."""
    folder = Path(folder).resolve()
    saved = {n: sys.modules.pop(n) for n in MODULE_NAMES if n in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        mods = {}
        for name in MODULE_NAMES:
            spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            mods[name] = module
        return mods["transformer"], mods["ViT"]
    finally:
        sys.path.remove(str(folder))
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _close(name: str, actual, expected) -> None:
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name} is a {type(actual).__name__}, expected a torch.Tensor")
    if actual.shape != expected.shape:
        raise AssertionError(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not torch.allclose(actual, expected, RTOL, ATOL):
        err = (actual - expected).abs().max().item()
        raise AssertionError(f"{name} differs from the oracle by up to {err:.3g}")


# ----------------------------------------------------------------------------------------- checks
def _attention(T, V):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    mask = torch.rand(2, 3, 5, 5, generator=g) > 0.3
    mask |= torch.eye(5, dtype=torch.bool)
    for m in (None, mask):
        out, weights = T.attention(q, k, v, m)
        _close("out", out, F.scaled_dot_product_attention(q, k, v, attn_mask=m))
        _close("each row of weights (sum over keys)", weights.sum(-1), torch.ones(2, 3, 5))
        if m is not None and weights.masked_select(~m).abs().max() > 0:
            raise AssertionError("weights where the mask is False must be exactly 0")


def _heads(T, V):
    attn = T.Attention(12, num_heads=3)
    x = torch.randn(2, 5, 12)
    split = attn.split_heads(x)
    _close("split_heads(x)", split, torch.stack([x[..., i * 4:(i + 1) * 4] for i in range(3)], dim=1))
    return split


def _merge(T, V):
    attn = T.Attention(12, num_heads=3)
    x = torch.randn(2, 3, 5, 4)
    _close("merge_heads(x)", attn.merge_heads(x), torch.cat(list(x.unbind(1)), dim=-1))


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
    _close("patchify(x)", V.patchify(x, 4), _unfold_patches(x, 4))


def _unpatchify(T, V):
    x = torch.randn(2, 3, 8, 12)
    _close("unpatchify(patches of x)", V.unpatchify(_unfold_patches(x, 4), 4, (8, 12)), x)


def _sincos_1d(T, V):
    n, D = 5, 12
    table = torch.tensor([[math.sin(p * 10000 ** (-(c - c % 2) / D)) if c % 2 == 0 else
                           math.cos(p * 10000 ** (-(c - c % 2) / D)) for c in range(D)] for p in range(n)])
    emb = V.sincos_1d_embedding(n, D)
    _close("sincos_1d_embedding(5, 12)", emb, table)
    if emb.dtype != torch.float32:
        raise AssertionError(f"dtype is {emb.dtype}, expected torch.float32")


def _sincos_2d(T, V):
    gh, gw, D = 3, 5, 12
    rows, cols = V.sincos_1d_embedding(gh, D // 2), V.sincos_1d_embedding(gw, D // 2)
    oracle = torch.stack([torch.cat([rows[n // gw], cols[n % gw]]) for n in range(gh * gw)])
    _close("sincos_2d_embedding(3, 5, 12)", V.sincos_2d_embedding(gh, gw, D), oracle)


def _patch_embed(T, V):
    embed = V.PatchEmbed((8, 12), 4, 3, 10)
    x = torch.randn(2, 3, 8, 12)
    w = embed.proj.weight.permute(0, 2, 3, 1).reshape(10, -1)  # (D, P·P·C), patchify's order
    oracle = V.patchify(x, 4) @ w.T + embed.proj.bias
    _close("PatchEmbed(x) vs patchify(x) @ Wᵀ + b", embed(x), oracle)


def _features(T, V):
    model = V.ViT(image_size=(8, 12), patch_size=4, in_chans=3, embed_dim=12, depth=1, num_heads=3,
                  num_classes=5).eval()
    x = torch.randn(2, 3, 8, 12)
    tokens = model.forward_features(x)
    if tuple(tokens.shape) != (2, 7, 12):
        raise AssertionError(f"forward_features returned shape {tuple(tokens.shape)}, expected (2, 7, 12)")
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


def check_all(folder: str | Path = ".") -> list[Result]:
    """Run every self-check on the files in `folder`; never raises."""
    try:
        T, V = load_student(folder)
    except Exception as err:  # noqa: BLE001 - tell the student what broke the import
        where = traceback.extract_tb(err.__traceback__)[-1]
        msg = f"your files do not import: {type(err).__name__}: {err} ({Path(where.filename).name}, line {where.lineno})"
        return [Result(part, WRONG, msg) for part in CHECKS]
    results = []
    for part, check in CHECKS.items():
        torch.manual_seed(0)
        try:
            check(T, V)
            results.append(Result(part, OK))
        except NotImplementedError as err:
            results.append(Result(part, TODO, str(err)))
        except Exception as err:  # noqa: BLE001 - a student-facing message, not a traceback
            results.append(Result(part, WRONG, f"{type(err).__name__}: {err}" if not isinstance(err, AssertionError)
                                  else str(err)))
    return results


def format_results(results: list[Result]) -> str:
    width = max(len(r.part) for r in results)
    lines = [f"{r.part:<{width}}  {r.status:<8}  {r.message}".rstrip() for r in results]
    done = sum(r.status == OK for r in results)
    lines.append(f"\n{done}/{len(results)} parts look done. The grader checks more sizes and configurations.")
    return "\n".join(lines)
