"""Looking inside a CNN: first-layer filter grids, early / middle / late feature maps through forward hooks,
and top-k ImageNet predictions of a pretrained torchvision ResNet-50.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Offline rule (the same as for every pretrained backbone of the course): nothing is downloaded unless asked.
`load_pretrained('resnet50', weights_path=...)` reads a local state-dict file; without a path it looks in
torch's hub cache (where a Colab download puts it) and otherwise raises `WeightsUnavailableError` at once,
naming the URL and where to put the file. `download=True` lets torchvision fetch it (Colab). Offline, the
course's own ResNet-18 (`vitcourse.models.resnet`, ideally trained by `vitcourse train --model resnet18`) has the
same stage names (`layer1` .. `layer4`), so every function here works on it too; it just has no ImageNet
categories. The category names come from torchvision's weights metadata, which is part of the package.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

# Which stage shows what: edges and colours early, textures and parts in the middle, objects late.
FEATURE_LAYERS = {"early": "layer1", "middle": "layer2", "late": "layer4"}
DEFAULT_ARCH = "resnet50"
DEFAULT_TOP_K = 5


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither at the given path nor in the cache, and downloading was not asked for."""


def _weights_enum(arch: str):
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def imagenet_categories(arch: str = DEFAULT_ARCH) -> list[str]:
    """The 1,000 ImageNet class names of torchvision's default weights for `arch` (offline: package metadata)."""
    return list(_weights_enum(arch).meta["categories"])


def cached_weights_path(arch: str = DEFAULT_ARCH) -> Path:
    """Where torchvision's download keeps the weights file: <torch hub dir>/checkpoints/<file name of the URL>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_weights_enum(arch).url)


def load_pretrained(arch: str = DEFAULT_ARCH, weights_path: Optional[str | os.PathLike] = None, *,
                    download: bool = False) -> tuple[nn.Module, list[str]]:
    """A torchvision classifier with pretrained ImageNet weights, in eval mode, and its category names.

    Args:
        arch: a torchvision model name ('resnet50', 'resnet18', ...).
        weights_path: a local state-dict file (what torchvision downloads, e.g. resnet50-11ad3fa6.pth).
        download: allow torchvision to download the weights when they are not found locally.

    Raises:
        WeightsUnavailableError: no local file and download=False (immediately, no network access).
    """
    from torchvision.models import get_model

    weights = _weights_enum(arch)
    path = Path(weights_path) if weights_path is not None else cached_weights_path(arch)
    if path.is_file():
        model = get_model(arch, weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    elif download:
        try:
            model = get_model(arch, weights=weights)
        except OSError as err:  # offline (URLError is an OSError): the same error as without download, and why
            raise WeightsUnavailableError(
                f"pretrained {arch} weights: the download of {weights.url} failed ({err}). Download it on a machine "
                f"with internet and pass weights_path='.../{os.path.basename(weights.url)}' (or put it at {path}). "
                f"Offline, use the course's ResNet-18 instead (fallback_model()).") from err
    else:
        where = f"{path} does not exist" if weights_path is not None else f"not in the cache ({path})"
        raise WeightsUnavailableError(
            f"pretrained {arch} weights: {where}, and downloading is off. Download {weights.url} on a machine "
            f"with internet and pass weights_path='.../{os.path.basename(weights.url)}' (or put it at {path}); "
            f"on Colab use download=True. Offline, use the course's ResNet-18 instead (fallback_model()).")
    return model.eval(), list(weights.meta["categories"])


def fallback_model(checkpoint: Optional[str | os.PathLike] = None, num_classes: int = 10) -> nn.Module:
    """The course's CIFAR ResNet-18 (same stage names as torchvision's), from a checkpoint when given."""
    from vitcourse.models import resnet

    model = resnet.resnet18_cifar(num_classes=num_classes)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    return model.eval()


def imagenet_normalize(images: torch.Tensor, arch: str = DEFAULT_ARCH) -> torch.Tensor:
    """Images in [0, 1] of shape (B, 3, H, W) normalised with the ImageNet mean and std of the weights."""
    transforms = _weights_enum(arch).transforms()
    mean = torch.tensor(transforms.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(transforms.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std  # (B, 3, H, W)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first nn.Conv2d of `model` (the stem that looks at pixels)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d: nothing to visualise")


def filter_grid(model_or_weight: nn.Module | torch.Tensor, nrow: int = 8, padding: int = 1) -> torch.Tensor:
    """The first layer's filters tiled into one RGB image, each filter scaled to [0, 1] on its own.

    Args:
        model_or_weight: a model (its first conv is used) or a kernel of shape (C_out, C_in, k, k).
        nrow: filters per row of the grid.

    Returns:
        Tensor of shape (3, H, W), ready for plt.imshow(grid.permute(1, 2, 0)). One input channel is shown
        in grey; other counts than 1 and 3 are averaged over the input channels.
    """
    from torchvision.utils import make_grid

    weight = model_or_weight if isinstance(model_or_weight, torch.Tensor) else first_conv(model_or_weight).weight
    weight = weight.detach().float().cpu()
    if weight.shape[1] != 3:
        weight = weight.mean(dim=1, keepdim=True)  # (C_out, 1, k, k): grey
    return make_grid(weight, nrow=nrow, padding=padding, normalize=True, scale_each=True)


def feature_maps(model: nn.Module, images: torch.Tensor, layers: Optional[dict[str, str]] = None,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run `model(images)` once and keep the outputs of `layers` through forward hooks (removed afterwards).

    Args:
        model: any nn.Module whose submodules are named as in `layers` (torchvision and the course's ResNets).
        images: tensor of shape (B, C, H, W), normalised as the model expects.
        layers: {label: module name}, default FEATURE_LAYERS (early layer1, middle layer2, late layer4).

    Returns:
        ({label: feature map of shape (B, C, H, W)}, the model's output (B, K)).
    """
    layers = dict(FEATURE_LAYERS if layers is None else layers)
    modules = dict(model.named_modules())
    missing = [name for name in layers.values() if name not in modules]
    if missing:
        raise ValueError(f"{type(model).__name__} has no module(s) {missing}; layers are named like "
                         f"{[n for n in modules if n and '.' not in n][:8]}")
    maps: dict[str, torch.Tensor] = {}

    def keep(label):
        def hook(module, inputs, output):
            maps[label] = output.detach()
        return hook

    handles = [modules[name].register_forward_hook(keep(label)) for label, name in layers.items()]
    try:
        with torch.no_grad():
            out = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return maps, out


