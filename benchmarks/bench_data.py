"""Data pipeline throughput: the device-resident path vs torchvision.transforms + DataLoader.

    python benchmarks/bench_data.py [--device auto|cpu|cuda] [--workers 2] [--batch-size 512] [--repeats 3]
                                    [--json out.json]

Both paths apply the same CIFAR augmentation (crop with 4-pixel padding, flip, normalise, cutout) to
CIFAR-sized batches (B, 3, 32, 32) and deliver them on the training device; the ratio of their images/s is
measured side by side in one run. Real images (../shared/datasets/cifar10-mini) are used when present,
synthetic CIFAR-shaped images otherwise (throughput does not depend on the pixel values).
"""
from __future__ import annotations

import argparse
import statistics

import torch
from _common import SHARED_CIFAR10_MINI, header, sync, timed, write_json

import data_utils as du
from vitcourse.training import runtime

CIFAR_AUG = du.AugmentConfig(crop_prob=1.0, crop_padding=4, flip_prob=0.5, cutout_prob=0.5, cutout_size=8)
SYNTHETIC_IMAGES = 10_000


def cifar_images():
    if SHARED_CIFAR10_MINI.is_dir():
        x, y = du.load_cifar("cifar10", SHARED_CIFAR10_MINI, train=True, verify=False)
        return x, y, "cifar10-mini (real images)"
    x, y = du.synthetic_dataset(SYNTHETIC_IMAGES, num_classes=10, image_size=32, in_chans=3)
    return x, y, "synthetic CIFAR-shaped"


def one_epoch(loader, device) -> int:
    """One pass, moving each batch to `device` as a training loop does; returns the number of images."""
    n = 0
    for x, _ in loader:
        x = x.to(device, non_blocking=True)
        n += len(x)
    sync(device)
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (Colab has 2 CPUs)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed epochs per path, alternating the paths (medians are reported)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the main process (default: torch's)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = runtime.pick_device(args.device)
    info = header("data pipeline: device-resident vs torchvision + DataLoader", device)
    x, y, source = cifar_images()
    mean, std = du.CIFAR10_MEAN, du.CIFAR10_STD
    print(f"   {len(x):,} {source} images, batch {args.batch_size}, CIFAR augmentation {CIFAR_AUG}")

    loaders = {
        "device": du.DeviceLoader(x, y, args.batch_size, mean=mean, std=std, augment=CIFAR_AUG, shuffle=True,
                                  drop_last=True, device=device),
        "dataloader": du.make_dataloader(x, y, args.batch_size, mean=mean, std=std, augment=CIFAR_AUG,
                                         shuffle=True, num_workers=args.workers, drop_last=True),
    }
    for loader in loaders.values():  # untimed: worker start-up, first kernels, caches
        one_epoch(loader, device)
    rates = {name: [] for name in loaders}
    for _ in range(args.repeats):  # alternate, so that a change in the machine's load hits both paths
        for name, loader in loaders.items():
            count = {}
            seconds = timed(lambda: count.setdefault("n", one_epoch(loader, device)), device)
            rates[name].append(count["n"] / seconds)
    results = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in results.items():
        print(f"   {name:>10}: {rate:>10,.0f} images/s  (runs: {', '.join(f'{r:,.0f}' for r in rates[name])})")
    ratio = results["device"] / results["dataloader"]
    print(f"   ratio device / DataLoader({args.workers} workers) on {device}: {ratio:.1f}x  (target >= 5x)")
    write_json(args.json, {"hardware": info, "source": source, "batch_size": args.batch_size,
                           "workers": args.workers, "images_per_s": results, "runs": rates, "ratio": ratio})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
