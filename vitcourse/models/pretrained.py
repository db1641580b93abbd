"""Pretrained backbones by name: timm ViTs and Swins, torchvision's ResNet-50 and the course's CIFAR-form ResNet,
with a new head for K classes.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding, K classes.

    model = create_backbone("swin_tiny_patch4_window7_224", num_classes=10, img_size=224)          # Colab
    model = create_backbone("vit_small_patch16_224", num_classes=10, weights="vit_s16.safetensors")  # a file

Downloaded and local weights go through the same code path: timm's own `pretrained=True` loader, with
`pretrained_cfg_overlay=dict(file=...)` for a local file, so the same filter (position-table resampling for
another `img_size`, the classifier dropped when K differs) runs on both; torchvision's ResNet-50 loads a state
dict either way (downloaded by `torchvision.models.ResNet50_Weights`, or read from the file); the course's own
`resnet_cifar` (assignment 4's ResNet, `vitcourse.models.resnet`, sized by `blocks` / `widths` / `strides`) has
no published weights: it reads a file saved here (assignment 6's offline CNN, pretrained on the digits).

A chosen input size: timm builds the model for `img_size` and, when it loads the weights, resamples the ViT's
absolute position table (bicubic, `timm.layers.resample_abs_pos_embed`) and Swin's relative position tables to
the new grid. Images of another size are resized on the fly by `ResizeInput` (see `input_size`).

Offline (no internet, or HF_HUB_OFFLINE=1) `create_backbone(..., pretrained=True)` without a file fails at once
with `WeightsUnavailableError`, instead of after the hub client's ~40 s of retries: a single TCP connection
attempt with a short timeout decides first (`hub_reachable`).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from coursecore import settings

# The names the course uses; any other timm model name works too.
TIMM_BACKBONES = ("vit_tiny_patch16_224", "vit_small_patch16_224", "swin_tiny_patch4_window7_224",
                  "swin_small_patch4_window7_224")
TORCHVISION_BACKBONES = ("resnet50",)
COURSE_BACKBONES = ("resnet_cifar",)  # built by the course; weights only from a file made here
BACKBONES = TIMM_BACKBONES + TORCHVISION_BACKBONES + COURSE_BACKBONES
HF_HOST = ("huggingface.co", 443)  # where timm's weights live
TORCHVISION_HOST = ("download.pytorch.org", 443)  # where torchvision's weights live
PROBE_TIMEOUT_S = 1.0  # one TCP connect; the whole offline failure stays under 2 s
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", settings.OFFLINE.name)  # any set to 1 means offline
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation every ImageNet backbone here was trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
PathLike = Union[str, os.PathLike]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for, but cannot be downloaded and no local file was given."""


def offline_by_env() -> bool:
    """True when one of OFFLINE_ENV is set to 1 / true (the hub client's own switch, and ours)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_ENV)


def hub_reachable(host: tuple[str, int] = HF_HOST, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection attempt to `host` with `timeout` seconds (DNS failure counts as unreachable)."""
    if offline_by_env():
        return False
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(name: str, host: tuple[str, int]) -> str:
    return (f"cannot download the pretrained weights of {name}: {host[0]} is not reachable (no internet, or "
            f"HF_HUB_OFFLINE is set). Pass a local weights file instead (create_backbone(..., weights=FILE), "
            f"`vitcourse transfer --weights FILE`), or pretrained=False for a randomly initialised model.")


class ResizeInput(nn.Module):
    """Resize images (B, C, H, W) to `size` (bilinear, antialiased when shrinking) before `net`.

    Used when the data's size differs from the size the backbone was built for (CIFAR's 32 px into a 224 px
    ViT-S/16, say). `net` is the backbone itself: its parameter names gain the prefix 'net.'.
    """

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, int(size)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.size)  # (B, C, size, size)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.resize(x))


def unwrap(model: nn.Module) -> nn.Module:
    """The backbone inside `ResizeInput` / `vitcourse.training.transfer.TransferModel` wrappers."""
    while hasattr(model, "net") and isinstance(model.net, nn.Module):
        model = model.net
    return model


def weights_host(name: str) -> Optional[tuple[str, int]]:
    """Where backbone `name`'s published weights are downloaded from (None: it has none)."""
    if name in COURSE_BACKBONES:
        return None
    return TORCHVISION_HOST if name in TORCHVISION_BACKBONES else HF_HOST


def is_timm_name(name: str) -> bool:
    """True for every name timm knows (and that is not one of the torchvision or course backbones)."""
    if name in TORCHVISION_BACKBONES + COURSE_BACKBONES:
        return False
    import timm

    return name in timm.list_models() or name in TIMM_BACKBONES


def _head_classes(state: dict, head_keys=("head.weight", "head.fc.weight", "fc.weight")) -> Optional[int]:
    for key in head_keys:
        if key in state:
            return int(state[key].shape[0])
    return None


