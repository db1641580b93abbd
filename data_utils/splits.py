"""Seeded stratified train/validation splits and class subsets with label remapping.

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

ValSize = Union[int, float]


def resolve_size(val_size: ValSize, total: int) -> int:
    """A count from an absolute size (int) or a fraction of `total` (float in [0, 1))."""
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"a fractional val_size must lie in [0, 1), got {val_size}")
        return int(round(val_size * total))
    if not 0 <= int(val_size) < total:
        raise ValueError(f"val_size {val_size} must be >= 0 and smaller than the {total} available samples")
    return int(val_size)


def stratified_split(labels: torch.Tensor, val_size: ValSize, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, stratified split of sample indices into (train_idx, val_idx), both sorted int64 tensors.

    Every class keeps its share in both parts: class c gets round(val_size · n_c / B) validation samples,
    the rounding chosen (largest remainder) so that the validation part has exactly `val_size` samples.

    Args:
        labels: int labels of shape (B,).
        val_size: number of validation samples (e.g. 5000 of CIFAR's 50,000) or a fraction such as 0.1.
        seed: the same seed always gives the same split.
    """
    labels = torch.as_tensor(labels).long().cpu()
    total = len(labels)
    n_val = resolve_size(val_size, total)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(total, generator=gen)
    # A stable sort by label keeps the random order inside each class.
    order = order[torch.sort(labels[order], stable=True).indices]
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_val / total
    per_class = exact.floor().long()
    shortfall = n_val - int(per_class.sum())
    if shortfall:
        # Largest remainders first; ties broken by a seeded random order, not by class index.
        remainder = exact - per_class.double() + 1e-9 * torch.rand(len(classes), generator=gen, dtype=torch.float64)
        per_class[remainder.argsort(descending=True)[:shortfall]] += 1
    starts = torch.cumsum(counts, 0) - counts
    val_mask = torch.zeros(total, dtype=torch.bool)
    for start, n in zip(starts.tolist(), per_class.tolist()):
        val_mask[order[start:start + n]] = True
    idx = torch.arange(total)
    return idx[~val_mask], idx[val_mask]


def select_classes(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
                   num_classes: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep only the samples of `classes` and renumber them in the given order: classes[i] -> i.

    Example: CIFAR-10 classes [1, 3, 5, 7, 9] (automobile, cat, dog, horse, truck) become labels 0..4.
    A class may have no sample in a small split; a class outside 0..num_classes-1 (default: up to the
    largest label) is an error.
    """
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty list of distinct labels, got {classes}")
    K = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    unknown = [c for c in classes if not 0 <= c < K]
    if unknown:
        raise ValueError(f"classes {unknown} do not exist: labels run from 0 to {K - 1}")
    lookup = torch.full((max(K, int(labels.max()) + 1),), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    new_labels = lookup[labels]
    keep = new_labels >= 0
    return images[keep], new_labels[keep]


SUBSET_SCHEMES = ("nested", "disjoint")


def size_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A seeded, class-interleaved order of the sample indices: every prefix keeps the classes' shares.

    The indices of each class are shuffled by `seed`, then the classes are merged by the fraction of the class
    already taken (the i-th of n_c images of class c sits at (i + ½) / n_c), so the first n indices hold about
    n · n_c / B images of class c for every n (largest remainder; ties in a seeded random order).
    """
    labels = torch.as_tensor(labels).long().cpu()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    order = order[torch.sort(labels[order], stable=True).indices]  # by class, random inside each class
    classes, counts = torch.unique(labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - torch.repeat_interleave(starts, counts)  # position inside its class
    share = (rank.double() + 0.5) / torch.repeat_interleave(counts, counts).double()
    tie = torch.rand(len(classes), generator=gen, dtype=torch.float64)  # a seeded order of the classes on ties
    key = share + 1e-9 * torch.repeat_interleave(tie, counts)
    return order[torch.sort(key, stable=True).indices]


def train_size_indices(labels: torch.Tensor, size: int, seed: int = 0, scheme: str = "nested",
                       order_seed: int = 0) -> torch.Tensor:
    """The sorted indices of a training set of `size` samples, for the data-scaling experiment.

    * 'nested': the first `size` of `size_order(labels, seed)`: for one seed, every smaller set is inside every
      larger one (the sizes are compared on the same images), and each seed draws another set;
    * 'disjoint': block `seed` of `size_order(labels, order_seed)`: the sets of seeds 0, 1, ... share no image
      (independent draws of the data; needs (seed + 1) · size <= B).

    Both keep every class's share of `labels` (B,) to within one image.
    """
    labels = torch.as_tensor(labels).long().cpu()
    if scheme not in SUBSET_SCHEMES:
        raise ValueError(f"unknown subset scheme {scheme!r}: choose one of {', '.join(SUBSET_SCHEMES)}")
    if not 0 < size <= len(labels):
        raise ValueError(f"train_size {size} must lie in 1..{len(labels)} (the training images there are)")
    if scheme == "nested":
        return size_order(labels, seed)[:size].sort().values
    if (seed + 1) * size > len(labels):
        raise ValueError(f"disjoint subsets: seed {seed} needs images {seed * size}..{(seed + 1) * size - 1} of "
                         f"{len(labels)}; use fewer seeds, a smaller size or scheme='nested'")
    return size_order(labels, order_seed)[seed * size:(seed + 1) * size].sort().values
