# Your file: write your code where a TODO banner asks for it (generated from solutions/deit.py).
"""Data-efficient ViTs: DeiT's distillation token, its two distillation losses, and mean attention distance.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens (prefix tokens first),
    D embedding, h heads, K classes, T temperature; H'/W' the patch grid (H/P, W/P).

`DistilledViT` is DeiT (Touvron et al., 2021): a ViT with a class token AND a distillation token. The class
token's head learns from the labels, the distillation token's head from a teacher (here the course's CNN), and
at test time the two heads' logits are averaged. Its parameter names are timm's `VisionTransformerDistilled`
ones (`patch_embed.proj`, `cls_token`, `dist_token`, `pos_embed`, `blocks`, `norm`, `head`, `head_dist`), so
that model loads its state dict; the blocks are timm's own `Block`s (library code, not yours).

`mean_attention_distance` is the ViT paper's locality measure (Dosovitskiy et al., 2021, Fig. 7 and
Appendix D.7): how far, in pixels, a head looks on average from each patch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

NUM_PREFIX_TOKENS = 2  # the class token, then the distillation token, before the patches


def _pair(size: Union[int, tuple[int, int]]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass
class DeiTConfig:
    """Every size of a DistilledViT. Derived sizes (grid, N, d) are properties, never passed in."""

    image_size: Union[int, tuple[int, int]] = 32  # H (square) or (H, W), pixels
    patch_size: int = 4  # P: side of a square patch, pixels
    in_chans: int = 3  # C: 3 for RGB, 1 for grey-scale
    num_classes: int = 10  # K: both heads predict the same K classes
    embed_dim: int = 192  # D: DeiT-Tiny's width
    depth: int = 6  # encoder blocks; half of DeiT-Tiny's 12, so it trains on a T4 at CIFAR scale
    num_heads: int = 3  # h: DeiT-Tiny's; embed_dim must be divisible by it
    mlp_ratio: float = 2.0  # MLP hidden width as a multiple of D (4 in DeiT; 2 is enough for 32-pixel images)
    drop_rate: float = 0.0  # dropout on the embeddings and after attention and MLP projections
    init_std: float = 0.02  # std of the truncated-normal init of the tokens, pos_embed and linear layers
    norm_eps: float = 1e-6  # LayerNorm epsilon (timm's ViT and DeiT)

    def __post_init__(self):
        for name in ("patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DeiTConfig.{name} must be a positive integer, got {value!r}")
        for side, size in zip(("height", "width"), self.image_hw):
            if size % self.patch_size:
                raise ValueError(f"image {side} {size} is not divisible by patch_size {self.patch_size}: choose a "
                                 f"patch_size among {[p for p in range(1, size + 1) if size % p == 0]}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}: choose "
                             f"num_heads among {[n for n in range(1, self.embed_dim + 1) if self.embed_dim % n == 0]}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return _pair(self.image_size)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H', W') = (H / P, W / P): patch rows and columns."""
        H, W = self.image_hw
        return H // self.patch_size, W // self.patch_size

    @property
    def num_patches(self) -> int:
        """H'·W': the patch tokens."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_prefix_tokens(self) -> int:
        """The class and the distillation token."""
        return NUM_PREFIX_TOKENS

    @property
    def num_tokens(self) -> int:
        """N: what the encoder sees, prefix tokens and patches."""
        return self.num_prefix_tokens + self.num_patches

    @property
    def head_dim(self) -> int:
        """d = D / h."""
        return self.embed_dim // self.num_heads


class DistilledViT(nn.Module):
    """DeiT: a ViT with a class token and a distillation token, and one linear head for each.

    forward(images) in train mode returns the two heads' logits (cls, dist), each of shape (B, K), for the two
    terms of a distillation loss; in eval mode it returns their mean, of shape (B, K), as DeiT does at test time.
    Build it from a config or keywords: `DistilledViT(DeiTConfig(depth=4))`, `DistilledViT(num_classes=100)`.
    """

    def __init__(self, config: Optional[DeiTConfig] = None, **overrides):
        super().__init__()
        known = {f.name for f in dataclasses.fields(DeiTConfig)}
        if set(overrides) - known:
            raise TypeError(f"unknown DistilledViT option(s) {sorted(set(overrides) - known)}; the options are the "
                            f"fields of DeiTConfig: {sorted(known)}")
        cfg = dataclasses.replace(config or DeiTConfig(), **overrides)
        self.config = cfg
        D = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.image_hw, cfg.patch_size, cfg.in_chans, D)  # .proj: a P×P stride-P conv
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))  # (1, 1, D): read by self.head
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))  # (1, 1, D): read by self.head_dist
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, D))  # (1, N, D): both prefix tokens get one
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        norm = partial(nn.LayerNorm, eps=cfg.norm_eps)
        self.blocks = nn.Sequential(*(Block(D, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, proj_drop=cfg.drop_rate,
                                            norm_layer=norm) for _ in range(cfg.depth)))
        self.norm = norm(D)
        self.head = nn.Linear(D, cfg.num_classes)  # learns from the labels
        self.head_dist = nn.Linear(D, cfg.num_classes)  # learns from the teacher
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal tokens, position embedding and linear weights; zero biases; unit LayerNorms (timm's)."""
        std = self.config.init_std
        for token in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(token, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Images to logits: a pair in train mode, their mean in eval mode.

        Args:
            x: images of shape (B, C, H, W).

        Returns:
            Train mode (self.training): (cls_logits, dist_logits), each of shape (B, K).
            Eval mode: (cls_logits + dist_logits) / 2, of shape (B, K).
        """
        x = self.patch_embed(x)  # (B, H'·W', D)
        # ----------------------------------------------------------------------------
        # TODO (DistilledViT.forward): the two prefix tokens, the encoder, the two heads, the train / eval rule.
        #   1. Expand self.cls_token and self.dist_token to the batch, (B, 1, D) each, and concatenate
        #      [class token, distillation token, patches] along the token axis -> (B, N, D), N = 2 + H'·W'.
        #      The order matters: pos_embed[:, 0] is the class token's position, pos_embed[:, 1] the other's.
        #   2. Add self.pos_embed, apply self.pos_drop, self.blocks, then self.norm.
        #   3. cls_logits = self.head(token 0), dist_logits = self.head_dist(token 1), each (B, K).
        #   4. self.training: return the pair (cls_logits, dist_logits); otherwise their mean.
        #   Our solution is 8 lines; no Python loop over the batch.
        # Our solution is 8 lines. No Python loops over the batch.
        # ----------------------------------------------------------------------------
        raise NotImplementedError("deit.py: implement DistilledViT.forward")

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's attention weights for images x, read from the inputs of timm's attention layers.

        Returns:
            A list with one tensor of shape (B, h, N, N) per block; N counts the two prefix tokens (first).
        """
        inputs = []
        hooks = [block.attn.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for block in self.blocks]
        was_training = self.training
        try:
            self.eval()
            self(x)
        finally:
            self.train(was_training)
            for hook in hooks:
                hook.remove()
        return [attention_weights(block.attn, tokens) for block, tokens in zip(self.blocks, inputs)]


def attention_weights(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The softmax weights of a timm `Attention` layer on its input: (B, N, D) -> (B, h, N, N).

    timm computes them inside F.scaled_dot_product_attention, which never returns them, so they are recomputed here
    from the layer's own qkv projection, q/k norms and scale.
    """
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # (B, h, N, d) each
    return (q * attn.scale @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)


def hard_distillation_loss(cls_logits: torch.Tensor, dist_logits: torch.Tensor, labels: torch.Tensor,
                           teacher_logits: torch.Tensor) -> torch.Tensor:
    """DeiT's hard-label distillation: the class head learns the labels, the distillation head the teacher's argmax.

    loss = ½·CE(cls_logits, labels) + ½·CE(dist_logits, teacher_logits.argmax(-1)), each cross-entropy the mean
    over the batch. The teacher is fixed: no gradient flows into teacher_logits.

    Args:
        cls_logits, dist_logits: the two heads' logits, of shape (B, K).
        labels: class indices of shape (B,).
        teacher_logits: the teacher's logits, of shape (B, K).

    Returns:
        A scalar tensor.
    """
    # ----------------------------------------------------------------------------
    # TODO (hard_distillation_loss): ½ cross-entropy with the labels + ½ with the teacher's hard labels.
    #   1. The teacher's hard labels: teacher_logits.argmax(dim=-1), of shape (B,) (argmax has no gradient).
    #   2. F.cross_entropy of cls_logits with labels, and of dist_logits with the teacher's labels; average the two.
    # Our solution is 2 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("deit.py: implement hard_distillation_loss")


def soft_distillation_loss(cls_logits: torch.Tensor, dist_logits: torch.Tensor, labels: torch.Tensor,
                           teacher_logits: torch.Tensor, T: float = 3.0, alpha: float = 0.5) -> torch.Tensor:
    """Soft distillation (Hinton et al., 2015, as DeiT uses it): labels for the class head, the teacher's softened
    distribution for the distillation head.

    loss = (1 − α)·CE(cls_logits, labels) + α·T²·KL(softmax(teacher/T) ‖ softmax(dist/T)), the KL summed over
    classes and averaged over the batch ('batchmean'). T² keeps the gradient's scale independent of T. The
    teacher is fixed: no gradient flows into teacher_logits.

    Args:
        cls_logits, dist_logits: the two heads' logits, of shape (B, K).
        labels: class indices of shape (B,).
        teacher_logits: the teacher's logits, of shape (B, K).
        T: the temperature (> 0): both logits are divided by it once, before the (log-)softmax.
        alpha: the teacher term's weight, in [0, 1].

    Returns:
        A scalar tensor.
    """
    # ----------------------------------------------------------------------------
    # TODO (soft_distillation_loss): (1 − α)·CE with the labels + α·T²·KL(teacher ‖ student), both softened by T.
    #   1. Log-probabilities of dist_logits / T and of teacher_logits / T (detached) with F.log_softmax.
    #   2. F.kl_div(student log-probs, teacher log-probs, reduction="batchmean", log_target=True): KL(teacher ‖
    #      student), the target second. Multiply it by T * T.
    #   3. Weight: (1 - alpha) for F.cross_entropy(cls_logits, labels), alpha for the KL term.
    # Our solution is 4 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("deit.py: implement soft_distillation_loss")


def mean_attention_distance(attn: torch.Tensor, grid: tuple[int, int], patch_size: int,
                            num_prefix_tokens: int = 1) -> torch.Tensor:
    """How far each head looks, in pixels: the ViT paper's mean attention distance (Fig. 7, Appendix D.7).

    For a query patch q, its distance is Σ_k a[q, k]·‖pos(q) − pos(k)‖ over the patch keys k, where pos is the
    patch's (row, column) on the grid times patch_size (pixels) and a[q, :] is q's attention over the patches,
    renormalised to sum to 1 once the prefix tokens (class / distillation) are dropped as queries and as keys.
    A head's value is the mean over the images and the query patches.

    Args:
        attn: one layer's attention weights, of shape (B, h, N, N) with N = num_prefix_tokens + H'·W', rows
            summing to 1, patches row by row after the prefix tokens.
        grid: (H', W'), the patch rows and columns.
        patch_size: P, pixels per patch side.
        num_prefix_tokens: the tokens before the patches (1 for a ViT, 2 for a DistilledViT).

    Returns:
        Tensor of shape (h,), in attn's dtype: each head's mean distance in pixels.
    """
    gh, gw = grid
    if attn.shape[-1] != num_prefix_tokens + gh * gw or attn.shape[-2] != attn.shape[-1]:
        raise ValueError(f"mean_attention_distance: attn of shape {tuple(attn.shape)} does not hold "
                         f"{num_prefix_tokens} prefix tokens and a {gh}x{gw} grid of patches "
                         f"(N = {num_prefix_tokens + gh * gw})")
    # ----------------------------------------------------------------------------
    # TODO (mean_attention_distance): drop the prefix tokens, renormalise, weight pixel distances, average.
    #   1. a = attn[:, :, p:, p:] with p = num_prefix_tokens: patch queries and patch keys, (B, h, H'·W', H'·W');
    #      divide each row by its sum (keepdim=True) so each query's weights over the patches sum to 1.
    #   2. Patch i sits at row i // W', column i % W'; times patch_size gives pixels. The (H'·W', H'·W') table
    #      of Euclidean distances between every two patches (torch.cdist, or by broadcasting).
    #   3. Per query: Σ_k a[..., q, k]·dist[q, k]; then the mean over the images and the queries -> (h,).
    #   Our solution is 6 lines; no Python loops.
    # Our solution is 7 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("deit.py: implement mean_attention_distance")
