"""The graded parts of `ViT.py`: patches and position embeddings (assignment 1), the model (assignment 3).

Each part is declared whole here: its points, assignment, hint and public check (the `verify_*` functions, against
torch's own: `F.unfold`, the sin-cos formula entry by entry, the conv weights used as a linear layer; the notebook's
check cells and `python -m vitcourse check` run them), and in the grader's region its hidden cases, how the
sandboxed runner runs one (with the oracles of coursecore/parts/oracles.py), and its catalogued bugs (each with the
mutation of the reference that makes it). A release strips the grader's region (coursetools/release.py).

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding (embed_dim),
h heads (num_heads), d head dim (D / h), K classes.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from coursecore.parts import checks
from coursecore.parts.checks import assert_close, assert_shape, calling, gen
from coursecore.parts.part import Part
from coursecore.parts.transformer import TorchAttention, TorchMlp, pre_norm_block

WHERE = "ViT.py"
B, C, H, W, P, D, h = checks.B, checks.C, checks.H, checks.W, checks.P, checks.D, checks.h  # the checks' sizes
SINCOS_BASE = 10000.0  # Vaswani et al. (2017); the same constant as ViT.SINCOS_BASE
K_CLASSES = 7  # a class count unlike any other size of the checks


def _patches_by_unfold(images: torch.Tensor, p: int) -> torch.Tensor:
    """Oracle: F.unfold gives (B, C·P·P, N) with values ordered (C, row, col); reorder to (row, col, C)."""
    b, c = images.shape[:2]
    cols = F.unfold(images, kernel_size=p, stride=p)  # (B, C·P·P, N)
    n = cols.shape[-1]
    return cols.reshape(b, c, p, p, n).permute(0, 4, 2, 3, 1).reshape(b, n, p * p * c)  # (B, N, P·P·C)


def verify_patchify(patchify: Callable) -> None:
    """patchify against F.unfold on a non-square, multi-channel image (patches row by row)."""
    images = torch.randn(B, C, H, W, generator=gen(6))
    with calling("patchify", WHERE):
        got = patchify(images, P)
    assert_shape("patchify", got, (B, (H // P) * (W // P), P * P * C))
    assert_close("patchify", got, _patches_by_unfold(images, P),
                 "patches go row by row (left to right, then down); inside a patch the order is (row, column, channel)",
                 part="ViT.patchify", sizes={"B": B, "C": C, "H": H, "W": W, "P": P})


def verify_unpatchify(unpatchify: Callable) -> None:
    """unpatchify must invert the (oracle) patchify exactly."""
    images = torch.randn(B, C, H, W, generator=gen(7))
    with calling("unpatchify", WHERE):
        got = unpatchify(_patches_by_unfold(images, P), P, (H, W))
    assert_close("unpatchify", got, images, "apply the inverse permutation of patchify's, between the two reshapes",
                 part="ViT.unpatchify", sizes={"B": B, "C": C, "H": H, "W": W, "P": P})


def _sincos_loop(num_positions: int, dim: int) -> torch.Tensor:
    table = torch.zeros(num_positions, dim)
    for p in range(num_positions):
        for i in range(dim // 2):
            omega = SINCOS_BASE ** (-2 * i / dim)
            table[p, 2 * i] = math.sin(p * omega)
            table[p, 2 * i + 1] = math.cos(p * omega)
    return table


def verify_sincos_1d(sincos_1d_embedding: Callable) -> None:
    """The 1-D sinusoidal table against the formula evaluated entry by entry."""
    with calling("sincos_1d_embedding", WHERE):
        got = sincos_1d_embedding(7, 10)
    assert_close("sincos_1d_embedding", got, _sincos_loop(7, 10),
                 "column 2i holds sin(p*w_i), column 2i+1 cos(p*w_i), w_i = 10000**(-2i/dim)",
                 part="ViT.sincos_1d_embedding", sizes={"n": 7, "D": 10})


def verify_sincos_2d(sincos_2d_embedding: Callable) -> None:
    """The 2-D table: patch (r, c) gets concat(E1(r), E1(c)), patches row by row."""
    gh, gw, dim = 3, 4, 8
    # The formula's 1-D table underneath: a wrong sincos_1d_embedding is its own check's business, not this one's.
    namespace = getattr(sincos_2d_embedding, "__globals__", {})
    saved = namespace.get("sincos_1d_embedding")
    if saved is not None:
        namespace["sincos_1d_embedding"] = _sincos_loop
    try:
        with calling("sincos_2d_embedding", WHERE):
            got = sincos_2d_embedding(gh, gw, dim)
    finally:
        if saved is not None:
            namespace["sincos_1d_embedding"] = saved
    e1_rows, e1_cols = _sincos_loop(gh, dim // 2), _sincos_loop(gw, dim // 2)
    want = torch.stack([torch.cat([e1_rows[n // gw], e1_cols[n % gw]]) for n in range(gh * gw)])
    assert_close("sincos_2d_embedding", got, want,
                 "patch n sits at row n // grid_w and column n % grid_w; the row half comes first",
                 part="ViT.sincos_2d_embedding", sizes={"grid_h": gh, "grid_w": gw, "D": dim})


def verify_patch_embed(patch_embed_cls: type) -> None:
    """PatchEmbed.forward against patchify (oracle) followed by the conv weights used as a linear layer."""
    embed = patch_embed_cls((H, W), P, C, D)
    images = torch.randn(B, C, H, W, generator=gen(8))
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(D, P * P * C)  # (D, P·P·C) in patchify's order
    with calling("PatchEmbed.forward", WHERE), torch.no_grad():
        got = embed(images)
        want = _patches_by_unfold(images, P) @ weight.T + embed.proj.bias
    assert_close("PatchEmbed.forward", got, want, "self.proj(x) is (B, D, H/P, W/P): flatten the grid row by row and put D last",
                 part="ViT.PatchEmbed.forward", sizes={"B": B, "C": C, "H": H, "W": W, "P": P, "D": D})


class _UnfoldPatchEmbed(nn.Module):
    """A course PatchEmbed computed through F.unfold: isolates forward_features from PatchEmbed.forward."""

    def __init__(self, embed: nn.Module, p: int):
        super().__init__()
        self.embed, self.p = embed, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.embed.proj.weight
        weight = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (D, P·P·C) in patchify's order
        return _patches_by_unfold(x, self.p) @ weight.T + self.embed.proj.bias


def verify_forward_features(vit_cls: type) -> None:
    """ViT.forward_features alone (torch's patch embedding and blocks): class token first, positions added."""
    model = vit_cls(image_size=(H, W), patch_size=P, in_chans=C, num_classes=K_CLASSES, embed_dim=D, depth=2, num_heads=h).eval()
    model.patch_embed = _UnfoldPatchEmbed(model.patch_embed, P)
    for block in model.blocks:
        block.attn = TorchAttention(block.attn, D, h).eval()
        block.mlp = TorchMlp(block.mlp)
        block.forward = functools.partial(pre_norm_block, block)
    images = torch.randn(B, C, H, W, generator=gen(9))
    with calling("ViT.forward_features", WHERE), torch.no_grad():
        tokens = model.patch_embed(images)
        encoded = functools.reduce(lambda t, blk: blk(t), model.blocks,
                                   torch.cat([model.cls_token.expand(B, -1, -1), tokens], dim=1) + model.pos_embed)
        want = model.norm(encoded)
        got = model.forward_features(images)
    assert_close("ViT.forward_features", got, want,
                 "prepend the class token, add pos_embed, run every block, then the final norm")


def verify_model(vit_cls: type) -> None:
    """The whole ViT: logits of shape (B, K) and a gradient for every parameter."""
    model = vit_cls(image_size=(H, W), patch_size=P, in_chans=C, num_classes=K_CLASSES, embed_dim=D, depth=2, num_heads=h)
    images = torch.randn(B, C, H, W, generator=gen(10))
    with calling("ViT (forward_features, PatchEmbed.forward, the blocks)", "ViT.py and transformer.py"):
        logits = model(images)
    assert_shape("ViT logits", logits, (B, K_CLASSES))
    logits.square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if missing:
        raise AssertionError(f"these parameters get no gradient: {missing[:5]}; is every layer used in forward?")


PARTS = (
    Part("ViT.patchify", 2, "a1_data_patches",
         hint="check one patch by hand: patchify(x)[0, n] for patch n at grid row n // (W/P).",
         check=lambda m: verify_patchify(m.ViT.patchify)),
    Part("ViT.unpatchify", 1, "a1_data_patches",
         hint="unpatchify(patchify(x), P, (H, W)) must give x back exactly.",
         check=lambda m: verify_unpatchify(m.ViT.unpatchify)),
    Part("ViT.sincos_1d_embedding", 1, "a1_data_patches",
         hint="row p: sin(p·ω_i) in column 2i, cos(p·ω_i) in column 2i+1, float32.",
         check=lambda m: verify_sincos_1d(m.ViT.sincos_1d_embedding)),
    Part("ViT.sincos_2d_embedding", 1, "a1_data_patches",
         hint="patch n: concat(E1(n // grid_w), E1(n % grid_w)) with D/2 features each.",
         check=lambda m: verify_sincos_2d(m.ViT.sincos_2d_embedding)),
    Part("ViT.PatchEmbed.forward", 1, "a3_vit",
         hint="self.proj(x) is (B, D, H/P, W/P): flatten the grid, then move D last.",
         check=lambda m: verify_patch_embed(m.ViT.PatchEmbed)),
    Part("ViT.ViT.forward_features", 2, "a3_vit",
         hint="patch_embed -> prepend cls -> + pos_embed -> pos_drop -> blocks -> norm.",
         check=lambda m: verify_forward_features(m.ViT.ViT)),
    Part("ViT.model", 2, "a3_vit",  # composite: the student's whole ViT, logits and gradients
         uses=("transformer.attention", "transformer.Attention.split_heads",
               "transformer.Attention.merge_heads", "transformer.Attention.forward", "transformer.Mlp.forward",
               "transformer.Block.forward", "ViT.sincos_1d_embedding", "ViT.sincos_2d_embedding",
               "ViT.PatchEmbed.forward", "ViT.ViT.forward_features"),
         hint="this runs your whole model (manual attention path included): fix the other parts first.",
         check=lambda m: verify_model(m.ViT.ViT)),
)


### BEGIN GRADER
# The grader's side: hidden cases, the run of one case in the sandbox, the catalogued bugs. Not in a release.
from coursecore.parts import oracles  # noqa: E402
from coursecore.parts.draws import _gen, _randn, _weights  # noqa: E402
from coursecore.parts.part import Bug, grader  # noqa: E402


def _patchify_cases(op: str):
    sizes = [(2, 3, 8, 12, 4, torch.float32), (1, 1, 6, 6, 3, torch.float32), (3, 2, 4, 8, 2, torch.float64),
             (1, 3, 8, 8, 8, torch.float32)]
    cases = []
    for i, (B, C, H, W, P, dtype) in enumerate(sizes):
        g = _gen(50 + i)
        images, patches = (B, C, H, W), (B, (H // P) * (W // P), P * P * C)
        shape_in, shape_out = (images, patches) if op == "patchify" else (patches, images)
        t = {"x": _randn(g, *shape_in, dtype=dtype), "g": _randn(g, *shape_out, dtype=dtype)}
        label = f"input of shape {shape_in}, patch_size={P}, image {H}x{W}, {str(dtype)[6:]}"
        legend = {"B": B, "C": C, "H": H, "W": W, "P": P} if op == "patchify" else \
            {"B": B, "N": patches[1], "P": P, "H": H, "W": W, "C": C}
        cases.append({"op": op, "params": {"patch_size": P, "image_size": [H, W]}, "tensors": t, "label": label,
                      "sizes": legend})
    return cases


def _sincos_cases(op: str):
    if op == "sincos_1d":
        sizes = [(5, 12), (9, 6), (1, 4), (17, 32)]
        return [{"op": op, "params": {"n": n, "dim": D}, "tensors": {},
                 "label": f"sincos_1d_embedding(num_positions={n}, dim={D})", "sizes": {"n": n, "D": D}}
                for n, D in sizes]
    sizes = [(3, 5, 12), (2, 2, 8), (4, 1, 16), (1, 6, 4)]
    return [{"op": op, "params": {"grid_h": gh, "grid_w": gw, "dim": D}, "tensors": {},
             "label": f"sincos_2d_embedding(grid_h={gh}, grid_w={gw}, dim={D})",
             "sizes": {"grid_h": gh, "grid_w": gw, "D": D}} for gh, gw, D in sizes]


def _patch_embed_cases(ref):
    sizes = [(2, 3, (8, 12), 4, 10), (3, 1, (6, 6), 3, 4), (1, 2, (8, 8), 2, 6)]
    cases = []
    for i, (B, C, hw, P, D) in enumerate(sizes):
        g = _gen(60 + i)
        t = _weights(ref.ViT.PatchEmbed(hw, P, C, D), g)
        N = (hw[0] // P) * (hw[1] // P)
        t.update(x=_randn(g, B, C, *hw), g=_randn(g, B, N, D))
        params = {"image_size": list(hw), "patch_size": P, "in_chans": C, "dim": D}
        label = f"PatchEmbed(image_size={hw}, patch_size={P}, in_chans={C}, embed_dim={D}), images {(B, C, *hw)}"
        cases.append({"op": "patch_embed", "params": params, "tensors": t, "label": label,
                      "sizes": {"B": B, "C": C, "H": hw[0], "W": hw[1], "P": P, "D": D}})
    return cases


# Small ViTs of distinct sizes; every field of ViTConfig is written out (the config travels as a dict).
VIT_CONFIGS = {
    "forward_features": [
        dict(image_size=[8, 12], patch_size=4, in_chans=3, embed_dim=12, depth=2, num_heads=3, mlp_ratio=2.0,
             pos_embed="learnable", pool="token", drop_rate=0.3, num_classes=5),
        dict(image_size=[6, 6], patch_size=3, in_chans=1, embed_dim=8, depth=1, num_heads=2, mlp_ratio=1.5,
             pos_embed="none", pool="mean", num_classes=4),
        dict(image_size=[8, 8], patch_size=2, in_chans=2, embed_dim=6, depth=1, num_heads=3, mlp_ratio=2.0,
             pos_embed="learnable", pool="mean", num_classes=3),
        dict(image_size=[4, 8], patch_size=2, in_chans=3, embed_dim=10, depth=1, num_heads=2, mlp_ratio=1.0,
             pos_embed="none", pool="token", num_classes=2),
    ],
    "model": [
        dict(image_size=[8, 12], patch_size=4, in_chans=3, embed_dim=12, depth=2, num_heads=3, mlp_ratio=2.0,
             pos_embed="learnable", pool="token", fused_attn=False, num_classes=5),
        dict(image_size=[8, 8], patch_size=4, in_chans=1, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0,
             pos_embed="cosine", pool="token", fused_attn=True, num_classes=4),
        dict(image_size=[6, 9], patch_size=3, in_chans=2, embed_dim=12, depth=2, num_heads=4, mlp_ratio=1.0,
             pos_embed="sincos2d", pool="mean", fused_attn=False, num_classes=3),
    ],
}


def _vit_cases(ref, op: str):
    cases = []
    batch = (2, 3, 1, 2)
    for i, partial in enumerate(VIT_CONFIGS[op]):
        g = _gen(70 + 10 * (op == "model") + i)
        cfg = ref.ViT.ViTConfig(**{**partial, "image_size": tuple(partial["image_size"])})
        config = {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}
        config["image_size"] = list(cfg.image_hw)
        t = _weights(ref.ViT.ViT(cfg), g)
        B = batch[i]
        out_shape = (B, cfg.num_tokens, cfg.embed_dim) if op == "forward_features" else (B, cfg.num_classes)
        t.update(x=_randn(g, B, cfg.in_chans, *cfg.image_hw), g=_randn(g, *out_shape))
        label = (f"ViT(image_size={cfg.image_hw}, patch_size={cfg.patch_size}, in_chans={cfg.in_chans}, "
                 f"embed_dim={cfg.embed_dim}, depth={cfg.depth}, num_heads={cfg.num_heads}, "
                 f"pos_embed={cfg.pos_embed!r}, pool={cfg.pool!r}")
        label += f", drop_rate={cfg.drop_rate}" if cfg.drop_rate else ""
        label += f", fused_attn={cfg.fused_attn}) in eval mode" if op == "model" else ") in eval mode"
        label += f", images of shape {(B, cfg.in_chans, *cfg.image_hw)}"
        sizes = {"B": B, "D": cfg.embed_dim, "h": cfg.num_heads, "d": cfg.embed_dim // cfg.num_heads,
                 "P": cfg.patch_size}
        cases.append({"op": op, "params": {"config": config}, "tensors": t, "label": label, "sizes": sizes})
    return cases


def _run(mods, case: dict, h) -> dict:
    """One case on the student's ViT.py (in the grader's sandbox); `h` is the runner's harness."""
    torch = h.torch()
    op, p, t = case["op"], case["params"], case["tensors"]
    T, V = getattr(mods, "transformer", None), getattr(mods, "ViT", None)
    tf, vf = "transformer.py", "ViT.py"
    state = {k[2:]: v for k, v in t.items() if k.startswith("w.")}

    if op == "patchify":
        x = h.leaf(t["x"])
        fn = h.need(V, "patchify", vf)
        return h.forward_backward(lambda: fn(x, p["patch_size"]), {"x": x}, {}, t["g"], "patchify")

    if op == "unpatchify":
        x = h.leaf(t["x"])
        fn = h.need(V, "unpatchify", vf)
        size = tuple(p["image_size"])
        return h.forward_backward(lambda: fn(x, p["patch_size"], size), {"x": x}, {}, t["g"], "unpatchify")

    if op == "sincos_1d":
        return {"out": h.tensor(h.need(V, "sincos_1d_embedding", vf)(p["n"], p["dim"]), "sincos_1d_embedding")}

    if op == "sincos_2d":
        fn = h.need(V, "sincos_2d_embedding", vf)
        # A correct 1-D table underneath: this part grades the 2-D layout alone.
        saved = V.sincos_1d_embedding
        V.sincos_1d_embedding = oracles.sincos_1d
        try:
            return {"out": h.tensor(fn(p["grid_h"], p["grid_w"], p["dim"]), "sincos_2d_embedding")}
        finally:
            V.sincos_1d_embedding = saved

    if op == "patch_embed":
        embed = h.need(V, "PatchEmbed", vf)(tuple(p["image_size"]), p["patch_size"], p["in_chans"], p["dim"])
        h.load(embed, state, "PatchEmbed")
        embed.eval()
        x = h.leaf(t["x"])
        return h.forward_backward(lambda: embed(x), {"x": x}, h.module_leaves(embed), t["g"], "PatchEmbed.forward")

    if op in ("forward_features", "model"):
        cfg = dict(p["config"])
        cfg["image_size"] = tuple(cfg["image_size"])
        vit_class = h.need(V, "ViT", vf)
        subs = set(p.get("oracle", ()))
        oracle = oracles.oracle_classes()
        patch = h.Patch()
        traces: dict = {}
        handles = []
        try:
            # Correct sin-cos tables where the student's failed on their own (they are built in __init__).
            if "ViT.sincos_1d_embedding" in subs and hasattr(V, "sincos_1d_embedding"):
                patch.set(V, "sincos_1d_embedding", oracles.sincos_1d)
            if "ViT.sincos_2d_embedding" in subs and hasattr(V, "sincos_2d_embedding"):
                patch.set(V, "sincos_2d_embedding", oracles.sincos_2d)
            if op == "forward_features" and hasattr(V, "Block"):
                # Build with correct blocks: a broken transformer.py must not cost forward_features' points.
                patch.set(V, "Block", oracle.Block)
            model = vit_class(**cfg)
            if op == "forward_features":
                patch.restore()
                # Correct patch embedding and blocks: this part grades forward_features' own steps.
                model.patch_embed = oracle.PatchEmbed(cfg["in_chans"], cfg["embed_dim"], cfg["patch_size"])
                model.blocks = torch.nn.ModuleList(
                    oracle.Block(cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], act=cfg["act"],
                                 norm_eps=cfg["norm_eps"]) for _ in range(cfg["depth"]))
                call, what = (lambda: model.forward_features(x)), "ViT.forward_features"
            else:
                h.need(T, "Block", tf)  # says so when transformer.py did not import
                oracles.substitute_model(h, T, model, subs, patch)
                call, what = (lambda: model(x)), "ViT.forward"
            names = ["patch_embed", *(f"blocks.{i}" for i in range(cfg["depth"])), "norm", "head"]
            handles = h.trace(model, names, traces)
            h.load(model, state, "ViT")
            model.eval()
            x = h.leaf(t["x"])
            result = h.forward_backward(call, {"x": x}, h.module_leaves(model), t["g"], what, repeat=True)
        finally:
            patch.restore()
            for handle in handles:
                handle.remove()
        return {**result, **traces}

    raise ValueError(f"unknown case op {op!r}")


def _patchify_variant(perm):
    def compute(case):
        x, P = case["tensors"]["x"], case["params"]["patch_size"]
        B, C, H, W = x.shape
        y = x.reshape(B, C, H // P, P, W // P, P).permute(*perm)
        return y.reshape(B, (H // P) * (W // P), P * P * C)
    return compute


def _unpatchify_variant(layout):
    """Read patches as if they were laid out by a buggy patchify (the inverse of that layout)."""
    def compute(case):
        x, P = case["tensors"]["x"], case["params"]["patch_size"]
        H, W = case["params"]["image_size"]
        B, N, patch_dim = x.shape
        C, gh, gw = patch_dim // (P * P), H // P, W // P
        if layout == "channel_first":
            y = x.reshape(B, gh, gw, C, P, P).permute(0, 3, 1, 4, 2, 5)  # (B, C, H/P, P, W/P, P)
        else:  # patches numbered column by column
            y = x.reshape(B, gw, gh, P, P, C).permute(0, 5, 2, 3, 1, 4)
        return y.reshape(B, C, H, W)
    return compute


def _sincos_1d_variant(kind):
    def compute(case):
        n, D = case["params"]["n"], case["params"]["dim"]
        pos = torch.arange(n, dtype=torch.float32)[:, None]
        i = torch.arange(0, D, 2, dtype=torch.float32)
        exponent = -(i / 2) / D if kind == "frequency" else -i / D
        angles = pos * 10000.0 ** exponent  # (n, D/2)
        if kind == "swapped":
            return torch.stack([angles.cos(), angles.sin()], dim=-1).reshape(n, D)
        if kind == "halves":
            return torch.cat([angles.sin(), angles.cos()], dim=-1)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(n, D)
    return compute


def _sincos_2d_variant(kind):
    def compute(case):
        gh, gw, D = case["params"]["grid_h"], case["params"]["grid_w"], case["params"]["dim"]
        e1 = oracles.sincos_1d
        rows = e1(gh, D // 2)[:, None, :].expand(gh, gw, D // 2)
        cols = e1(gw, D // 2)[None, :, :].expand(gh, gw, D // 2)
        if kind == "swapped":
            return torch.cat([cols, rows], dim=-1).reshape(gh * gw, D)
        return torch.cat([rows, cols], dim=-1).transpose(0, 1).reshape(gh * gw, D)  # column-major numbering
    return compute


def _patch_embed_variant(kind):
    def compute(case):
        t = case["tensors"]
        y = F.conv2d(t["x"], t["w.proj.weight"], t["w.proj.bias"], stride=case["params"]["patch_size"])
        B, D = y.shape[:2]
        if kind == "column_major":
            return y.transpose(2, 3).flatten(2).transpose(1, 2)
        return y.flatten(2).reshape(B, -1, D)  # (B, D, N) read as (B, N, D): values scrambled
    return compute


def _features_variant(kind):
    def compute(case):
        cfg, t = case["params"]["config"], case["tensors"]
        o = oracles.oracle_classes()
        x = F.conv2d(t["x"], t["w.patch_embed.proj.weight"], t["w.patch_embed.proj.bias"],
                     stride=cfg["patch_size"]).flatten(2).transpose(1, 2)  # (B, N, D)
        cls, pos = t.get("w.cls_token"), t.get("w.pos_embed")
        if kind != "no_final_norm" and (cls is None or (pos is None and kind != "cls_appended")):
            return None  # this config cannot show the bug
        if cls is not None:
            cls = cls.expand(x.shape[0], -1, -1)  # (B, 1, D)
        if kind == "cls_appended":
            x = torch.cat([x, cls], dim=1)
            x = x + pos if pos is not None else x
        elif kind == "cls_no_position":
            x = torch.cat([cls, x + pos[:, 1:]], dim=1)
        elif kind == "no_pos_embed":
            x = torch.cat([cls, x], dim=1)
        else:  # no_final_norm: everything else right
            x = torch.cat([cls, x], dim=1) if cls is not None else x
            x = x + pos if pos is not None else x
        for i in range(cfg["depth"]):
            block = o.Block(cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], act=cfg["act"],
                            norm_eps=cfg["norm_eps"])
            block.load_state_dict(oracles.case_state(case, f"blocks.{i}."))
            x = block.eval()(x)
        if kind == "no_final_norm":
            return x
        return F.layer_norm(x, x.shape[-1:], t["w.norm.weight"], t["w.norm.bias"], cfg["norm_eps"])
    return compute


BUGS = (
    Bug("patchify.channel_first", "ViT.patchify",
        "the values inside a patch are in (channel, row, column) order; the layout is (row, column, channel): "
        "permute to (B, H/P, W/P, P, P, C) before flattening.",
        variant=_patchify_variant((0, 2, 4, 1, 3, 5)),
        mutation=("x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = x.permute(0, 2, 4, 1, 3, 5)")),
    Bug("patchify.column_major", "ViT.patchify",
        "the patches are numbered column by column; number them row by row (the grid row axis H/P first).",
        variant=_patchify_variant((0, 4, 2, 3, 5, 1)),
        mutation=("x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = x.permute(0, 4, 2, 3, 5, 1)")),
    Bug("patchify.col_row", "ViT.patchify",
        "inside a patch the pixels are flattened column-first; the order is (row, column, channel).",
        variant=_patchify_variant((0, 2, 4, 5, 3, 1)),
        mutation=("x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = x.permute(0, 2, 4, 5, 3, 1)")),
    Bug("patchify.plain_reshape", "ViT.patchify",
        "a single reshape does not cut patches: split H and W into (H/P, P) and (W/P, P), permute, then "
        "flatten.",
        variant=lambda c: c["tensors"]["x"].reshape(c["tensors"]["x"].shape[0], -1,
                                                    c["params"]["patch_size"] ** 2 * c["tensors"]["x"].shape[1]),
        mutation=("x = images.reshape(B, C, gh, patch_size, gw, patch_size)  # (B, C, H/P, P, W/P, P)\n"
                   "    x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = images")),
    Bug("unpatchify.channel_first", "ViT.unpatchify",
        "unpatchify reads a patch as (channel, row, column); patchify writes (row, column, channel).",
        variant=_unpatchify_variant("channel_first"),
        mutation=("x = patches.reshape(B, gh, gw, patch_size, patch_size, C)  # (B, H/P, W/P, P, P, C)\n"
                   "    x = x.permute(0, 5, 1, 3, 2, 4)",
                  "x = patches.reshape(B, gh, gw, C, patch_size, patch_size)\n"
                  "    x = x.permute(0, 3, 1, 4, 2, 5)")),
    Bug("unpatchify.column_major", "ViT.unpatchify",
        "unpatchify places the patches column by column; patchify numbers them row by row.",
        variant=_unpatchify_variant("column_major"),
        mutation=("x = patches.reshape(B, gh, gw, patch_size, patch_size, C)  # (B, H/P, W/P, P, P, C)\n"
                   "    x = x.permute(0, 5, 1, 3, 2, 4)",
                  "x = patches.reshape(B, gw, gh, patch_size, patch_size, C)\n"
                  "    x = x.permute(0, 5, 2, 3, 1, 4)")),
    Bug("sincos_1d.swapped", "ViT.sincos_1d_embedding",
        "sin and cos are swapped: sin goes in the even columns (0, 2, ...), cos in the odd ones.",
        variant=_sincos_1d_variant("swapped"),
        mutation=("emb[:, 0::2] = angles.sin()\n"
                   "    emb[:, 1::2] = angles.cos()",
                  "emb[:, 0::2] = angles.cos()\n"
                  "    emb[:, 1::2] = angles.sin()")),
    Bug("sincos_1d.halves", "ViT.sincos_1d_embedding",
        "sin and cos are placed in two halves; they must be interleaved: column 2i is sin, column 2i+1 is cos.",
        variant=_sincos_1d_variant("halves"),
        mutation=("emb[:, 0::2] = angles.sin()\n"
                   "    emb[:, 1::2] = angles.cos()",
                  "emb[:, : dim // 2] = angles.sin()\n"
                  "    emb[:, dim // 2 :] = angles.cos()")),
    Bug("sincos_1d.frequency", "ViT.sincos_1d_embedding",
        "the frequencies are wrong: ω_i = 10000^(-2i / D) for the i-th sin/cos pair.",
        variant=_sincos_1d_variant("frequency"),
        mutation=("-torch.arange(0, dim, 2, dtype=torch.float32) / dim",
                  "-torch.arange(0, dim // 2, dtype=torch.float32) / dim")),
    Bug("sincos_2d.swapped", "ViT.sincos_2d_embedding",
        "the halves are swapped: the first D/2 features encode the patch row, the last D/2 the column.",
        variant=_sincos_2d_variant("swapped"),
        mutation=("torch.cat([rows, cols], dim=-1)",
                  "torch.cat([cols, rows], dim=-1)")),
    Bug("sincos_2d.column_major", "ViT.sincos_2d_embedding",
        "the patches are numbered column by column; patch n sits at row n // grid_w, column n % grid_w.",
        variant=_sincos_2d_variant("column_major"),
        mutation=("torch.cat([rows, cols], dim=-1).reshape(",
                  "torch.cat([rows, cols], dim=-1).transpose(0, 1).reshape(")),
    Bug("patch_embed.column_major", "ViT.PatchEmbed.forward",
        "the patch grid is flattened column by column: flatten (H/P, W/P) as it is (row by row).",
        variant=_patch_embed_variant("column_major"),
        mutation=("return x.flatten(2).transpose(1, 2)  # (B, N, D)",
                  "return x.transpose(2, 3).flatten(2).transpose(1, 2)")),
    Bug("patch_embed.no_transpose", "ViT.PatchEmbed.forward",
        "(B, D, N) was reshaped to (B, N, D), which scrambles features: use transpose(1, 2), not reshape.",
        variant=_patch_embed_variant("no_transpose"),
        mutation=("return x.flatten(2).transpose(1, 2)  # (B, N, D)",
                  "return x.flatten(2).reshape(x.shape[0], -1, x.shape[1])")),
    Bug("features.cls_appended", "ViT.ViT.forward_features",
        "the class token is appended; it must be *prepended* (token 0) with torch.cat([cls, x], dim=1).",
        variant=_features_variant("cls_appended"),
        mutation=("x = torch.cat([cls, x], dim=1)",
                  "x = torch.cat([x, cls], dim=1)")),
    Bug("features.cls_no_position", "ViT.ViT.forward_features",
        "the class token gets no position: concatenate it first, then add the whole pos_embed (its row 0 "
        "is the class token's position).",
        variant=_features_variant("cls_no_position"),
        mutation=("            x = torch.cat([cls, x], dim=1)  # (B, 1 + N, D)\n"
                   "        if self.pos_embed is not None:\n"
                   "            x = x + self.pos_embed\n",
                  "            x = torch.cat([cls, x + self.pos_embed[:, 1:]], dim=1)\n")),
    Bug("features.no_pos_embed", "ViT.ViT.forward_features",
        "the position embedding is not added: x = x + self.pos_embed after the class token is prepended.",
        variant=_features_variant("no_pos_embed"),
        mutation=("            x = x + self.pos_embed\n",
                  "            x = x\n")),
    Bug("features.no_final_norm", "ViT.ViT.forward_features",
        "the final LayerNorm is missing: return self.norm(x) after the blocks.",
        variant=_features_variant("no_final_norm"),
        mutation=("        return self.norm(x)\n"
                   "        ### END SOLUTION",
                  "        return x\n"
                  "        ### END SOLUTION")),
)

for _part, _cases in (("ViT.patchify", lambda ref: _patchify_cases("patchify")),
                      ("ViT.unpatchify", lambda ref: _patchify_cases("unpatchify")),
                      ("ViT.sincos_1d_embedding", lambda ref: _sincos_cases("sincos_1d")),
                      ("ViT.sincos_2d_embedding", lambda ref: _sincos_cases("sincos_2d")),
                      ("ViT.PatchEmbed.forward", _patch_embed_cases),
                      ("ViT.ViT.forward_features", lambda ref: _vit_cases(ref, "forward_features")),
                      ("ViT.model", lambda ref: _vit_cases(ref, "model"))):
    grader(_part, cases=_cases, run=_run, bugs=[b for b in BUGS if b.part == _part])
### END GRADER
