"""CIFAR-10 and CIFAR-100: download through torchvision (checksums verified), or read any folder in the
CIFAR "python version" layout with verification off.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Both paths return the whole split as a uint8 tensor of shape (B, 3, 32, 32) and int64 labels (B,): at 150 MB
for the 50,000 training images this fits in memory (and on any GPU), which is what the fast device-resident
data path (`data_utils.augment.DeviceLoader`) is built on.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from data_utils.constants import CIFAR_CHANNELS, CIFAR_IMAGE_SIZE

PathLike = Union[str, Path]


class DatasetUnavailableError(RuntimeError):
    """The dataset is neither on disk nor downloadable; the message says where to put it.

    `reason` (what went wrong, without the dataset's name), `url`, `archive` and `folder` (where a copy
    goes) let a caller word its own message (the notebooks' fallback, `vitcourse.course.colab.load_course_data`).
    """

    def __init__(self, message: str, reason: str = "", url: str = "", archive: str = "", folder: str = ""):
        super().__init__(message)
        self.reason, self.url, self.archive, self.folder = reason, url, archive, folder


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant lives and how its python-layout files are named."""

    name: str  # 'cifar10' or 'cifar100'
    folder: str  # the folder the archive extracts to
    archive: str  # the archive's file name
    url: str  # the official download address
    train_files: tuple[str, ...]  # pickles holding the training images
    test_files: tuple[str, ...]  # pickles holding the test images
    meta_file: str  # pickle with the class names
    label_key: str  # key of the labels in a data pickle
    names_key: str  # key of the class names in the meta pickle

    def dataset_class(self):
        """The torchvision dataset class that downloads and verifies this variant."""
        from torchvision import datasets

        return datasets.CIFAR10 if self.name == "cifar10" else datasets.CIFAR100


CIFAR_SPECS = {
    "cifar10": CifarSpec(
        "cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta", "labels", "label_names",
    ),
    "cifar100": CifarSpec(
        "cifar100", "cifar-100-python", "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        ("train",), ("test",), "meta", "fine_labels", "fine_label_names",
    ),
}


def default_root() -> Path:
    """Where archives go by default: ~/.cache/vitcourse/data (Colab: /root/.cache/...)."""
    return Path.home() / ".cache" / "vitcourse" / "data"


def _spec(name: str) -> CifarSpec:
    try:
        return CIFAR_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown CIFAR variant {name!r}: choose one of {', '.join(CIFAR_SPECS)}") from None


def _unavailable(spec: CifarSpec, root: Path, reason: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"{spec.name} is not available: {reason}.\n"
        f"  To use it offline, download {spec.url} elsewhere and place the archive at\n"
        f"      {root / spec.archive}\n"
        f"  (or its extracted folder at {root / spec.folder}), then call again with download=False.\n"
        f"  A copy whose checksums differ (a subset, a re-pickled file) loads with verify=False.",
        reason=reason, url=spec.url, archive=str(root / spec.archive), folder=str(root / spec.folder),
    )


def _rows_to_images(rows: np.ndarray, source: Path) -> torch.Tensor:
    """CIFAR rows (B, 3072) stored channel-major (1024 R, 1024 G, 1024 B) -> uint8 (B, 3, 32, 32)."""
    pixels = CIFAR_CHANNELS * CIFAR_IMAGE_SIZE * CIFAR_IMAGE_SIZE
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != pixels or rows.dtype != np.uint8:
        raise ValueError(
            f"{source}: expected uint8 rows of {pixels} values (CIFAR python layout), got an array of "
            f"shape {rows.shape} and dtype {rows.dtype}"
        )
    images = rows.reshape(-1, CIFAR_CHANNELS, CIFAR_IMAGE_SIZE, CIFAR_IMAGE_SIZE)  # (B, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(images))


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a CIFAR python-layout folder needs it")
    with open(path, "rb") as fh:
        # The official files are Python 2 pickles; 'latin1' decodes their byte strings losslessly.
        entry = pickle.load(fh, encoding="latin1")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def find_cifar_folder(name: str, root: PathLike) -> Path:
    """The folder holding the pickles: `root` itself or `root/<cifar-10-batches-py>`."""
    spec, root = _spec(name), Path(root).expanduser()
    for folder in (root / spec.folder, root):
        if (folder / spec.meta_file).is_file():
            return folder
    raise FileNotFoundError(
        f"no {spec.name} python-layout folder at {root}: expected {root / spec.folder / spec.meta_file} "
        f"(or {root / spec.meta_file})"
    )


def read_cifar_folder(name: str, root: PathLike, train: bool = True) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Read a CIFAR python-layout folder without any checksum: images (B, 3, 32, 32) uint8, labels, names.

    Works on the official folder and on any subset written in the same layout.
    """
    spec = _spec(name)
    folder = find_cifar_folder(name, root)
    images, labels = [], []
    for file in spec.train_files if train else spec.test_files:
        entry = _read_pickle(folder / file)
        if "data" not in entry or spec.label_key not in entry:
            raise ValueError(f"{folder / file}: missing key 'data' or {spec.label_key!r}; is this a {spec.name} file?")
        images.append(_rows_to_images(entry["data"], folder / file))
        labels.append(torch.as_tensor(np.asarray(entry[spec.label_key]), dtype=torch.int64))
    names = tuple(_read_pickle(folder / spec.meta_file)[spec.names_key])
    images, labels = torch.cat(images), torch.cat(labels)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return images, labels, names


def load_cifar(name: str, root: Optional[PathLike] = None, train: bool = True, download: bool = True,
               verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 or CIFAR-100 as (uint8 images of shape (B, 3, 32, 32), int64 labels of shape (B,)).

    Args:
        name: 'cifar10' or 'cifar100'.
        root: folder for the archive; default `default_root()`.
        train: the 50,000 training images, else the 10,000 test images.
        download: fetch the archive when it is missing (torchvision, checksum verified).
        verify: check the files' MD5 sums (torchvision). False reads any folder in the CIFAR python layout
            as it is (a subset such as cifar10-mini), and never downloads.

    Raises:
        DatasetUnavailableError: not on disk and not downloadable (offline); the message says where to
            place the archive.
    """
    spec = _spec(name)
    root = Path(root).expanduser() if root is not None else default_root()
    if not verify:
        try:
            images, labels, _ = read_cifar_folder(name, root, train)
        except FileNotFoundError as err:
            raise _unavailable(spec, root, str(err)) from err
        return images, labels
    try:
        dataset = spec.dataset_class()(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        reason = "the files are missing or their checksums do not match" if not download else str(err)
        raise _unavailable(spec, root, reason) from err
    except OSError as err:  # URLError, socket errors, ... : offline or blocked
        raise _unavailable(spec, root, f"the download failed ({err})") from err
    images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))  # (B, H, W, C) -> (B, C, H, W)
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


def cifar_class_names(name: str, root: Optional[PathLike] = None) -> tuple[str, ...]:
    """Class names read from the dataset's meta file (CIFAR-100's 100 fine labels)."""
    spec = _spec(name)
    folder = find_cifar_folder(name, root if root is not None else default_root())
    return tuple(_read_pickle(folder / spec.meta_file)[spec.names_key])
