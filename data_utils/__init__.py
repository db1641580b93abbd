"""Data for the course: CIFAR loaders, splits, augmentation, the fast device path, embedded datasets.

Shape legend: B batch, C channels, H/W image height/width, K classes.

    splits = load_dataset("cifar10")                       # uint8 train/val/test + names, mean, std
    loader = DeviceLoader(splits.train_images, splits.train_labels, 512, mean=splits.mean, std=splits.std,
                          augment=AugmentConfig(cutout_prob=0.5), shuffle=True, device="cuda")
"""
from data_utils.augment import (AugmentConfig, AugmentParams, Cutout, DeviceLoader, augment_batch,
                                build_transforms, crop_flip_batch, cutout, cutout_batch, make_dataloader,
                                normalize_batch, sample_augment_params)
from data_utils.cifar import (CIFAR_SPECS, DatasetUnavailableError, default_root, load_cifar,
                              read_cifar_folder)
from data_utils.constants import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD,
                                  DIGITS_CLASSES, DIGITS_MEAN, DIGITS_STD, SYNTHETIC_MEAN, SYNTHETIC_STD)
from data_utils.datasets import DATASETS, DatasetSplits, load_dataset
from data_utils.embedded import load_digits
from data_utils.splits import select_classes, stratified_split, train_size_indices
from data_utils.synthetic import synthetic_dataset

__all__ = [
    "AugmentConfig", "AugmentParams", "Cutout", "DeviceLoader", "augment_batch", "build_transforms",
    "crop_flip_batch", "cutout", "cutout_batch", "make_dataloader", "normalize_batch", "sample_augment_params",
    "CIFAR_SPECS", "DatasetUnavailableError", "default_root", "load_cifar", "read_cifar_folder",
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
    "DIGITS_CLASSES", "DIGITS_MEAN", "DIGITS_STD", "SYNTHETIC_MEAN", "SYNTHETIC_STD",
    "DATASETS", "DatasetSplits", "load_dataset", "load_digits", "select_classes", "stratified_split", "train_size_indices",
    "synthetic_dataset",
]
