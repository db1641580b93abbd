"""Embedded offline data: scikit-learn's bundled handwritten digits (1,797 grey 8x8 images).

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

import numpy as np
import torch

from data_utils.constants import DIGITS_CLASSES  # noqa: F401 (re-exported: its home before constants.py)

DIGITS_MAX_VALUE = 16  # sklearn's digits hold integer intensities 0..16
UINT8_MAX = 255
DIGITS_IMAGE_SIZE = 8


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 images (B, 1, 8, 8) scaled to 0..255 and their int64 labels (B,)."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = np.round(digits.images * (UINT8_MAX / DIGITS_MAX_VALUE)).astype(np.uint8)[:, None]  # (B, 1, 8, 8)
    return images, digits.target.astype(np.int64)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> dict[str, torch.Tensor]:
    """The digits as uint8 images scaled to 0..255, with a seeded stratified train/test split.

    Returns:
        {'train_images': (B, 1, 8, 8) uint8, 'train_labels': (B,) int64, 'test_images', 'test_labels'}.
    """
    from sklearn.model_selection import train_test_split

    images, labels = digits_images()
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return {
        "train_images": to(images[idx_train]), "train_labels": to(labels[idx_train]).long(),
        "test_images": to(images[idx_test]), "test_labels": to(labels[idx_test]).long(),
    }
