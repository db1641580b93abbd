"""Vision Transformer: patches, position embeddings, class token, encoder, classification head.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

With the defaults this is the classic ViT of Dosovitskiy et al. (2021): class token, learnable position
embedding that includes the class token, pre-norm blocks, exact GELU, qkv bias, LayerNorm eps 1e-6.
Parameter names follow timm, so `ViT` and `timm.models.vision_transformer.VisionTransformer` of the
same sizes load each other's state dict.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn

from transformer import ACTIVATIONS, Block

POS_EMBEDS = ("learnable", "cosine", "sincos2d", "none")
POOLS = ("token", "mean")
# Base of the sinusoid wavelengths (Vaswani et al., 2017): wavelengths run from 2π to 10000·2π.
SINCOS_BASE = 10000.0


def _pair(size: Union[int, tuple[int, int]]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping P×P patches and flatten each one.

    Patches are numbered row by row (left to right, then top to bottom); inside a patch the values are
    ordered (row, column, channel), the layout of einops' 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'.

    Args:
        images: tensor of shape (B, C, H, W); H and W must be multiples of patch_size.
        patch_size: P, the side of a square patch in pixels.

    Returns:
        Tensor of shape (B, N, P·P·C) with N = (H / P)·(W / P).
    """
    B, C, H, W = images.shape
    if H % patch_size or W % patch_size:
        raise ValueError(
            f"patchify: image of size {H}x{W} cannot be cut into {patch_size}x{patch_size} patches; "
            f"use a patch_size that divides both {H} and {W}"
        )
    ### TODO patchify: (B, C, H, W) -> (B, N, P·P·C), patches row by row, values (row, col, channel).
    ###   1. Split H into (H/P, P) and W into (W/P, P) with one reshape -> (B, C, H/P, P, W/P, P).
    ###   2. Permute to (B, H/P, W/P, P, P, C): patch grid first, then the inside of a patch, channel last.
    ###   3. Flatten the grid into N and the patch into P·P·C with one reshape.
    ### BEGIN SOLUTION
    gh, gw = H // patch_size, W // patch_size
    x = images.reshape(B, C, gh, patch_size, gw, patch_size)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C)
    return x.reshape(B, gh * gw, patch_size * patch_size * C)  # (B, N, P·P·C)
    ### END SOLUTION


def unpatchify(patches: torch.Tensor, patch_size: int, image_size: Union[int, tuple[int, int]]) -> torch.Tensor:
    """Inverse of `patchify`: put flattened patches back into images.

    Args:
        patches: tensor of shape (B, N, P·P·C), as returned by patchify.
        patch_size: P.
        image_size: H (square images) or (H, W).

    Returns:
        Tensor of shape (B, C, H, W).
    """
    H, W = _pair(image_size)
    B, N, patch_dim = patches.shape
    gh, gw = H // patch_size, W // patch_size
    if N != gh * gw or patch_dim % (patch_size * patch_size):
        raise ValueError(
            f"unpatchify: {N} patches of {patch_dim} values do not tile a {H}x{W} image with "
            f"{patch_size}x{patch_size} patches (expected {gh * gw} patches of P·P·C values)"
        )
    C = patch_dim // (patch_size * patch_size)
    ### TODO unpatchify: (B, N, P·P·C) -> (B, C, H, W), the exact inverse of patchify.
    ###   Undo patchify's three steps in reverse order: reshape, inverse permutation, reshape.
    ### BEGIN SOLUTION
    x = patches.reshape(B, gh, gw, patch_size, patch_size, C)  # (B, H/P, W/P, P, P, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, H/P, P, W/P, P)
    return x.reshape(B, C, H, W)  # (B, C, H, W)
    ### END SOLUTION


