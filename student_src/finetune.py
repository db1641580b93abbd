# Your file: write your code where a TODO banner asks for it (generated from solutions/finetune.py).
"""Transfer learning: which parameters a fine-tuning mode trains, attention rollout and attention statistics.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens (class token first),
    D embedding, h heads, K classes; H'/W' the patch grid (H/P, W/P), so N = 1 + H'·W' for a ViT.

The backbones are timm's (and torchvision's ResNet-50), so the names are theirs: a ViT has `patch_embed`,
`cls_token`, `pos_embed`, `blocks`, `norm`, `head`; a Swin has `layers[i].blocks`, `norm`, `head.fc`; a
ResNet `layer1`..`layer4` and `fc`. The three helpers below find the blocks, the final norm and the
classifier of any of them, so `set_trainable` reads the same for every backbone.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

MODES = ("head", "partial", "full", "scratch")
RESIDUAL_WEIGHT = 0.5  # rollout: the residual connection's share of each layer's mixing (Abnar & Zuidema)
MASS_FRACTION = 0.5  # attention statistics: the share of the attention mass whose patch count we report


# ------------------------------------------------------------------------------------ backbone anatomy
def classifier_of(model: nn.Module) -> nn.Module:
    """The final classifier: timm's `head` (a Linear for a ViT, a ClassifierHead for a Swin) or a ResNet's `fc`."""
    for name in ("head", "fc"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    raise ValueError(f"{type(model).__name__} has neither .head nor .fc: which module is its classifier?")


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The residual blocks in forward order: ViT `blocks`, Swin `layers[i].blocks`, ResNet `layer1..4`."""
    if isinstance(getattr(model, "blocks", None), (nn.Sequential, nn.ModuleList)):
        return list(model.blocks)
    if hasattr(model, "layers") and all(hasattr(stage, "blocks") for stage in model.layers):
        return [block for stage in model.layers for block in stage.blocks]
    if hasattr(model, "layer4"):
        return [block for name in ("layer1", "layer2", "layer3", "layer4") for block in getattr(model, name)]
    raise ValueError(f"cannot find the blocks of {type(model).__name__}: expected .blocks, .layers[i].blocks "
                     "or .layer1..4")


def final_norm_of(model: nn.Module) -> Optional[nn.Module]:
    """The norm after the last block (ViT and Swin `norm`), or None (a ResNet has none)."""
    norm = getattr(model, "norm", None)
    return norm if isinstance(norm, nn.Module) and any(True for _ in norm.parameters()) else None


def count_trainable(model: nn.Module) -> int:
    """How many parameter values will learn (requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------ fine-tuning modes
def set_trainable(model: nn.Module, mode: str, partial_blocks: int = 2) -> list[str]:
    """Set which parameters of a pretrained `model` learn in a fine-tuning `mode`; name what stays frozen.

    Modes:
        head:    only the classifier learns (`classifier_of`); every other parameter is frozen;
        partial: the last `partial_blocks` blocks (`blocks_of`), the final norm (`final_norm_of`, if any)
                 and the classifier learn;
        full, scratch: every parameter learns (scratch differs only in where the weights came from).

    A frozen parameter has requires_grad False. That alone is not enough: a frozen BatchNorm still updates
    its running statistics in train mode, and a dropout inside the frozen part still drops. So the
    function also returns the modules the trainer must hold in eval mode: the *largest* subtrees of the
    model that contain no learning module, as names of `model.named_modules()` (e.g. "patch_embed",
    "blocks.0", "pos_drop"). Parameter-free modules (dropouts, activations) count as frozen when they lie
    outside the learning modules. For `full` and `scratch` the list is empty.

    Args:
        model: a timm ViT / Swin or torchvision ResNet with its new K-class classifier.
        mode: one of MODES.
        partial_blocks: k, for `partial`: 1 <= k <= len(blocks_of(model)).

    Returns:
        The names of the frozen subtrees, in `named_modules()` order.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
    # ----------------------------------------------------------------------------
    # TODO (set_trainable): freeze the model for the mode, return the largest frozen subtrees by name.
    #   1. full / scratch: every parameter learns (requires_grad_(True)); nothing is frozen: return [].
    #   2. Otherwise the learning modules are [classifier_of(model)]; for partial add the LAST
    #      partial_blocks of blocks_of(model) and the final norm (final_norm_of; may be None). Raise a
    #      ValueError when partial_blocks is not in 1..len(blocks).
    #   3. Freeze everything (model.requires_grad_(False)) - parameters that sit on the model itself, like
    #      cls_token and pos_embed, too - then unfreeze the learning modules.
    #   4. Walk the tree from the root: a child that is a learning module is skipped; a child that holds a
    #      learning module somewhere below it is searched further; any other child is a frozen subtree
    #      (append its full dotted name, e.g. "blocks.0").
    # Our solution is 28 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("finetune.py: implement set_trainable")


