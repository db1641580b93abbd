"""Augmentation and loading, in two implementations that produce the same distribution of batches.

Shape legend: B batch, C channels, H/W image height/width, K classes.

1. The classic path (`make_dataloader`): `torchvision.transforms` applied image by image in `DataLoader`
   worker processes. It is the textbook way and the one to read first, but on Colab's 2 CPUs it cannot keep
   a GPU busy: every image costs several Python calls.
2. The device-resident path (`DeviceLoader`): the whole uint8 dataset sits on the GPU (CIFAR-10 is 150 MB);
   each batch is cropped, flipped, normalised and cut out with a handful of batched tensor operations and
   no per-image Python, reshuffled every epoch.

Both follow the same recipe, in the same order, with the probabilities the student sets in `AugmentConfig`:
    random crop (zero padding, then a uniformly placed H×W window) with probability crop_prob
    -> horizontal flip with probability flip_prob
    -> scale to [0, 1] and normalise with the dataset mean/std
    -> cutout (DeVries & Taylor, 2017): with probability cutout_prob, zero a cutout_size square centred on
       a uniform pixel (clipped at the border); zero after normalisation is the dataset's mean colour.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

UINT8_MAX = 255
SEED_STRIDE = 1_000_003  # a prime: (seed, epoch) pairs map to distinct generator seeds


@dataclass
class AugmentConfig:
    """The probabilities and sizes of the training augmentation (a student sets these)."""

    crop_prob: float = 1.0  # probability of a random crop of the zero-padded image
    crop_padding: int = 4  # zero padding on every side before cropping, pixels (4 for 32x32 CIFAR)
    flip_prob: float = 0.5  # horizontal flip probability (0 for digits: a mirrored digit is another symbol)
    cutout_prob: float = 0.0  # probability of cutting out one square
    cutout_size: int = 8  # side of the cutout square, pixels (8 for CIFAR, a quarter of the side)

    def __post_init__(self):
        for name in ("crop_prob", "flip_prob", "cutout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} is a probability and must lie in [0, 1], got {value}")
        for name in ("crop_padding", "cutout_size"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0 pixels, got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        """False when no augmentation can change an image."""
        crop = self.crop_prob > 0 and self.crop_padding > 0
        return crop or self.flip_prob > 0 or (self.cutout_prob > 0 and self.cutout_size > 0)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation (evaluation, or a baseline run)."""
        return cls(crop_prob=0.0, flip_prob=0.0, cutout_prob=0.0)


# ----------------------------------------------------------------------------------------------------
# Batched operations of the device path (each a few tensor operations for the whole batch)
# ----------------------------------------------------------------------------------------------------
@dataclass
class AugmentParams:
    """The random choices for one batch: fixing them makes an augmentation deterministic (for tests)."""

    offsets: torch.Tensor  # (B, 2) int64: (top, left) of the crop window in the padded image
    flips: torch.Tensor  # (B,) bool: flip this image
    cutout_centres: torch.Tensor  # (B, 2) int64: (row, column) of the cutout square's centre
    cutout_on: torch.Tensor  # (B,) bool: cut this image


def sample_augment_params(n: int, cfg: AugmentConfig, image_hw: tuple[int, int],
                          generator: Optional[torch.Generator] = None, device=None) -> AugmentParams:
    """Draw the crop offsets, flips and cutouts of `n` images with the probabilities of `cfg`."""
    H, W = image_hw
    pad = cfg.crop_padding
    kw = dict(generator=generator, device=device)
    crop = torch.rand(n, **kw) < cfg.crop_prob
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), **kw)
    offsets = torch.where(crop[:, None], offsets, torch.full_like(offsets, pad))  # no crop: the centre window
    flips = torch.rand(n, **kw) < cfg.flip_prob
    centres = torch.stack([torch.randint(0, H, (n,), **kw), torch.randint(0, W, (n,), **kw)], dim=1)
    cut = torch.rand(n, **kw) < cfg.cutout_prob
    return AugmentParams(offsets, flips, centres, cut)


