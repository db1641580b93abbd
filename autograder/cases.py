"""The hidden grading cases: seeded inputs and weights of small distinct sizes, several configs per part.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

A case is a plain dict `{"op", "params", "tensors", "label"}`: `op` names the call in `runner.run_case`,
`params` holds sizes, `tensors` the inputs, the cotangents `g` for the gradient check and the weights
(`w.<name>`), and `label` the public description used in feedback (sizes only, never values). Weights are
the reference module's own state dict after a seeded re-draw of every parameter at unit-ish scale (the
default init, with zero biases and std 0.02, would hide missing biases and make attention nearly
uniform, so a missing 1/√d could pass).
"""
from __future__ import annotations

import functools
import math
import threading

import torch

from coursecore.parts import GRADER, POINTS
from coursecore.parts.draws import BASE_SEED, _gen, _randn  # noqa: F401 - BASE_SEED: tests read it here

WEIGHT_SCALE = 1.0  # weights ~ N(0, WEIGHT_SCALE² / fan_in): activations stay O(1) whatever the width
NORM_JITTER = 0.3  # LayerNorm gains 1 + NORM_JITTER·N(0, 1), so a missing norm shows


@torch.no_grad()
def _weights(module: torch.nn.Module, g: torch.Generator) -> dict:
    """Redraw every parameter of `module` from `g`; return its state dict as `w.<name>` tensors."""
    for name, p in module.named_parameters():
        if "norm" in name and name.endswith("weight"):
            p.copy_(1 + NORM_JITTER * _randn(g, *p.shape))
        else:
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            p.copy_(_randn(g, *p.shape) * WEIGHT_SCALE / math.sqrt(fan_in))
    return {f"w.{k}": v.detach().clone() for k, v in module.state_dict().items()}


def _mask(g: torch.Generator, shape) -> torch.Tensor:
    """A random boolean mask that always lets a query see itself (no row is fully masked)."""
    mask = torch.rand(*shape, generator=g) > 0.4
    n = shape[-1]
    return mask | torch.eye(n, dtype=torch.bool).expand(*shape)


def _attention_cases():
    sizes = [  # (B, h, N, d, dtype, mask shape or None)
        (2, 3, 5, 4, torch.float32, None),
        (1, 2, 7, 6, torch.float32, "full"),
        (3, 1, 4, 8, torch.float64, None),
        (2, 2, 6, 3, torch.float32, "shared"),
    ]
    cases = []
    for i, (B, h, N, d, dtype, mask) in enumerate(sizes):
        g = _gen(i)
        t = {name: _randn(g, B, h, N, d, dtype=dtype) for name in ("q", "k", "v", "g")}
        t["gw"] = _randn(g, B, h, N, N, dtype=dtype)
        label = f"q, k, v of shape (B, h, N, d) = {(B, h, N, d)}, {str(dtype)[6:]}"
        if mask:
            t["mask"] = _mask(g, (B, h, N, N) if mask == "full" else (1, 1, N, N))
            label += f", boolean mask of shape {tuple(t['mask'].shape)}"
        cases.append({"op": "attention", "params": {"mask": bool(mask)}, "tensors": t, "label": label})
    return cases


