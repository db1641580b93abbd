"""Dataset constants, in one place: channel means/standard deviations (of images scaled to 0..1) and names.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Every mean/std is per channel, of the *training* images scaled to [0, 1]; normalising with them gives
inputs of roughly zero mean and unit variance, which is what the default initialisations assume.
"""
from __future__ import annotations

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # R, G, B over the 50,000 CIFAR-10 training images
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-pixel std (not the often-copied 0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)  # over the 50,000 CIFAR-100 training images
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
DIGITS_MEAN = (0.3053,)  # scikit-learn's 1,797 digits, intensities 0..16 scaled to 0..1
DIGITS_STD = (0.3759,)
SYNTHETIC_MEAN = (0.5,)  # synthetic images are built around mid-grey (see data_utils.synthetic)
SYNTHETIC_STD = (0.25,)

CIFAR_IMAGE_SIZE = 32  # H = W for CIFAR-10 and CIFAR-100
CIFAR_CHANNELS = 3
CIFAR_TRAIN_SIZE = 50_000
CIFAR_VAL_SIZE = 5_000  # the usual 45,000 / 5,000 train/validation split of the training set

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
DIGITS_CLASSES = tuple(str(i) for i in range(10))