def crop_flip_batch(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop every zero-padded image at its own (top, left) offset and mirror the flagged ones, in one gather.

    Args:
        images: (B, C, H, W), any dtype.
        offsets: (B, 2) int64 (top, left) in [0, 2·padding]; (padding, padding) leaves an image unchanged.
        flips: (B,) bool.

    Returns:
        (B, C, H, W), the same dtype.
    """
    B, C, H, W = images.shape
    padded = F.pad(images, (padding,) * 4) if padding else images  # (B, C, H + 2p, W + 2p)
    rows = offsets[:, :1] + torch.arange(H, device=images.device)  # (B, H)
    cols = torch.arange(W, device=images.device)
    cols = torch.where(flips[:, None], cols.flip(0), cols) + offsets[:, 1:]  # (B, W): a flip reverses columns
    # Flat index of every output pixel in its padded image, shared by the C channels.
    flat = rows[:, :, None] * (W + 2 * padding) + cols[:, None, :]  # (B, H, W)
    flat = flat.reshape(B, 1, H * W).expand(B, C, H * W)  # (B, C, H·W)
    return padded.reshape(B, C, -1).gather(2, flat).reshape(B, C, H, W)  # (B, C, H, W)


def normalize_batch(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, with mean/std of shape (C,)."""
    x = images.float().div_(UINT8_MAX)  # the same operations as ConvertImageDtype + Normalize
    return x.sub_(mean[:, None, None]).div_(std[:, None, None])


def cutout_batch(x: torch.Tensor, centres: torch.Tensor, on: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a size×size square centred at `centres` (B, 2) in the images where `on` (B,) is True."""
    B, C, H, W = x.shape
    start = centres - size // 2  # (B, 2): top-left corner, may lie outside the image (then clipped)
    ys = torch.arange(H, device=x.device)
    xs = torch.arange(W, device=x.device)
    in_rows = (ys >= start[:, :1]) & (ys < start[:, :1] + size)  # (B, H)
    in_cols = (xs >= start[:, 1:]) & (xs < start[:, 1:] + size)  # (B, W)
    cut = in_rows[:, :, None] & in_cols[:, None, :] & on[:, None, None]  # (B, H, W)
    # Multiplying by a 0/1 mask is several times faster on a CPU than masked_fill with a broadcast mask.
    return x * (~cut)[:, None].to(x.dtype)


def augment_batch(images: torch.Tensor, params: AugmentParams, cfg: AugmentConfig, mean: torch.Tensor,
                  std: torch.Tensor) -> torch.Tensor:
    """The whole device recipe for uint8 images (B, C, H, W): crop, flip, normalise, cutout -> float32."""
    x = crop_flip_batch(images, params.offsets, params.flips, cfg.crop_padding)
    x = normalize_batch(x, mean, std)
    if cfg.cutout_prob > 0 and cfg.cutout_size > 0:
        x = cutout_batch(x, params.cutout_centres, params.cutout_on, cfg.cutout_size)
    return x


class DeviceLoader:
    """Batches from a dataset that lives entirely on `device`: no workers, no per-image Python.

    Iterating gives (images float32 (B, C, H, W) normalised, labels int64 (B,)) on `device`. Each pass
    reshuffles with a generator seeded by (seed, epoch), so a run restarted at epoch e sees exactly the
    batches it would have seen (set the epoch with `set_epoch`; otherwise it counts passes itself).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, mean: Sequence[float],
                 std: Sequence[float], augment: Optional[AugmentConfig] = None, shuffle: bool = False,
                 drop_last: bool = False, device="cpu", seed: int = 0, channels_last: bool = False):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DeviceLoader expects uint8 images of shape (B, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}; pass the raw images of a DatasetSplits")
        if len(images) != len(labels):
            raise ValueError(f"DeviceLoader: {len(images)} images but {len(labels)} labels")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"DeviceLoader: mean/std have {len(mean)}/{len(std)} values for {images.shape[1]} channels")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = int(batch_size)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.augment = augment if augment is not None and augment.active else None
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one of `epoch` (its shuffle and augmentation)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * SEED_STRIDE + epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = self._generator(self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle else None
        hw = tuple(self.images.shape[2:])
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            x, y = self.images[idx], self.labels[idx]
            if self.augment is not None:
                params = sample_augment_params(len(y), self.augment, hw, gen, self.device)
                x = augment_batch(x, params, self.augment, self.mean, self.std)
            else:
                x = normalize_batch(x, self.mean, self.std)
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            yield x.contiguous(memory_format=fmt), y


# ----------------------------------------------------------------------------------------------------
# The classic path: torchvision.transforms, one image at a time, in DataLoader workers
# ----------------------------------------------------------------------------------------------------
class Cutout:
    """Transform for one normalised image (C, H, W): with probability p, zero a size×size square."""

    def __init__(self, size: int, p: float):
        self.size, self.p = size, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand(1).item() >= self.p:
            return img
        _, H, W = img.shape
        cy, cx = torch.randint(0, H, (1,)).item(), torch.randint(0, W, (1,)).item()
        return cutout(img, cy, cx, self.size)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


def cutout(img: torch.Tensor, cy: int, cx: int, size: int) -> torch.Tensor:
    """Zero the size×size square centred at (cy, cx) of one image (C, H, W), clipped at the border."""
    _, H, W = img.shape
    top, left = cy - size // 2, cx - size // 2
    img = img.clone()
    img[:, max(top, 0):min(top + size, H), max(left, 0):min(left + size, W)] = 0.0
    return img


def build_transforms(cfg: Optional[AugmentConfig], image_hw: tuple[int, int], mean: Sequence[float],
                     std: Sequence[float]):
    """The torchvision pipeline for one uint8 image tensor (C, H, W); cfg None gives evaluation's."""
    from torchvision import transforms as T

    ops = []
    if cfg is not None and cfg.crop_prob > 0 and cfg.crop_padding > 0:
        ops.append(T.RandomApply([T.RandomCrop(image_hw, padding=cfg.crop_padding)], p=cfg.crop_prob))
    if cfg is not None and cfg.flip_prob > 0:
        ops.append(T.RandomHorizontalFlip(cfg.flip_prob))
    ops += [T.ConvertImageDtype(torch.float32), T.Normalize(mean, std)]
    if cfg is not None and cfg.cutout_prob > 0 and cfg.cutout_size > 0:
        ops.append(Cutout(cfg.cutout_size, cfg.cutout_prob))
    return T.Compose(ops)


class TransformedTensorDataset(torch.utils.data.Dataset):
    """uint8 images (B, C, H, W) and labels, with a transform applied to each image when it is read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        return (self.transform(img) if self.transform is not None else img), self.labels[i]


def make_dataloader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, mean: Sequence[float],
                    std: Sequence[float], augment: Optional[AugmentConfig] = None, shuffle: bool = False,
                    num_workers: int = 2, seed: int = 0, drop_last: bool = False,
                    pin_memory: Optional[bool] = None, persistent_workers: bool = False) -> torch.utils.data.DataLoader:
    """The classic path: a DataLoader over uint8 images with `build_transforms` applied per image.

    `num_workers=2` matches Colab's two CPUs. Batches are float32 (B, C, H, W) on the CPU; pinned memory
    (default: when CUDA is available) makes their copy to the GPU asynchronous. Workers restart every epoch
    by default, so that their random seeds come from the loader's generator and a resumed run augments
    exactly like an uninterrupted one; persistent_workers=True saves the start-up instead.
    """
    transform = build_transforms(augment if augment is not None and augment.active else None,
                                 tuple(images.shape[2:]), mean, std)
    dataset = TransformedTensorDataset(images, labels, transform)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
        pin_memory=pin, generator=torch.Generator().manual_seed(seed),
        persistent_workers=persistent_workers and num_workers > 0,
    )
