"""A tiny synthetic image dataset for unit tests and GPU throughput benchmarks (no download, any size).

Shape legend: B batch, C channels, H/W image height/width, K classes.

Each class k has a fixed random prototype image; a sample is its class prototype plus independent noise,
so the task is learnable (a linear model separates it) but not trivial when the noise is strong.
"""
from __future__ import annotations

import torch

from data_utils.constants import SYNTHETIC_MEAN, SYNTHETIC_STD

UINT8_MAX = 255
PROTOTYPE_STD = 0.2  # spread of the class prototypes around mid-grey (fraction of full range)
NOISE_STD = 0.15  # per-pixel noise of a sample around its prototype (fraction of full range)


def synthetic_dataset(num_samples: int = 256, num_classes: int = 4, image_size: int = 8, in_chans: int = 3,
                      seed: int = 0, noise_std: float = NOISE_STD) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_samples` uint8 images of shape (B, C, H, H) and balanced int64 labels in 0..K-1, seeded.

    Labels cycle through the classes (0, 1, ..., K-1, 0, ...), so every class has B / K samples (±1).
    """
    if num_samples < 1 or num_classes < 1 or image_size < 1 or in_chans < 1:
        raise ValueError("synthetic_dataset: num_samples, num_classes, image_size and in_chans must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    # Prototypes come from a generator seeded by the shape alone, so train and test sets drawn with
    # different seeds share the same classes.
    proto_gen = torch.Generator().manual_seed(num_classes * 1_000_003 + image_size * 1_009 + in_chans)
    mid = SYNTHETIC_MEAN[0]
    prototypes = mid + PROTOTYPE_STD * torch.randn(num_classes, in_chans, image_size, image_size, generator=proto_gen)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=gen)]
    noise = noise_std * torch.randn(num_samples, in_chans, image_size, image_size, generator=gen)
    images = (prototypes[labels] + noise).clamp(0, 1)  # (B, C, H, W) in [0, 1]
    return (images * UINT8_MAX).round().to(torch.uint8), labels.long()


__all__ = ["synthetic_dataset", "SYNTHETIC_MEAN", "SYNTHETIC_STD"]