def sincos_1d_embedding(num_positions: int, dim: int) -> torch.Tensor:
    """1-D sinusoidal ("cosine") position embedding of Vaswani et al. (2017).

    Row p holds sin(p·ω_i) in column 2i and cos(p·ω_i) in column 2i+1, with ω_i = 10000^(-2i / dim).

    Args:
        num_positions: number of positions (rows).
        dim: D, the embedding size; must be even.

    Returns:
        Tensor of shape (num_positions, D), dtype float32.
    """
    if dim % 2:
        raise ValueError(f"the 1-D sin-cos embedding needs an even embed_dim, got {dim}")
    ### TODO sincos_1d_embedding: table of shape (num_positions, D) with sin in even and cos in odd columns.
    ###   1. positions p = 0 .. num_positions-1 and frequencies ω_i = SINCOS_BASE ** (-2i / dim), i < dim/2.
    ###   2. angles = outer product p · ω_i, of shape (num_positions, D/2).
    ###   3. Fill columns 0, 2, 4, ... with sin(angles) and 1, 3, 5, ... with cos(angles). float32.
    ### BEGIN SOLUTION
    pos = torch.arange(num_positions, dtype=torch.float32)
    omega = SINCOS_BASE ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (D/2,)
    angles = pos[:, None] * omega[None, :]  # (num_positions, D/2)
    emb = torch.zeros(num_positions, dim)  # not empty(): a column left unfilled by mistake reads 0, never old memory
    emb[:, 0::2] = angles.sin()
    emb[:, 1::2] = angles.cos()
    return emb
    ### END SOLUTION


