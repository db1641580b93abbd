# Your file: write your code where a TODO banner asks for it (generated from solutions/transformer.py).
"""Transformer encoder: scaled dot-product attention, multi-head self-attention, MLP, pre-norm block.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

Parameter names follow timm (`attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2`, `norm1`, `norm2`), so a
state dict moves between this file, the reference solution and `timm` without renaming anything.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Activations selectable by name in the MLP. GELU is the ViT default (exact erf form, as in the paper).
ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def get_activation(name: str) -> nn.Module:
    """Return a fresh activation module for `name` (one of ACTIVATIONS)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r}: choose one of {known}") from None


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    dropout: Optional[nn.Module] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, computed by hand: softmax(q kᵀ / √d) v.

    Args:
        q, k, v: queries, keys and values of shape (B, h, N, d).
        mask: optional boolean tensor broadcastable to (B, h, N, N); True where a query may attend to a
            key, False where it must not (that weight becomes exactly 0).
        dropout: optional module applied to the attention weights (attention dropout).

    Returns:
        out: the weighted sum of values, of shape (B, h, N, d).
        weights: the attention weights of shape (B, h, N, N); each row sums to 1.
    """
    # ----------------------------------------------------------------------------
    # TODO (attention): compute softmax(q kᵀ / √d) v and return (out, weights).
    #   1. Scores: multiply q by kᵀ over the last two axes and scale by 1/√d, d = q.shape[-1].
    #   2. If a mask is given, set the scores of forbidden pairs (mask == False) to float("-inf").
    #   3. Softmax over the *keys* axis, so that each query's weights sum to 1.
    #   4. Apply `dropout` to the weights when it is given, then multiply by v.
    # Our solution is 6 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("transformer.py: implement attention")


class DropPath(nn.Module):
    """Stochastic depth: during training, drop a sample's whole residual branch with probability p.

    Surviving samples are scaled by 1 / (1 - p) so the expected output is unchanged; in eval mode this is
    the identity.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        # One Bernoulli draw per sample, broadcast over the tokens and features.
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention with a fused path and a manual path.

    `fused_attn=True` uses `F.scaled_dot_product_attention` (fast, memory-efficient); False uses
    `attention` above, which also keeps the weights in `self.attention_map` when `keep_attention` is set.
    Both paths compute the same function, which is how you can check your manual path.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused_attn: bool = True,
    ):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(
                f"embed_dim {dim} is not divisible by num_heads {num_heads}: "
                f"each head gets embed_dim / num_heads features, so pick num_heads among the divisors of {dim}"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.fused_attn = fused_attn
        # When True, forward takes the manual path and stores the weights (B, h, N, N) in attention_map.
        self.keep_attention = False
        self.attention_map: Optional[torch.Tensor] = None
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Split the embedding into heads: (B, N, D) -> (B, h, N, d).

        Head i owns features [i·d, (i+1)·d) of the embedding.
        """
        # ----------------------------------------------------------------------------
        # TODO (Attention.split_heads): reshape (B, N, D) into (B, h, N, d).
        #   1. View the last axis D as (h, d): head i owns the i-th block of d consecutive features.
        #   2. Swap the token and head axes so that each head sees its own (N, d) matrix.
        #   Use self.num_heads and self.head_dim; no loops.
        # Our solution is 3 lines. No Python loops over the batch.
        # ----------------------------------------------------------------------------
        raise NotImplementedError("transformer.py: implement Attention.split_heads")

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the heads again: (B, h, N, d) -> (B, N, D). The exact inverse of split_heads."""
        # ----------------------------------------------------------------------------
        # TODO (Attention.merge_heads): undo split_heads, (B, h, N, d) -> (B, N, D).
        #   1. Swap the head and token axes back.
        #   2. Flatten (h, d) into D. After a transpose the tensor is not contiguous: use reshape.
        # Our solution is 3 lines. No Python loops over the batch.
        # ----------------------------------------------------------------------------
        raise NotImplementedError("transformer.py: implement Attention.merge_heads")

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Self-attention over the tokens of x.

        Args:
            x: tokens of shape (B, N, D).
            mask: optional boolean tensor broadcastable to (B, h, N, N), True where attention is allowed.

        Returns:
            Tensor of shape (B, N, D).
        """
        # One matmul gives q, k and v; the output features are ordered [q | k | v] as in timm.
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))  # 3 × (B, h, N, d)
        if self.fused_attn and not self.keep_attention:
            drop = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        else:
            out, weights = attention(q, k, v, mask, self.attn_drop)
            if self.keep_attention:
                self.attention_map = weights.detach()
        return self.proj_drop(self.proj(self.merge_heads(out)))  # (B, N, D)


class Mlp(nn.Module):
    """The position-wise feed-forward network: Linear(D -> hidden), activation, Linear(hidden -> D)."""

    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu", drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = get_activation(act)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to every token independently: (B, N, D) -> (B, N, D)."""
        # ----------------------------------------------------------------------------
        # TODO (Mlp.forward): fc1 -> activation -> dropout -> fc2 -> dropout.
        #   Every layer you need is built in __init__ (self.fc1, self.act, self.drop1, self.fc2, self.drop2).
        # Our solution is 2 lines. No Python loops over the batch.
        # ----------------------------------------------------------------------------
        raise NotImplementedError("transformer.py: implement Mlp.forward")


class Block(nn.Module):
    """Pre-norm transformer encoder block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        fused_attn: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop, fused_attn)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act, drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One encoder block: (B, N, D) -> (B, N, D).

        Args:
            x: tokens of shape (B, N, D).
            mask: optional attention mask, passed on to self.attn.
        """
        # ----------------------------------------------------------------------------
        # TODO (Block.forward): two pre-norm residual branches.
        #   1. x = x + drop_path1(attn(norm1(x), mask))   -- normalise *before* the sublayer, add to x.
        #   2. x = x + drop_path2(mlp(norm2(x)))
        #   Do not overwrite x in place (x += ...): autograd needs the old value.
        # Our solution is 3 lines. No Python loops over the batch.
        # ----------------------------------------------------------------------------
        raise NotImplementedError("transformer.py: implement Block.forward")