def _heads_cases(op: str):
    sizes = [(2, 5, 12, 3, torch.float32), (3, 4, 10, 2, torch.float32), (1, 6, 12, 4, torch.float64)]
    cases = []
    for i, (B, N, D, h, dtype) in enumerate(sizes):
        g = _gen(10 + i)
        split, merged = (B, h, N, D // h), (B, N, D)
        shape_in, shape_out = (merged, split) if op == "split_heads" else (split, merged)
        t = {"x": _randn(g, *shape_in, dtype=dtype), "g": _randn(g, *shape_out, dtype=dtype)}
        label = f"x of shape {shape_in} with D={D}, h={h}, {str(dtype)[6:]}"
        cases.append({"op": op, "params": {"dim": D, "heads": h}, "tensors": t, "label": label})
    return cases


def _attention_forward_cases(ref):
    sizes = [(2, 5, 12, 3, True, None), (1, 7, 8, 2, True, "full"), (3, 4, 6, 3, False, None)]
    cases = []
    for i, (B, N, D, h, bias, mask) in enumerate(sizes):
        g = _gen(20 + i)
        t = _weights(ref.transformer.Attention(D, h, bias), g)
        t.update(x=_randn(g, B, N, D), g=_randn(g, B, N, D))
        label = f"Attention(dim={D}, num_heads={h}, qkv_bias={bias}, fused_attn=False), x of shape {(B, N, D)}"
        if mask:
            t["mask"] = _mask(g, (B, h, N, N))
            label += " with a mask"
        else:
            t["perm"] = torch.randperm(N, generator=g)
        cases.append({"op": "attention_forward", "params": {"dim": D, "heads": h, "qkv_bias": bias},
                      "tensors": t, "label": label})
    return cases


def _mlp_cases(ref):
    sizes = [(2, 5, 12, 20, "gelu", 0.5), (3, 4, 6, 9, "relu", 0.0), (1, 3, 8, 32, "silu", 0.2)]
    cases = []
    for i, (B, N, D, hidden, act, drop) in enumerate(sizes):
        g = _gen(30 + i)
        t = _weights(ref.transformer.Mlp(D, hidden, act, drop), g)
        t.update(x=_randn(g, B, N, D), g=_randn(g, B, N, D))
        t["perm"] = torch.randperm(N, generator=g)
        label = f"Mlp(dim={D}, hidden_dim={hidden}, act={act!r}, drop={drop}) in eval mode, x of shape {(B, N, D)}"
        cases.append({"op": "mlp", "params": {"dim": D, "hidden": hidden, "act": act, "drop": drop},
                      "tensors": t, "label": label})
    return cases


def _block_cases(ref):
    sizes = [(2, 5, 12, 3, 2.0, "gelu", 0.3, None), (1, 6, 8, 2, 1.5, "relu", 0.0, "full"),
             (3, 4, 6, 1, 4.0, "tanh", 0.0, None)]
    cases = []
    for i, (B, N, D, h, ratio, act, drop, mask) in enumerate(sizes):
        g = _gen(40 + i)
        params = {"dim": D, "heads": h, "mlp_ratio": ratio, "act": act, "drop": drop, "norm_eps": 1e-6}
        t = _weights(ref.transformer.Block(D, h, ratio, True, drop, drop, drop, act, 1e-6), g)
        t.update(x=_randn(g, B, N, D), g=_randn(g, B, N, D))
        label = f"Block(dim={D}, num_heads={h}, mlp_ratio={ratio}, act={act!r}, drop={drop}) in eval mode, " \
                f"x of shape {(B, N, D)}"
        if mask:
            t["mask"] = _mask(g, (B, h, N, N))
            label += " with a mask"
        else:
            t["perm"] = torch.randperm(N, generator=g)
        cases.append({"op": "block", "params": params, "tensors": t, "label": label})
    return cases


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
        cases.append({"op": op, "params": {"patch_size": P, "image_size": [H, W]}, "tensors": t, "label": label})
    return cases


def _sincos_cases(op: str):
    if op == "sincos_1d":
        sizes = [(5, 12), (9, 6), (1, 4), (17, 32)]
        return [{"op": op, "params": {"n": n, "dim": D}, "tensors": {},
                 "label": f"sincos_1d_embedding(num_positions={n}, dim={D})"} for n, D in sizes]
    sizes = [(3, 5, 12), (2, 2, 8), (4, 1, 16), (1, 6, 4)]
    return [{"op": op, "params": {"grid_h": gh, "grid_w": gw, "dim": D}, "tensors": {},
             "label": f"sincos_2d_embedding(grid_h={gh}, grid_w={gw}, dim={D})"} for gh, gw, D in sizes]


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
        cases.append({"op": "patch_embed", "params": params, "tensors": t, "label": label})
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
        cases.append({"op": op, "params": {"config": config}, "tensors": t, "label": label})
    return cases


# The hidden cases of every part, built with the reference implementation `ref` (for module weights).
CASE_BUILDERS = {
    "transformer.attention": lambda ref: _attention_cases(),
    "transformer.Attention.split_heads": lambda ref: _heads_cases("split_heads"),
    "transformer.Attention.merge_heads": lambda ref: _heads_cases("merge_heads"),
    "transformer.Attention.forward": lambda ref: _attention_forward_cases(ref),
    "transformer.Mlp.forward": lambda ref: _mlp_cases(ref),
    "transformer.Block.forward": lambda ref: _block_cases(ref),
    "ViT.patchify": lambda ref: _patchify_cases("patchify"),
    "ViT.unpatchify": lambda ref: _patchify_cases("unpatchify"),
    "ViT.sincos_1d_embedding": lambda ref: _sincos_cases("sincos_1d"),
    "ViT.sincos_2d_embedding": lambda ref: _sincos_cases("sincos_2d"),
    "ViT.PatchEmbed.forward": lambda ref: _patch_embed_cases(ref),
    "ViT.ViT.forward_features": lambda ref: _vit_cases(ref, "forward_features"),
    "ViT.model": lambda ref: _vit_cases(ref, "model"),
}


def build_cases(ref, part: str) -> list[dict]:
    """The cases of one part, built with the reference implementation `ref` (for module weights)."""
    if part not in CASE_BUILDERS and part in GRADER:  # declared whole in coursecore/parts/<module>.py
        return [{"op": "declared", **case, "part": part} for case in GRADER[part].cases(ref)]
    if part not in CASE_BUILDERS:
        known = "declared" if part in POINTS else "not declared in coursecore/parts/<module>.py either"
        raise KeyError(f"part {part!r} has no hidden cases: add a builder to CASE_BUILDERS in autograder/cases.py "
                       f"(it is {known}; tests/test_parts.py lists every gap)")
    return CASE_BUILDERS[part](ref)


_BUILD_LOCK = threading.Lock()  # impl.load and the global torch seed are not thread-safe


def graded_part(solutions_dir: str, part: str) -> list:
    """Cases and reference outputs of one part: [(case, expected outputs)]; built once per process."""
    with _BUILD_LOCK:
        return _graded_part(solutions_dir, part)


@functools.lru_cache(maxsize=None)
def _graded_part(solutions_dir: str, part: str) -> list:
    from autograder import runner
    from coursecore import impl

    ref = impl.load(solutions_dir)
    pairs = []
    for case in build_cases(ref, part):
        torch.manual_seed(0)
        pairs.append((case, runner.clean_outputs(runner.run_case(ref, case))))
    return pairs


def graded_cases(solutions_dir: str) -> dict:
    """Cases and reference outputs of every part: {part: [(case, expected outputs)]}."""
    return {part: graded_part(solutions_dir, part) for part in POINTS}
