"""One entry point for every dataset of the course: `load_dataset(name, ...)` -> `DatasetSplits`.

Shape legend: B batch, C channels, H/W image height/width, K classes.

All images are kept as uint8 tensors of shape (B, C, H, W) on the CPU (small, exact, and what both data
paths start from); normalisation with the dataset's mean/std happens in the loaders.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from data_utils import constants as K
from data_utils.cifar import cifar_class_names, default_root, load_cifar
from data_utils.embedded import load_digits
from data_utils.splits import ValSize, select_classes, stratified_split
from data_utils.synthetic import synthetic_dataset

DATASETS = ("digits", "cifar10", "cifar100", "synthetic")
DIGITS_TEST_FRACTION = 0.2  # 1,437 train / 360 test digits
DIGITS_TEST_SEED = 0  # the test set stays the same whatever the run's seed, so runs compare
# A tenth of the training set: CIFAR's usual 45,000 / 5,000 split, and still a useful split of a subset.
DEFAULT_VAL_FRACTION = K.CIFAR_VAL_SIZE / K.CIFAR_TRAIN_SIZE
SYNTHETIC_SIZES = dict(num_train=512, num_test=256, num_classes=4, image_size=8, in_chans=3)
SYNTHETIC_TEST_SEED_OFFSET = 10_007  # test images are drawn with another seed than the training images


@dataclass
class DatasetSplits:
    """Train / validation / test images (uint8, (B, C, H, W)) and int64 labels, with what a model needs."""

    name: str  # 'digits', 'cifar10', ...
    train_images: torch.Tensor  # (B, C, H, W) uint8
    train_labels: torch.Tensor  # (B,) int64 in 0..K-1
    val_images: torch.Tensor  # may hold 0 images when val_size is 0
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]  # K names, label i is class_names[i]
    mean: tuple[float, ...]  # per-channel mean of images scaled to [0, 1]
    std: tuple[float, ...]  # per-channel std of images scaled to [0, 1]

    @property
    def in_chans(self) -> int:
        """C."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """H (the course's datasets have square images)."""
        return int(self.train_images.shape[2])

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.class_names)

    def subset(self, max_train: int, max_eval: int) -> "DatasetSplits":
        """The first samples of each split (a fast-mode or smoke-test copy); shares memory with self."""
        cut = lambda t, n: t[:n]  # noqa: E731
        return DatasetSplits(
            self.name, cut(self.train_images, max_train), cut(self.train_labels, max_train),
            cut(self.val_images, max_eval), cut(self.val_labels, max_eval),
            cut(self.test_images, max_eval), cut(self.test_labels, max_eval),
            self.class_names, self.mean, self.std,
        )

    def summary(self) -> str:
        """One line: sizes of the splits and of the images."""
        return (f"{self.name}: {len(self.train_labels):,} train / {len(self.val_labels):,} val / "
                f"{len(self.test_labels):,} test images of {self.in_chans}x{self.image_size}x{self.image_size}, "
                f"{self.num_classes} classes")


def _raw(name: str, root, verify: bool, download: bool, seed: int):
    """(train images, train labels, test images, test labels, class names, mean, std) of a dataset."""
    if name == "digits":
        d = load_digits(test_fraction=DIGITS_TEST_FRACTION, seed=DIGITS_TEST_SEED)
        return (d["train_images"], d["train_labels"], d["test_images"], d["test_labels"],
                K.DIGITS_CLASSES, K.DIGITS_MEAN, K.DIGITS_STD)
    if name == "synthetic":
        s = SYNTHETIC_SIZES
        shape = dict(num_classes=s["num_classes"], image_size=s["image_size"], in_chans=s["in_chans"])
        x_tr, y_tr = synthetic_dataset(s["num_train"], seed=seed, **shape)
        x_te, y_te = synthetic_dataset(s["num_test"], seed=seed + SYNTHETIC_TEST_SEED_OFFSET, **shape)
        names = tuple(f"class {i}" for i in range(s["num_classes"]))
        return x_tr, y_tr, x_te, y_te, names, K.SYNTHETIC_MEAN * s["in_chans"], K.SYNTHETIC_STD * s["in_chans"]
    x_tr, y_tr = load_cifar(name, root, train=True, download=download, verify=verify)
    x_te, y_te = load_cifar(name, root, train=False, download=download, verify=verify)
    if name == "cifar10":
        names, mean, std = K.CIFAR10_CLASSES, K.CIFAR10_MEAN, K.CIFAR10_STD
    else:
        names, mean, std = cifar_class_names(name, _cifar_root(root)), K.CIFAR100_MEAN, K.CIFAR100_STD
    return x_tr, y_tr, x_te, y_te, names, mean, std


def _cifar_root(root):
    return Path(root).expanduser() if root is not None else default_root()


def load_dataset(name: str, root: Optional[Union[str, Path]] = None, val_size: Optional[ValSize] = None,
                 classes: Optional[Sequence[int]] = None, seed: int = 0, verify: bool = True,
                 download: bool = True) -> DatasetSplits:
    """Load a dataset with a seeded stratified validation split taken from its training set.

    Args:
        name: one of DATASETS ('digits' and 'synthetic' work offline).
        root: CIFAR only: the archive's folder, or any folder in the CIFAR python layout with verify=False
            (e.g. ../shared/datasets/cifar10-mini).
        val_size: validation images (int) or fraction of the training set (float); default a tenth
            (5,000 of CIFAR's 50,000); 0 gives an empty validation set.
        classes: keep only these original labels, renumbered 0..len(classes)-1 in the given order.
        seed: seeds the validation split (and the synthetic data).
        verify, download: see `data_utils.cifar.load_cifar`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    x_tr, y_tr, x_te, y_te, names, mean, std = _raw(name, root, verify, download, seed)
    if classes is not None:
        x_tr, y_tr = select_classes(x_tr, y_tr, classes, len(names))
        x_te, y_te = select_classes(x_te, y_te, classes, len(names))
        names = tuple(names[c] for c in classes)
    val_size = DEFAULT_VAL_FRACTION if val_size is None else val_size
    train_idx, val_idx = stratified_split(y_tr, val_size, seed)
    return DatasetSplits(name, x_tr[train_idx], y_tr[train_idx], x_tr[val_idx], y_tr[val_idx], x_te, y_te,
                         tuple(names), tuple(mean), tuple(std))
