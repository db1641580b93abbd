"""Seeded draws of the hidden cases: the same cases on every run, wherever a part's cases are built."""
from __future__ import annotations

import torch

BASE_SEED = 1234  # every case is drawn from BASE_SEED + its index: the same cases on every run


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(BASE_SEED + seed)


def _randn(g: torch.Generator, *shape, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