def feature_map_grid(feature_map: torch.Tensor, num_channels: int = 16, nrow: int = 8) -> torch.Tensor:
    """The first `num_channels` channels of one image's feature map, tiled, each scaled to [0, 1].

    Args:
        feature_map: tensor of shape (C, H, W) (one image of a `feature_maps` result).

    Returns:
        Tensor of shape (3, H, W) for plt.imshow (grey channels).
    """
    from torchvision.utils import make_grid

    maps = feature_map[:num_channels].detach().float().cpu().unsqueeze(1)  # (C, 1, H, W)
    return make_grid(maps, nrow=nrow, padding=1, normalize=True, scale_each=True)


def top_k(logits: torch.Tensor, categories: Sequence[str], k: int = DEFAULT_TOP_K) -> list[list[tuple[str, float]]]:
    """The k most probable classes of each image: [[(name, probability), ...], ...] from logits (B, K)."""
    if logits.shape[-1] != len(categories):
        raise ValueError(f"{logits.shape[-1]} logits but {len(categories)} category names")
    probs, index = logits.softmax(dim=-1).topk(min(k, len(categories)), dim=-1)  # (B, k) each
    return [[(categories[i], float(p)) for p, i in zip(row_p, row_i)] for row_p, row_i in zip(probs, index)]


# ---- the student's own network, on the course's data ------------------------------------------------------
def convnet_layers(model: nn.Module) -> dict[str, str]:
    """{early, middle, late: module name} for a course ConvNet (cnn.py): the first block of the first, middle and
    last stage, before that stage's max-pool, so the maps keep the stage's full resolution. Any other model: the
    ResNet stages of FEATURE_LAYERS."""
    stages = getattr(model, "stages", None)
    if not isinstance(stages, nn.Sequential):
        return dict(FEATURE_LAYERS)
    picks = {"early": 0, "middle": len(stages) // 2, "late": len(stages) - 1}
    return {label: f"stages.{i}.0" for label, i in picks.items()}


def course_images(splits, count: int = 4, split: str = "test") -> tuple[torch.Tensor, list[str]]:
    """The first `count` images of a split as floats in [0, 1], (B, C, H, W), with their class names."""
    images = getattr(splits, f"{split}_images")[:count].float() / 255.0
    labels = getattr(splits, f"{split}_labels")[:count].tolist()
    return images, [splits.class_names[int(k)] for k in labels]


def normalise_like_training(images: torch.Tensor, splits) -> torch.Tensor:
    """Images in [0, 1] normalised with the data's own mean and std, as the course's trainer feeds them."""
    mean = torch.tensor(splits.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def for_imagenet(images: torch.Tensor, size: int = 224, arch: str = DEFAULT_ARCH) -> torch.Tensor:
    """Course images in [0, 1] (B, C, H, W), grey or RGB, as an ImageNet model expects them: RGB, `size`×`size`
    (bilinear), normalised with the weights' mean and std."""
    x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images  # (B, 3, H, W)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return imagenet_normalize(x, arch)


def plot_filters(models: dict[str, nn.Module], nrow: int = 8):
    """One panel per model: its first layer's filters (`filter_grid`), e.g. {"before training": ..., "after": ...}."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        weight = first_conv(model).weight
        ax.imshow(filter_grid(weight, nrow=nrow).permute(1, 2, 0).clamp(0, 1))
        ax.set_title(f"{name}: {weight.shape[0]} filters {weight.shape[2]}×{weight.shape[3]}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_feature_maps(image: torch.Tensor, maps: dict[str, torch.Tensor], title: str = "", num_channels: int = 8):
    """The image, then per labelled layer its first `num_channels` channels (each scaled to its own range: the
    pattern a channel responds to, not its size). image: (C, H, W) in [0, 1]; maps: {label: (C', H', W')}."""
    import matplotlib.pyplot as plt

    rows = len(maps)
    fig, axes = plt.subplots(rows, num_channels + 1, figsize=(1.2 * (num_channels + 1), 1.3 * rows), squeeze=False)
    pic = image.detach().float().cpu()
    for r, (label, fmap) in enumerate(maps.items()):
        axes[r][0].imshow(pic[0] if pic.shape[0] == 1 else pic.permute(1, 2, 0), cmap="gray" if pic.shape[0] == 1 else None)
        axes[r][0].set_title("input" if r == 0 else "", fontsize=7)
        for c in range(num_channels):
            ax = axes[r][c + 1]
            if c < fmap.shape[0]:
                ax.imshow(fmap[c].detach().float().cpu(), cmap="viridis")
            if c == 0:
                ax.set_title(f"{label}: {fmap.shape[0]} × {fmap.shape[1]}×{fmap.shape[2]}", fontsize=7, loc="left")
        for ax in axes[r]:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
