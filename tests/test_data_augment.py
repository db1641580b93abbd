"""The two augmentation paths agree: identical outputs for fixed random choices (oracle: torchvision's
functional transforms applied image by image) and the same distribution of outputs when sampling.

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

import collections

import pytest
import torch
import torchvision.transforms.functional as TF

import data_utils as du

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)


# Tiny tensors: one intra-op thread (conftest.one_thread) is faster, and far faster on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def images_u8(B=5, C=3, H=6, W=7, seed=0):
    return torch.randint(0, 256, (B, C, H, W), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def reference_augment(img, top, left, flip, cut_on, cy, cx, cfg):
    """One image through torchvision's functional ops in the documented order, then cutout."""
    H, W = img.shape[1:]
    p = cfg.crop_padding
    out = TF.crop(TF.pad(img, [p, p, p, p], fill=0), top, left, H, W)
    if flip:
        out = TF.hflip(out)
    out = TF.normalize(TF.convert_image_dtype(out, torch.float32), MEAN, STD)
    if cut_on:
        out = du.cutout(out, cy, cx, cfg.cutout_size)
    return out


def test_fixed_choices_give_identical_outputs():
    cfg = du.AugmentConfig(crop_prob=1.0, crop_padding=2, flip_prob=0.5, cutout_prob=0.5, cutout_size=3)
    x = images_u8()
    B, _, H, W = x.shape
    params = du.AugmentParams(
        offsets=torch.tensor([[0, 0], [4, 4], [2, 2], [1, 3], [4, 0]]),
        flips=torch.tensor([False, True, True, False, True]),
        cutout_centres=torch.tensor([[0, 0], [5, 6], [3, 2], [2, 5], [1, 1]]),
        cutout_on=torch.tensor([True, True, False, True, False]),
    )
    got = du.augment_batch(x, params, cfg, torch.tensor(MEAN), torch.tensor(STD))
    for i in range(B):
        (top, left), (cy, cx) = params.offsets[i].tolist(), params.cutout_centres[i].tolist()
        want = reference_augment(x[i], top, left, bool(params.flips[i]), bool(params.cutout_on[i]), cy, cx, cfg)
        torch.testing.assert_close(got[i], want, rtol=0, atol=0, msg=f"image {i} differs")


def test_centre_offset_without_flip_is_identity_and_normalisation_matches_torchvision():
    x = images_u8(B=2, C=3, H=5, W=4, seed=1)
    same = du.crop_flip_batch(x, torch.full((2, 2), 3), torch.zeros(2, dtype=torch.bool), padding=3)
    assert torch.equal(same, x)
    mirrored = du.crop_flip_batch(x, torch.full((2, 2), 3), torch.ones(2, dtype=torch.bool), padding=3)
    assert torch.equal(mirrored, x.flip(3))
    norm = du.normalize_batch(x, torch.tensor(MEAN), torch.tensor(STD))
    assert torch.equal(norm, TF.normalize(TF.convert_image_dtype(x, torch.float32), MEAN, STD))


def test_cutout_batch_matches_single_image_cutout_at_borders():
    x = torch.randn(4, 2, 6, 5)
    centres = torch.tensor([[0, 0], [5, 4], [2, 2], [3, 0]])
    on = torch.ones(4, dtype=torch.bool)
    for size in (1, 2, 3, 4):
        got = du.cutout_batch(x, centres, on, size)
        for i in range(4):
            assert torch.equal(got[i], du.cutout(x[i], *centres[i].tolist(), size)), (size, i)


def _outcome_counts(batches):
    """Histogram of distinct output images (as bytes)."""
    counts = collections.Counter()
    for batch in batches:
        for img in batch:
            counts[img.numpy().tobytes()] += 1
    return counts