# ------------------------------------------------------------------------------------ attention rollout
def attention_rollout(attentions: Sequence[torch.Tensor], residual_weight: float = RESIDUAL_WEIGHT) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each output token.

    One layer's attention A_l (B, h, N, N) says how much each query row reads from each key column. The
    residual connection also carries the token itself, so the layer's mixing is
    A'_l = residual_weight · I + (1 - residual_weight) · Ā_l, with Ā_l the mean over the heads, and every row
    of A'_l is renormalised to sum to 1. Stacking the layers multiplies the mixings, the newest on the
    left: R = A'_L · … · A'_2 · A'_1.

    Args:
        attentions: one (B, h, N, N) tensor per layer, first layer first (rows: queries; rows sum to 1).
        residual_weight: the identity's share in each layer's mixing.

    Returns:
        R of shape (B, N, N); every row sums to 1. R[:, 0, 1:] is the class token's rollout over the patches.
    """
    if len(attentions) == 0:
        raise ValueError("attention_rollout: no attention maps given (one (B, h, N, N) tensor per layer)")
    # ----------------------------------------------------------------------------
    # TODO (attention_rollout): mix in the residual, renormalise the rows, multiply through the layers.
    #   1. Start from the identity: R = I (N, N), broadcast to (B, N, N).
    #   2. For each layer in order: a = residual_weight * I + (1 - residual_weight) * A.mean(dim=1);
    #      divide every row of a by its sum (keepdim=True).
    #   3. The new layer acts after the ones before it: R = a @ R (not R @ a).
    # Our solution is 8 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("finetune.py: implement attention_rollout")


# ------------------------------------------------------------------------------------ attention statistics
def centre_edge_masks(grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (H'·W',) over the patch grid, row by row: (centre, edge).

    edge: the outer ring (first or last row or column). centre: rows r and columns c with
    ⌊H'/4⌋ ≤ r < H' − ⌊H'/4⌋ and ⌊W'/4⌋ ≤ c < W' − ⌊W'/4⌋, the ring excluded (for an 8×8 grid the middle
    4×4, for 4×4 the middle 2×2). Needs a grid of at least 3×3.
    """
    gh, gw = grid
    if gh < 3 or gw < 3:
        raise ValueError(f"centre/edge needs a patch grid of at least 3x3, got {gh}x{gw}")
    r = torch.arange(gh)[:, None].expand(gh, gw)
    c = torch.arange(gw)[None, :].expand(gh, gw)
    edge = (r == 0) | (r == gh - 1) | (c == 0) | (c == gw - 1)
    qh, qw = gh // 4, gw // 4
    centre = (r >= qh) & (r < gh - qh) & (c >= qw) & (c < gw - qw) & ~edge
    return centre.reshape(-1), edge.reshape(-1)


def attention_statistics(cls_attention: torch.Tensor, grid: tuple[int, int],
                         mass: float = MASS_FRACTION) -> dict[str, torch.Tensor]:
    """Statistics of the class token's attention over the patches, one value per image.

    Args:
        cls_attention: (B, H'·W') weights a_i ≥ 0 of the class token on each patch i, row by row on the
            grid: e.g. the head-averaged last-layer map A[:, :, 0, 1:].mean(1), or the rollout R[:, 0, 1:].
            A row need not sum to 1 (the class token's weight on itself is left out).
        grid: (H', W').
        mass: the share of the attention mass for `mass_fraction`.

    Returns a dict of four (B,) tensors, each in the dtype of cls_attention (graded like the values: an integer
    count k divided by n gives float32 even for float64 attention, so convert k first):
        mean: the mean of a_i over the patches;
        std: their population standard deviation (divided by the number of patches, not by one less);
        mass_fraction: k / (H'·W'), k the smallest number of patches whose largest weights hold at least
            `mass` of Σ_i a_i: small means a concentrated attention, close to `mass` a spread-out one;
        centre_edge_ratio: mean a_i over the centre patches / mean a_i over the edge patches
            (`centre_edge_masks`): above 1 the class token looks at the middle of the image.
    """
    B, n = cls_attention.shape
    if grid[0] * grid[1] != n:
        raise ValueError(f"cls_attention has {n} patches per image, but grid {tuple(grid)} holds {grid[0] * grid[1]}")
    centre, edge = centre_edge_masks(grid)
    # ----------------------------------------------------------------------------
    # TODO (attention_statistics): per image, the mean, std, mass fraction and centre/edge ratio.
    #   1. mean and std over the patches (dim=1); the std is the population one (unbiased=False).
    #   2. mass_fraction: normalise each row to sum to 1, sort it in DESCENDING order, take the cumulative
    #      sum; k = the number of entries below `mass`, plus one (the patch that reaches it); divide by n, in
    #      a's dtype (k is an integer tensor: k / n alone is float32, so use k.to(a.dtype) / n).
    #      (Compare with `mass - 1e-12` so that a sum that lands exactly on `mass` counts.)
    #   3. centre_edge_ratio: a[:, centre].mean(1) / a[:, edge].mean(1).
    # Our solution is 10 lines. No Python loops over the batch.
    # ----------------------------------------------------------------------------
    raise NotImplementedError("finetune.py: implement attention_statistics")