def sincos_2d_embedding(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """2-D sin-cos position embedding: half the features encode the patch row, half the column.

    The embedding of the patch at (row r, column c) is concat(E1(r), E1(c)), where E1 is
    `sincos_1d_embedding` with dim / 2 features. Patches are numbered row by row, as in patchify.

    Args:
        grid_h, grid_w: the patch grid, H / P rows and W / P columns.
        dim: D; must be a multiple of 4.

    Returns:
        Tensor of shape (grid_h · grid_w, D), dtype float32.
    """
    if dim % 4:
        raise ValueError(f"the 2-D sin-cos embedding needs embed_dim divisible by 4, got {dim}")
    ### TODO sincos_2d_embedding: concat(E1(row), E1(col)) for every patch, patches row by row.
    ###   1. Build E1 for the rows (grid_h, D/2) and for the columns (grid_w, D/2) with sincos_1d_embedding.
    ###   2. Patch n sits at row n // grid_w and column n % grid_w: index E1 with those, or broadcast
    ###      to (grid_h, grid_w, D/2) and flatten.
    ###   3. Concatenate the row half and the column half on the feature axis.
    ### BEGIN SOLUTION
    rows = sincos_1d_embedding(grid_h, dim // 2)  # (grid_h, D/2)
    cols = sincos_1d_embedding(grid_w, dim // 2)  # (grid_w, D/2)
    rows = rows[:, None, :].expand(grid_h, grid_w, dim // 2)  # (grid_h, grid_w, D/2)
    cols = cols[None, :, :].expand(grid_h, grid_w, dim // 2)  # (grid_h, grid_w, D/2)
    return torch.cat([rows, cols], dim=-1).reshape(grid_h * grid_w, dim)  # (N, D)
    ### END SOLUTION


@dataclass
class ViTConfig:
    """Every size of a ViT. Derived sizes (grid, N, d, ...) are properties, never passed in."""

    image_size: Union[int, tuple[int, int]] = 32  # H (square) or (H, W), pixels
    patch_size: int = 4  # P: side of a square patch, pixels
    in_chans: int = 3  # C: 3 for RGB, 1 for grey-scale
    num_classes: int = 10  # K; 0 gives a feature extractor (no head)
    embed_dim: int = 256  # D: width of every token
    depth: int = 8  # number of encoder blocks
    num_heads: int = 4  # h: embed_dim must be divisible by it
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of D (4 in the paper)
    qkv_bias: bool = True  # bias in the qkv projection (as in the paper and timm)
    pos_embed: str = "learnable"  # one of POS_EMBEDS
    pool: str = "token"  # 'token': classify the class token; 'mean': average the patch tokens
    act: str = "gelu"  # MLP activation, a key of transformer.ACTIVATIONS
    norm_eps: float = 1e-6  # LayerNorm epsilon (1e-6 as in the paper and timm)
    drop_rate: float = 0.0  # dropout on embeddings, attention output and MLP
    attn_drop_rate: float = 0.0  # dropout on attention weights
    drop_path_rate: float = 0.0  # stochastic depth of the last block; rises linearly from 0
    init_std: float = 0.02  # std of the truncated-normal init of linear layers and embeddings
    fused_attn: bool = True  # F.scaled_dot_product_attention instead of the manual path

    def __post_init__(self):
        for name in ("patch_size", "in_chans", "embed_dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ViTConfig.{name} must be a positive integer, got {value!r}")
        H, W = self.image_hw
        for side, size in (("height", H), ("width", W)):
            if size % self.patch_size:
                divisors = [p for p in range(1, size + 1) if size % p == 0]
                raise ValueError(
                    f"image {side} {size} is not divisible by patch_size {self.patch_size}: the image "
                    f"must be cut into whole patches; choose a patch_size among {divisors}"
                )
        if self.embed_dim % self.num_heads:
            divisors = [n for n in range(1, self.embed_dim + 1) if self.embed_dim % n == 0]
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}: "
                f"choose num_heads among {divisors}"
            )
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 means no head), got {self.num_classes}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        choices = {"pos_embed": POS_EMBEDS, "pool": POOLS, "act": tuple(sorted(ACTIVATIONS))}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.pos_embed == "cosine" and self.embed_dim % 2:
            raise ValueError(f"pos_embed 'cosine' needs an even embed_dim, got {self.embed_dim}")
        if self.pos_embed == "sincos2d" and self.embed_dim % 4:
            raise ValueError(f"pos_embed 'sincos2d' needs embed_dim divisible by 4, got {self.embed_dim}")

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return _pair(self.image_size)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H / P, W / P): patch rows and columns."""
        H, W = self.image_hw
        return H // self.patch_size, W // self.patch_size

    @property
    def num_patches(self) -> int:
        """N for the patches alone."""
        gh, gw = self.grid_size
        return gh * gw

    @property
    def num_prefix_tokens(self) -> int:
        """1 with a class token (pool='token'), else 0."""
        return 1 if self.pool == "token" else 0

    @property
    def num_tokens(self) -> int:
        """Tokens the encoder sees: patches plus the class token."""
        return self.num_patches + self.num_prefix_tokens

    @property
    def head_dim(self) -> int:
        """d = D / h."""
        return self.embed_dim // self.num_heads

    @property
    def patch_dim(self) -> int:
        """P·P·C: values in one flattened patch."""
        return self.patch_size * self.patch_size * self.in_chans

    @property
    def mlp_hidden_dim(self) -> int:
        """Width of the MLP's hidden layer."""
        return int(self.embed_dim * self.mlp_ratio)


class PatchEmbed(nn.Module):
    """Cut an image into P×P patches and project each one to D features with one strided convolution.

    A Conv2d with kernel P and stride P is a linear layer applied to every patch: it equals
    patchify(x) @ Wᵀ + b with the weight rearranged to patchify's (row, column, channel) order.
    """

    def __init__(self, image_size: Union[int, tuple[int, int]], patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.image_hw = _pair(image_size)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a readable error when x is not a batch of (C, H, W) images of the configured size."""
        expected = (self.in_chans, *self.image_hw)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ViT expects images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got "
                f"{tuple(x.shape)}; check the data's channels and size against ViTConfig.in_chans / image_size"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed patches: images (B, C, H, W) -> tokens (B, N, D), patches row by row."""
        self.check_input(x)
        ### TODO PatchEmbed.forward: project every patch with self.proj and lay the patches out as tokens.
        ###   1. self.proj(x) is (B, D, H/P, W/P): one D-vector per patch, on the patch grid.
        ###   2. Flatten the grid into N (row by row) and move D last -> (B, N, D).
        ### BEGIN SOLUTION
        x = self.proj(x)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)
        ### END SOLUTION


class ViT(nn.Module):
    """Vision Transformer for classification.

    Build it from a config or from keywords (or both: keywords override the config)::

        ViT(image_size=32, patch_size=4, num_classes=10, embed_dim=256, depth=8, num_heads=4)
        ViT(ViTConfig(num_classes=100), depth=4)

    Attention maps of every block come out of `get_attention_maps(images)`.
    """

    def __init__(self, config: Optional[ViTConfig] = None, **overrides):
        super().__init__()
        known = {f.name for f in dataclasses.fields(ViTConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown ViT option(s) {unknown}; the options are the fields of ViTConfig: {sorted(known)}")
        cfg = dataclasses.replace(config or ViTConfig(), **overrides)
        self.config = cfg
        D = cfg.embed_dim

        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.in_chans, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.pool == "token" else None
        pos_shape = (1, cfg.num_tokens, D)  # the class token gets a position too
        if cfg.pos_embed == "learnable":
            self.pos_embed = nn.Parameter(torch.zeros(pos_shape))
        elif cfg.pos_embed == "none":
            self.pos_embed = None
        else:
            # Fixed tables are buffers: not trained, not in the state dict, rebuilt from the config.
            self.register_buffer("pos_embed", self.fixed_pos_embed().reshape(pos_shape), persistent=False)
        self.pos_drop = nn.Dropout(cfg.drop_rate)

        # Stochastic depth grows linearly with depth: early blocks are kept more often.
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.drop_rate, cfg.attn_drop_rate, rate,
                  cfg.act, cfg.norm_eps, cfg.fused_attn)
            for rate in rates
        )
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.head = nn.Linear(D, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.init_weights()

    def fixed_pos_embed(self) -> torch.Tensor:
        """The sin-cos table for pos_embed 'cosine' or 'sincos2d', of shape (num_tokens, D).

        'cosine' numbers the class token 0 and the patches 1..N; 'sincos2d' gives the class token zeros.
        """
        cfg = self.config
        if cfg.pos_embed == "cosine":
            return sincos_1d_embedding(cfg.num_tokens, cfg.embed_dim)
        table = sincos_2d_embedding(*cfg.grid_size, cfg.embed_dim)  # (N, D)
        prefix = torch.zeros(cfg.num_prefix_tokens, cfg.embed_dim)
        return torch.cat([prefix, table], dim=0)  # (num_tokens, D)

    def init_weights(self) -> None:
        """Truncated-normal weights, zero biases, unit LayerNorms (the timm / ViT recipe)."""
        std = self.config.init_std
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=std)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=std)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images to normalised tokens.

        Args:
            x: images of shape (B, C, H, W).

        Returns:
            Tokens of shape (B, N, D) where N = num_patches (+1 with a class token, which comes first).
        """
        ### TODO ViT.forward_features: images -> tokens -> encoder -> final norm.
        ###   1. Embed the patches: self.patch_embed(x) is (B, N, D).
        ###   2. If self.cls_token is not None, *prepend* it to every image's tokens (expand it to the batch).
        ###   3. If self.pos_embed is not None, add it (it already covers the class token's position).
        ###   4. Apply self.pos_drop, then every block of self.blocks in order, then self.norm.
        ### BEGIN SOLUTION
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
            x = torch.cat([cls, x], dim=1)  # (B, 1 + N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
        ### END SOLUTION

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the tokens (B, N, D) to (B, D), then classify to logits (B, K) unless pre_logits."""
        x = x[:, 0] if self.config.pool == "token" else x.mean(dim=1)  # (B, D)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, K)."""
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def get_attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block for images x (computed with the manual path).

        Returns:
            A list with one tensor of shape (B, h, N, N) per block, N counting the class token.
        """
        attns = [block.attn for block in self.blocks]
        for attn in attns:
            attn.keep_attention = True
        try:
            self.forward_features(x)
            return [attn.attention_map for attn in attns]
        finally:
            for attn in attns:
                attn.keep_attention = False
                attn.attention_map = None
