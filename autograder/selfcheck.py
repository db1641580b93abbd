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
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from autograder import analysers
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


_MISSING = re.compile(r"implement ([\w.]+)")


def _not_done(part: str, err: NotImplementedError) -> str:
    """Name the part that is really missing: the stub that raised, which may be another part this one uses."""
    m = _MISSING.search(str(err))
    own = part.split(".", 1)[1]
    if m and m.group(1) != own:
        return (f"needs {m.group(1)}, which is not done yet (this check runs it); write {m.group(1)} first, "
                f"then {own} is checked")
    return str(err)


def check_all(folder: str | Path = ".") -> list[Result]:
    """Run every self-check on the files in `folder`; never raises."""
    try:
        T, V = load_student(folder)
    except Exception as err:  # noqa: BLE001 - tell the student what broke the import
        where = traceback.extract_tb(err.__traceback__)[-1]
        msg = f"your files do not import: {type(err).__name__}: {err} ({Path(where.filename).name}, line {where.lineno})"
        return [Result(part, WRONG, msg) for part in CHECKS]
    results = []
    status = {}
    for part, check in CHECKS.items():
        torch.manual_seed(0)
        try:
            check(T, V)
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
    width = max(len(r.part) for r in results)
    lines = [f"{r.part:<{width}}  {r.status:<8}  {r.message}".rstrip() for r in results]
    done = sum(r.status == OK for r in results)
    lines.append(f"\n{done}/{len(results)} parts look done. The grader checks more sizes and configurations.")
    return "\n".join(lines)
