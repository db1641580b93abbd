"""The grader's oracles for transformer.py and ViT.py: correct layers that stand in for the student's.

The whole module is the grader's: a release strips it to this docstring (coursetools/release.py).
"""
from __future__ import annotations

### BEGIN GRADER
# Layers with the template's parameter names, built from torch built-ins only, so that a part is graded apart from
# the others (Block.forward with correct sub-layers, ViT parts when the student's transformer.py does not import,
# a composite with correct stand-ins for the parts that already failed on their own). The runs of
# coursecore/parts/transformer.py and ViT.py and their bugs use them, in the sandbox and in the grader's process.
import types

import torch
import torch.nn.functional as F
from torch import nn


def activations() -> dict:
    """The template's activation names -> torch's modules."""
    return {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU,
            "tanh": nn.Tanh, "silu": nn.SiLU}


def attention(q, k, v, mask=None, dropout=None):
    # The weights come out of the built-in too: attending to the identity matrix returns them.
    eye = torch.eye(q.shape[-2], dtype=q.dtype).expand(*q.shape[:-1], q.shape[-2])
    weights = F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)  # (B, h, N, N)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def split_heads(attn, x):
    return x.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2)  # (B, h, N, d)


def merge_heads(attn, x):
    return x.transpose(1, 2).flatten(2)  # (B, N, D)


def attention_forward(attn, x, mask=None):
    """Attention.forward from the module's own qkv / proj layers and torch's fused attention."""
    B, N, D = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, D // attn.num_heads)  # (B, N, 3, h, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 × (B, h, N, d)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
    return attn.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


def mlp_forward(mlp, x):
    return mlp.fc2(mlp.act(mlp.fc1(x)))


def block_forward(block, x, mask=None):
    from coursecore.parts.transformer import pre_norm_block  # the recipe's one copy (public: the checks use it)

    return pre_norm_block(block, x, mask)


def patch_embed_forward(embed, x):
    return embed.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


def forward_features(model, x):
    x = model.patch_embed(x)
    if model.cls_token is not None:
        x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    if model.pos_embed is not None:
        x = x + model.pos_embed
    for block in model.blocks:
        x = block(x)
    return model.norm(x)


def sincos_1d(num_positions, dim):
    pos = torch.arange(num_positions, dtype=torch.float32)
    omega = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = torch.outer(pos, omega)  # (num_positions, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(num_positions, dim)


def sincos_2d(grid_h, grid_w, dim):
    rows = sincos_1d(grid_h, dim // 2)[:, None, :].expand(grid_h, grid_w, dim // 2)
    cols = sincos_1d(grid_w, dim // 2)[None, :, :].expand(grid_h, grid_w, dim // 2)
    return torch.cat([rows, cols], dim=-1).reshape(grid_h * grid_w, dim)


# The oracle classes, built on first use: in the sandbox that is after the student's import, and the runner puts
# this name back before every case (its guard), so no student file can hand the grader a class of its own.
_CLASSES = None


def oracle_classes() -> types.SimpleNamespace:
    """Attention, Mlp, Block, PatchEmbed: the template's constructors and parameter names, torch's computations."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build()
    return _CLASSES


def _build() -> types.SimpleNamespace:
    class OracleAttention(nn.Module):
        def __init__(self, dim, num_heads, qkv_bias=True):
            super().__init__()
            self.num_heads = num_heads
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

        forward = attention_forward

    class OracleMlp(nn.Module):
        def __init__(self, dim, hidden_dim, act="gelu"):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden_dim)
            self.act = activations()[act]()
            self.fc2 = nn.Linear(hidden_dim, dim)

        forward = mlp_forward

    class OracleBlock(nn.Module):
        def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0,
                     drop_path=0.0, act="gelu", norm_eps=1e-6, fused_attn=True):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
            self.attn = OracleAttention(dim, num_heads, qkv_bias)
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.mlp = OracleMlp(dim, int(dim * mlp_ratio), act)

        forward = block_forward

    class OraclePatchEmbed(nn.Module):
        def __init__(self, in_chans, embed_dim, patch_size):
            super().__init__()
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

        forward = patch_embed_forward

    return types.SimpleNamespace(Attention=OracleAttention, Mlp=OracleMlp, Block=OracleBlock,
                                 PatchEmbed=OraclePatchEmbed)


def fallback_transformer(reason: str) -> types.ModuleType:
    """A stand-in `transformer` module so that ViT.py imports when the student's transformer.py does not."""
    module = types.ModuleType("transformer")
    module.ACTIVATIONS = activations()
    module.Block = oracle_classes().Block
    module.AUTOGRADER_FALLBACK = reason
    return module


def case_state(case: dict, prefix: str = "") -> dict:
    """The state dict a case's weights (`w.<prefix><name>` tensors) give the module at `prefix`."""
    return {k[2 + len(prefix):]: v for k, v in case["tensors"].items() if k.startswith("w." + prefix)}


def substitute_attention(h, T, attns, oracle_parts, patch, store=None) -> None:
    """Correct stand-ins for the student's attention / split / merge (parts that failed on their own); with a
    `store`, each call of them is recorded there too (`trace:attention`, ...). `h` is the runner's harness."""
    if "transformer.attention" in oracle_parts:
        patch.set(T, "attention", attention)
    if store is not None:
        patch.set(T, "attention", h.recording(T.attention, "attention", store))
    for attn in attns:
        for part, method, oracle in (("transformer.Attention.split_heads", "split_heads", split_heads),
                                     ("transformer.Attention.merge_heads", "merge_heads", merge_heads)):
            fn = getattr(attn, method)
            if part in oracle_parts:
                fn = types.MethodType(oracle, attn)
            if store is not None:
                fn = h.recording(fn, method, store)
            if part in oracle_parts or store is not None:
                patch.set(attn, method, fn)


def substitute_model(h, T, model, subs: set, patch) -> None:
    """Correct stand-ins inside a whole student ViT for the parts that already failed on their own."""
    if "ViT.ViT.forward_features" in subs:
        patch.set(model, "forward_features", types.MethodType(forward_features, model))
    if "ViT.PatchEmbed.forward" in subs and hasattr(model, "patch_embed"):
        patch.set(model.patch_embed, "forward", types.MethodType(patch_embed_forward, model.patch_embed))
    for block in getattr(model, "blocks", ()):
        if "transformer.Block.forward" in subs:
            patch.set(block, "forward", types.MethodType(block_forward, block))
        if "transformer.Mlp.forward" in subs and hasattr(block, "mlp"):
            patch.set(block.mlp, "forward", types.MethodType(mlp_forward, block.mlp))
    attns = [b.attn for b in getattr(model, "blocks", ()) if hasattr(b, "attn")]
    if "transformer.Attention.forward" in subs:
        for attn in attns:
            patch.set(attn, "forward", types.MethodType(attention_forward, attn))
    substitute_attention(h, T, attns, subs, patch)
### END GRADER
