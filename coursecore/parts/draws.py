"""Seeded draws of the hidden cases: the same cases on every run, wherever a part's cases are built.

Module weights are the reference module's own state dict after a seeded re-draw of every parameter at unit-ish
scale: the default init, with zero biases and std 0.02, would hide missing biases and make attention nearly
uniform, so a missing 1/√d could pass.
"""
from __future__ import annotations

import math

import torch

BASE_SEED = 1234  # every case is drawn from BASE_SEED + its index: the same cases on every run
WEIGHT_SCALE = 1.0  # weights ~ N(0, WEIGHT_SCALE² / fan_in): activations stay O(1) whatever the width
NORM_JITTER = 0.3  # LayerNorm gains 1 + NORM_JITTER·N(0, 1), so a missing norm shows


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(BASE_SEED + seed)


def _randn(g: torch.Generator, *shape, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


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
