"""Data for the course: CIFAR loaders, splits, augmentation, the fast device path, embedded datasets."""
from data_utils.embedded import DIGITS_CLASSES, load_digits

__all__ = ["DIGITS_CLASSES", "load_digits"]
