"""Looking inside classifiers: Grad-CAM, attention maps, disagreements.

Shape legend: B batch, C channels, H/W image height/width, N tokens, D embedding, h heads, K classes.

Grad-CAM runs on pytorch-grad-cam (`pip install grad-cam`, import `pytorch_grad_cam`): a transformer's
tokens (B, N, D) are reshaped to a feature map (B, D, H', W') on the patch grid (prefix tokens such as the
class token dropped), and Swin's last stage, already a grid (B, H', W', D) in timm, is moved to (B, D, H', W').

    cams = grad_cam(model, images, targets=labels)          # (B, H, W) in [0, 1], target layer chosen for you
    maps = attention_maps(vit, images)                       # course ViT or timm ViT: [(B, h, N, N)] per block
    R = finetune.attention_rollout(maps)                     # (B, N, N): assignment 6's finetune.py
    stats = model_attention_statistics(vit, uint8_images, finetune.attention_statistics, mean=m, std=s)  # None: no CLS
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitcourse.models.pretrained import ResizeInput, unwrap
from vitcourse.training.train import confusion_matrix


# ----------------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------------
def vit_reshape_transform(num_prefix_tokens: int = 1, grid: Optional[tuple[int, int]] = None) -> Callable:
    """Tokens (B, N, D) -> a feature map (B, D, H', W'): drop the first `num_prefix_tokens` (class token),
    lay the N - prefix patch tokens out row by row on the grid (square unless `grid` is given)."""
    def transform(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, num_prefix_tokens:]  # (B, H'·W', D)
        B, n, D = patches.shape
        gh, gw = grid if grid is not None else (int(round(n ** 0.5)),) * 2
        if gh * gw != n:
            raise ValueError(f"{n} patch tokens do not fill a {gh}x{gw} grid: pass grid=(H', W') or the right "
                             f"num_prefix_tokens")
        return patches.reshape(B, gh, gw, D).permute(0, 3, 1, 2)  # (B, D, H', W')
    return transform


def swin_reshape_transform(tokens: torch.Tensor) -> torch.Tensor:
    """A timm Swin stage output (B, H', W', D) (or flattened (B, H'·W', D)) -> (B, D, H', W')."""
    if tokens.ndim == 3:
        return vit_reshape_transform(0)(tokens)
    return tokens.permute(0, 3, 1, 2)  # (B, D, H', W')


def default_cam_layer(model: nn.Module) -> tuple[nn.Module, Optional[Callable]]:
    """(target layer, reshape transform) for Grad-CAM: a CNN's last stage; the first norm of a ViT's last
    block (the features before its attention: the last blocks' output only moves the class token); the
    first norm of the last block of Swin's last stage."""
    net = unwrap(model)
    if hasattr(net, "layer4"):  # ResNets: the last bottleneck / basic block
        return net.layer4[-1], None
    if hasattr(net, "layers") and hasattr(net.layers[-1], "blocks"):  # timm Swin
        return net.layers[-1].blocks[-1].norm1, swin_reshape_transform
    if hasattr(net, "blocks"):  # timm ViT, the course ViT
        prefix = getattr(net, "num_prefix_tokens", None)
        if prefix is None:
            prefix = net.config.num_prefix_tokens if hasattr(net, "config") else 1
        return net.blocks[-1].norm1, vit_reshape_transform(prefix)
    raise ValueError(f"no default Grad-CAM layer for {type(net).__name__}: pass target_layer=")


def grad_cam(model: nn.Module, images: torch.Tensor, targets: Optional[Sequence[int]] = None,
             target_layer: Optional[nn.Module] = None, reshape_transform: Optional[Callable] = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017) of normalised images (B, C, H, W) with pytorch-grad-cam.

    Args:
        targets: the class explained for each image; None explains the predicted class.
        target_layer / reshape_transform: default `default_cam_layer(model)`.

    Returns:
        float32 array of shape (B, H, W): ReLU(Σ_c mean-gradient_c · activation_c), upsampled and scaled
        to [0, 1] per image (pytorch-grad-cam's convention).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if target_layer is None:
        target_layer, default_reshape = default_cam_layer(model)
        reshape_transform = reshape_transform or default_reshape
    was_training = model.training
    model.eval()
    try:
        with GradCAM(model=model, target_layers=[target_layer], reshape_transform=reshape_transform) as cam:
            cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
            return cam(input_tensor=images, targets=cam_targets).astype(np.float32)
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------------------------
# Attention maps and rollout
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor,
                   layers: Optional[Sequence[int]] = None) -> list[torch.Tensor]:
    """Attention weights of every block: one (B, h, N, N) tensor per block, N counting prefix tokens.

    The course ViT has `get_attention_maps`; for a timm ViT the fused kernel is switched off for one
    forward pass and the softmax output is read where it enters `attn_drop`.

    Args:
        layers: indices of the blocks to return (negative counts from the end, [-1] is the last block), in
            that order; None returns every block. On a timm ViT only those blocks leave the fused kernel,
            so a large batch does not hold every block's (B, h, N, N) map at once.
    """
    net = unwrap(model)
    if hasattr(net, "get_attention_maps"):
        maps = net.get_attention_maps(images)
        return maps if layers is None else [maps[i] for i in layers]
    if not hasattr(net, "blocks"):
        raise ValueError(f"{type(net).__name__} has no ViT blocks: attention maps need a ViT")
    chosen = list(net.blocks) if layers is None else [net.blocks[i] for i in layers]
    found = {}  # id(block) -> its map; hooks fire in forward order, `layers` may ask for another
    handles, fused = [], []
    for block in chosen:
        attn = block.attn
        fused.append(getattr(attn, "fused_attn", False))
        attn.fused_attn = False  # the manual path materialises the weights
        handles.append(attn.attn_drop.register_forward_hook(
            lambda m, inp, out, key=id(block): found.__setitem__(key, inp[0].detach())))
    was_training = net.training
    net.eval()
    try:
        # timm's ViT: the tokens only (no head); a model without forward_features (deit.DistilledViT): all of it
        getattr(net, "forward_features", net)(images)
    finally:
        net.train(was_training)
        for block, f, h in reversed(list(zip(chosen, fused, handles))):  # reversed: a block asked twice
            block.attn.fused_attn = f                                       # gets its first, true setting
            h.remove()
    return [found[id(block)] for block in chosen]


# Attention rollout and the attention statistics are the student's code in assignment 6 (finetune.py:
# `attention_rollout`, `attention_statistics`); the library calls an implementation it is given
# (`vitcourse.analysis.transfer_report`), never a copy of its own.


def class_token_layout(model: nn.Module) -> Optional[tuple[int, tuple[int, int]]]:
    """(prefix tokens, patch grid (H', W')) of a ViT whose token 0 is a class token; None for models without
    one (Swin, CNNs, a mean-pooled ViT): their CLS-to-patch statistics do not exist."""
    net = unwrap(model)
    if not hasattr(net, "blocks"):
        return None
    cfg = getattr(net, "config", None)
    if cfg is not None and hasattr(cfg, "grid_size"):  # the course ViT
        return (cfg.num_prefix_tokens, tuple(cfg.grid_size)) if cfg.num_prefix_tokens else None
    if getattr(net, "cls_token", None) is None or not hasattr(net, "patch_embed"):  # timm ViT without one
        return None
    return int(net.num_prefix_tokens), tuple(int(g) for g in net.patch_embed.grid_size)


def _input_size(model: nn.Module) -> Optional[int]:
    """The size a `ResizeInput` wrapper somewhere around the backbone resizes images to (None without one)."""
    while not isinstance(model, ResizeInput) and isinstance(getattr(model, "net", None), nn.Module):
        model = model.net
    return model.size if isinstance(model, ResizeInput) else None


@torch.no_grad()
def model_attention_statistics(model: nn.Module, images: torch.Tensor, statistics: Callable, *, mean, std,
                               batch_size: int = 256, device=None) -> Optional[dict[str, float]]:
    """`statistics` (assignment 6's `finetune.attention_statistics`, the student's or the reference: the
    library has no copy) of a ViT's last block on uint8 images (B, C, H, W): the head-averaged
    class-token-to-patch weights A[:, :, 0, prefix:].mean(1) of the last block, per image, on the patch grid.

    Returns each statistic averaged over the images (floats). Images are normalised with (mean, std) and
    resized like the model resizes them; batches of `batch_size` keep only the last block's map. Returns None for models without a class token (`class_token_layout`):
    Swin's attention lives in local windows and has no global token, so there is no CLS-to-patch row.
    """
    from data_utils import DeviceLoader

    layout = class_token_layout(model)
    if layout is None:
        return None
    prefix, grid = layout
    device = torch.device(device) if device is not None else next(model.parameters()).device
    size = _input_size(model)
    loader = DeviceLoader(images, torch.zeros(len(images), dtype=torch.long), batch_size, mean=mean, std=std,
                          device=device)
    rows = []
    for x, _ in loader:
        if size is not None and x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        last = attention_maps(model, x, layers=[-1])[0]  # (B, h, N, N)
        rows.append(last[:, :, 0, prefix:].mean(dim=1).float().cpu())  # (B, H'·W')
    per_image = statistics(torch.cat(rows).double(), grid)  # {name: (B,)}
    return {k: float(torch.as_tensor(v).double().mean()) for k, v in per_image.items()}  # averaged over the images


# ----------------------------------------------------------------------------------------------------
# Where two models disagree
# ----------------------------------------------------------------------------------------------------
def disagreement(preds_a, preds_b, labels, num_classes: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None) -> list[dict]:
    """Per class, how two models' test predictions (B,) compare against the labels (B,).

    Returns one dict per class: class, name, n (test images), acc_a and acc_b (per-class accuracy, the
    diagonal of `vitcourse.training.train.confusion_matrix` over its row sum), a_only (A right, B wrong), b_only
    (B right, A wrong), both_wrong, both_right.
    """
    a, b, y = (torch.as_tensor(t).long().cpu() for t in (preds_a, preds_b, labels))
    K = num_classes if num_classes is not None else int(max(a.max(), b.max(), y.max())) + 1
    cm_a, cm_b = confusion_matrix(a, y, K), confusion_matrix(b, y, K)
    ra, rb = a == y, b == y
    rows = []
    for k in range(K):
        m = y == k
        n = int(m.sum())
        rows.append({
            "class": k, "name": class_names[k] if class_names is not None else str(k), "n": n,
            "acc_a": cm_a[k, k].item() / n if n else float("nan"),
            "acc_b": cm_b[k, k].item() / n if n else float("nan"),
            "a_only": int((m & ra & ~rb).sum()), "b_only": int((m & rb & ~ra).sum()),
            "both_wrong": int((m & ~ra & ~rb).sum()), "both_right": int((m & ra & rb).sum()),
        })
    return rows
