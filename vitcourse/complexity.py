"""Closed-form complexity of a ViT: parameters per component.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

Every count is derived from a `ViTConfig` (or anything with the same fields) by formula, never by
building the model, so a student can compare their own derivation with it term by term.
"""
from __future__ import annotations


def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    """Weights n_in·n_out plus n_out biases."""
    return n_in * n_out + (n_out if bias else 0)


def count_block_parameters(cfg) -> dict[str, int]:
    """Parameters of one encoder block, per sub-layer (names as in the state dict)."""
    D, hidden = cfg.embed_dim, cfg.mlp_hidden_dim
    return {
        "norm1": 2 * D,  # LayerNorm: a scale and a shift per feature
        "attn.qkv": _linear(D, 3 * D, cfg.qkv_bias),
        "attn.proj": _linear(D, D),
        "norm2": 2 * D,
        "mlp.fc1": _linear(D, hidden),
        "mlp.fc2": _linear(hidden, D),
    }


def count_parameters(cfg) -> dict[str, int]:
    """Trainable parameters of a ViT per component, plus 'blocks' (all blocks) and 'total'.

    Fixed sin-cos position tables are buffers, not parameters, so they count 0.
    """
    D = cfg.embed_dim
    per_block = sum(count_block_parameters(cfg).values())
    counts = {
        "patch_embed.proj": _linear(cfg.patch_dim, D),  # a conv P×P×C -> D is a linear map of a patch
        "cls_token": D if cfg.pool == "token" else 0,
        "pos_embed": cfg.num_tokens * D if cfg.pos_embed == "learnable" else 0,
        "blocks": cfg.depth * per_block,
        "norm": 2 * D,
        "head": _linear(D, cfg.num_classes) if cfg.num_classes > 0 else 0,
    }
    counts["total"] = sum(counts.values())
    return counts