def read_state_dict(path: PathLike) -> dict:
    """A state dict from a `.pth` / `.pt` (torch.save) or `.safetensors` file; {'model': sd} is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def create_backbone(name: str, num_classes: int, *, pretrained: bool = True, weights: Optional[PathLike] = None,
                    img_size: Optional[int] = None, in_chans: int = 3, input_size: Optional[int] = None,
                    **arch_kwargs) -> nn.Module:
    """Build backbone `name` with a new K-class head, with pretrained weights (downloaded or from `weights`).

    Args:
        name: a timm model name (TIMM_BACKBONES, or any other) or 'resnet50' (torchvision).
        num_classes: K. The pretrained classifier is kept only when it already has K outputs (a file saved
            from a K-class model gives back the same logits); otherwise a new, randomly initialised head.
        pretrained: load weights; False gives the same architecture randomly initialised (nothing is read).
        weights: a local file (timm / torchvision state dict, `.pth` or `.safetensors`); loaded by the same
            code path as downloaded weights. Implies pretrained=True.
        img_size: timm: the input size the model is built for (the position tables are resampled on load).
        in_chans: C; timm adapts a 3-channel stem to other C when loading (sums or repeats the kernels).
        input_size: resize inputs to this size first (`ResizeInput`), e.g. 32 px CIFAR to 224 px.
        arch_kwargs: timm architecture overrides (patch_size, embed_dim, depth, num_heads, window_size,
            depths, ...) for small models; a file must come from a model built with the same ones.

    Raises:
        WeightsUnavailableError: pretrained without `weights` while the weights' host is unreachable.
    """
    if weights is not None:
        pretrained = True
    if name in TORCHVISION_BACKBONES:
        model = _torchvision_backbone(name, num_classes, pretrained, weights, in_chans)
    elif name in COURSE_BACKBONES:
        model = _course_backbone(name, num_classes, pretrained, weights, in_chans, arch_kwargs)
    else:
        model = _timm_backbone(name, num_classes, pretrained, weights, img_size, in_chans, arch_kwargs)
    return ResizeInput(model, input_size) if input_size is not None else model


def _timm_backbone(name, num_classes, pretrained, weights, img_size, in_chans, arch_kwargs) -> nn.Module:
    import timm

    kwargs = dict(arch_kwargs, num_classes=num_classes, in_chans=in_chans)
    if img_size is not None:
        kwargs["img_size"] = img_size
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights is None:
        if not hub_reachable(HF_HOST):
            raise WeightsUnavailableError(_offline_message(name, HF_HOST))
        return timm.create_model(name, pretrained=True, **kwargs)
    # timm drops the file's classifier when its class count differs from the config's num_classes: tell
    # it the file's own count, so that a file of a K-class model keeps its head and a K'-class one does not.
    # timm < 1.0 marks some hub configs (the augreg ViTs) as `custom_load` (a JAX .npz): a torch file is not one.
    overlay = dict(file=str(Path(weights)), custom_load=Path(weights).suffix == ".npz")
    state = read_state_dict(weights)
    file_classes = _head_classes(state)
    if file_classes is not None:
        overlay["num_classes"] = file_classes
    stem = state.get("patch_embed.proj.weight")
    if stem is not None and stem.ndim == 4 and stem.shape[1] != 3:
        # The file's own input channels (the hub configs say 3): timm adapts the stem only when they differ from
        # the model's (an RGB checkpoint for grey images); a grey file for a grey model then loads as it is.
        size = timm.models.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
        overlay["input_size"] = (int(stem.shape[1]), *size[1:])
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def _torchvision_backbone(name, num_classes, pretrained, weights, in_chans) -> nn.Module:
    from torchvision import models

    if in_chans != 3:
        raise ValueError(f"{name}: torchvision's ImageNet ResNets take 3-channel images, got in_chans={in_chans}; "
                         f"repeat grey images to 3 channels")
    model = models.resnet50(weights=None, num_classes=num_classes)
    if not pretrained:
        return model
    if weights is None:
        if not hub_reachable(TORCHVISION_HOST):
            raise WeightsUnavailableError(_offline_message(name, TORCHVISION_HOST))
        state = models.ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True)
    else:
        state = read_state_dict(weights)
    load_torchvision_state(model, state)
    return model


def _course_backbone(name, num_classes, pretrained, weights, in_chans, arch_kwargs) -> nn.Module:
    from vitcourse.models.resnet import ResNetCIFAR

    model = ResNetCIFAR(num_classes=num_classes, in_chans=in_chans, **arch_kwargs)
    if not pretrained:
        return model
    if weights is None:
        raise WeightsUnavailableError(f"{name} has no published weights: pass weights= a file saved with "
                                      f"save_weights (e.g. the offline experiment's pretrained CNN)")
    return load_torchvision_state(model, read_state_dict(weights))


def load_torchvision_state(model: nn.Module, state: dict) -> nn.Module:
    """Load a torchvision-named ResNet state dict (`fc` the classifier); a classifier of another class count is
    left as initialised."""
    state = dict(state)
    if state.get("fc.weight") is not None and state["fc.weight"].shape != model.fc.weight.shape:
        state.pop("fc.weight"), state.pop("fc.bias", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = {"fc.weight", "fc.bias"}
    if unexpected or set(missing) - allowed:
        raise ValueError(f"the weights do not fit {type(model).__name__}: missing {sorted(set(missing) - allowed)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    return model


def pretrained_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the backbone's weights expect: timm's pretrained_cfg, else ImageNet's."""
    cfg = getattr(unwrap(model), "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def save_weights(model: nn.Module, path: PathLike) -> Path:
    """Save the backbone's state dict (without wrappers) where `create_backbone(weights=path)` reads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(unwrap(model).state_dict(), path)
    return path