def test_both_paths_sample_the_same_distribution():
    """Crop/flip outcomes of one image: both paths match the analytic probabilities within 4 sigma.

    Oracle: with padding p and crop probability q, the window offset is uniform over (2p+1)^2 positions with
    probability q, and the centre otherwise; the flip is independent with probability f.
    """
    pad, q, f, n = 1, 0.6, 0.3, 2000
    cfg = du.AugmentConfig(crop_prob=q, crop_padding=pad, flip_prob=f, cutout_prob=0.0)
    image = images_u8(B=1, C=1, H=3, W=3, seed=2)
    images, labels = image.expand(n, -1, -1, -1).contiguous(), torch.zeros(n, dtype=torch.int64)
    mean, std = (0.0,), (1.0,)
    torch.manual_seed(0)
    classic = du.make_dataloader(images, labels, 250, mean=mean, std=std, augment=cfg, num_workers=0, seed=0)
    device = du.DeviceLoader(images, labels, 250, mean=mean, std=std, augment=cfg, shuffle=True, seed=0)
    counts = {"classic": _outcome_counts(x for x, _ in classic), "device": _outcome_counts(x for x, _ in device)}

    positions = 2 * pad + 1
    expected = collections.Counter()
    for top in range(positions):
        for left in range(positions):
            p_offset = q / positions**2 + (1 - q) * (top == pad and left == pad)
            for flip in (False, True):
                params = du.AugmentParams(torch.tensor([[top, left]]), torch.tensor([flip]),
                                          torch.zeros(1, 2, dtype=torch.int64), torch.tensor([False]))
                out = du.augment_batch(image, params, cfg, torch.tensor(mean), torch.tensor(std))[0]
                expected[out.numpy().tobytes()] += p_offset * (f if flip else 1 - f)
    for path, got in counts.items():
        assert set(got) <= set(expected), f"{path} produced an image no crop/flip can give"
        for key, p in expected.items():
            sigma = (n * p * (1 - p)) ** 0.5
            assert abs(got[key] - n * p) <= 4 * sigma + 1, f"{path}: {got[key]} vs expected {n * p:.1f}"


def test_cutout_rate_per_pixel_agrees_between_paths():
    n, cfg = 3000, du.AugmentConfig(crop_prob=0.0, flip_prob=0.0, cutout_prob=0.7, cutout_size=2)
    images = torch.full((n, 1, 4, 5), 200, dtype=torch.uint8)
    labels = torch.zeros(n, dtype=torch.int64)
    torch.manual_seed(1)
    rates = {}
    for name, loader in (
        ("classic", du.make_dataloader(images, labels, 500, mean=(0.0,), std=(1.0,), augment=cfg, num_workers=0)),
        ("device", du.DeviceLoader(images, labels, 500, mean=(0.0,), std=(1.0,), augment=cfg, seed=3)),
    ):
        rates[name] = torch.cat([(x == 0).float() for x, _ in loader]).mean(0)  # (1, H, W) P(pixel is cut)
    # Oracle: pixel (r, c) is cut when the centre lies in the size×size block that covers it.
    size = cfg.cutout_size
    for r in range(4):
        for c in range(5):
            rows = sum(1 for cy in range(4) if cy - size // 2 <= r < cy - size // 2 + size)
            cols = sum(1 for cx in range(5) if cx - size // 2 <= c < cx - size // 2 + size)
            p = cfg.cutout_prob * rows * cols / 20
            tol = 4 * (p * (1 - p) / n) ** 0.5 + 1e-3
            for name in rates:
                assert abs(rates[name][0, r, c].item() - p) <= tol, (name, r, c, rates[name][0, r, c].item(), p)


def test_device_loader_epochs_shuffle_reproducibly_and_cover_everything():
    x = images_u8(B=11, C=2, H=4, W=4, seed=3)
    y = torch.arange(11)
    loader = du.DeviceLoader(x, y, 4, mean=MEAN[:2], std=STD[:2], shuffle=True, seed=7)
    assert len(loader) == 3
    first = torch.cat([b for _, b in loader])
    second = torch.cat([b for _, b in loader])
    assert sorted(first.tolist()) == list(range(11)) and not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b for _, b in loader]), first)  # a resumed epoch sees the same order
    batches = list(du.DeviceLoader(x, y, 4, mean=MEAN[:2], std=STD[:2], drop_last=True))
    assert len(batches) == 2 and torch.equal(batches[0][1], y[:4])
    want = TF.normalize(TF.convert_image_dtype(x[:4], torch.float32), MEAN[:2], STD[:2])
    assert torch.equal(batches[0][0], want)


def test_classic_dataloader_with_workers_matches_without_augmentation():
    x, y = images_u8(B=9, C=3, H=4, W=4, seed=4), torch.arange(9)
    loader = du.make_dataloader(x, y, 4, mean=MEAN, std=STD, num_workers=2)
    got = torch.cat([b for b, _ in loader])
    assert torch.equal(got, TF.normalize(TF.convert_image_dtype(x, torch.float32), MEAN, STD))


def test_bad_inputs_raise_actionable_errors():
    with pytest.raises(ValueError, match="probability"):
        du.AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="uint8"):
        du.DeviceLoader(torch.zeros(2, 3, 4, 4), torch.zeros(2), 2, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="channels"):
        du.DeviceLoader(images_u8(B=2, C=1), torch.zeros(2), 2, mean=MEAN, std=STD)
