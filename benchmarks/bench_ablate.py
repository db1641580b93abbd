"""Cost of an ablation grid on real CIFAR images, and what resuming a finished grid costs.

    python benchmarks/bench_ablate.py [--epochs 1] [--max-train 256] [--max-eval 128] [--threads 1] [--json out.json]

On the five-class subset [1, 3, 5, 7, 9] of `../shared/datasets/cifar10-mini` (real CIFAR-10 images, see its
README) it runs `vitcourse.analysis.ablate.run_grid` on a small grid (pos_embed learnable vs 2-D sin-cos, 2 seeds,
the CIFAR ViT recipe on a short budget) twice into the same folder, and prints:

- the per-run cost (wall time, CPU time, seconds per epoch) and the training FLOPs per image of the recipe's
  ViT (counted by `torch.utils.flop_counter`), hence the rate this machine sustained;
- the second invocation's time against the first (side by side in this one process): the second must find
  every run finished and skip it (resume), so the ratio is the cost of reading the JSONs and the table.

The accuracies of a 1-epoch run on a few hundred images say nothing about the variants: this measures cost.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import SHARED_CIFAR10_MINI, header, write_json

import data_utils as du
from vitcourse.analysis import ablate
from vitcourse.training import recipes

CLASSES = (1, 3, 5, 7, 9)  # the classic homework's subset: automobile, cat, dog, horse, truck
GRID = {"pos_embed": ["learnable", "sincos2d"]}
SEEDS = (0, 1)
# A T4's fp16 tensor-core peak is 65 TFLOP/s; a small ViT under autocast sustains a fraction of it. 10 TFLOP/s
# (about 15%) is the assumption of the estimate, stated with it (measure on the GPU: vitcourse ablate prints s / epoch).
T4_SUSTAINED_TFLOPS = 10.0
ESTIMATE_EPOCHS = (10, 50)  # assignment 4's budget and the CIFAR recipe's full schedule
FLOP_BATCH = 8  # images in the one training step whose FLOPs are counted (FLOPs scale linearly with it)


def flops_per_image(num_classes: int) -> tuple[float, float, int]:
    """FLOPs per image of the CIFAR ViT recipe: training (forward + backward), evaluation (forward); parameters."""
    from torch.utils.flop_counter import FlopCounterMode

    model_cfg, _ = recipes.default_recipe("cifar10", "vit", num_classes=num_classes)
    model = recipes.build_model("vit", model_cfg)
    x = torch.randn(FLOP_BATCH, model_cfg["in_chans"], model_cfg["image_size"], model_cfg["image_size"])
    y = torch.randint(0, num_classes, (FLOP_BATCH,))
    with FlopCounterMode(display=False) as train_counter:
        F.cross_entropy(model(x), y).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as eval_counter:
        model(x)
    return (train_counter.get_total_flops() / FLOP_BATCH, eval_counter.get_total_flops() / FLOP_BATCH,
            sum(p.numel() for p in model.parameters()))


def gpu_estimate(train_flops: float, eval_flops: float, tflops: float, epochs: int) -> float:
    """Seconds of one run of the five-class recipe on full CIFAR-10 at a sustained `tflops` (an estimate).

    Five classes of CIFAR-10 are 25,000 training images (a tenth held out for validation: 22,500 + 2,500)
    and 5,000 test images; every epoch trains on the 22,500 and evaluates the 2,500, the test set once.
    """
    train_images, val_images, test_images = 22_500, 2_500, 5_000
    flops = epochs * (train_images * train_flops + val_images * eval_flops) + test_images * eval_flops
    return flops / (tflops * 1e12)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (the short budget; default 1)")
    parser.add_argument("--max-train", type=int, default=256, help="training images per run (default 256)")
    parser.add_argument("--max-eval", type=int, default=128, help="validation and test images per run (default 128)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--gpu-tflops", type=float, default=T4_SUSTAINED_TFLOPS,
                        help="sustained TFLOP/s of the estimate (default: a T4 under autocast)")
    parser.add_argument("--out", type=Path, help="ablation folder (default: a temporary one, deleted after)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = header("ablation benchmark: CIFAR-10 five-class subset, 2 variants x 2 seeds, run twice",
                  torch.device("cpu"))
    if not SHARED_CIFAR10_MINI.is_dir():
        print(f"   skipped: {SHARED_CIFAR10_MINI.resolve()} is not present. This benchmark needs the shared "
              "real-image subset (CIFAR python layout) next to the repository, at ../shared/datasets/cifar10-mini")
        return 0
    def loader(seed, classes):  # the first max_train training and max_eval validation / test images
        splits = du.load_dataset("cifar10", root=SHARED_CIFAR10_MINI, verify=False, download=False,
                                 classes=classes, seed=seed)
        return splits.subset(args.max_train, args.max_eval)

    settings = ablate.Settings(data="cifar10", classes=CLASSES, epochs=args.epochs, device="cpu",
                               threads=args.threads, loader=loader)
    variants = ablate.expand(GRID)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        logs: list[list[str]] = [[], []]
        seconds = []
        for i in range(2):  # the same command twice: the second must resume, i.e. skip every finished run
            start = time.perf_counter()
            results = ablate.run_grid(variants, SEEDS, settings, out, log=logs[i].append)
            seconds.append(time.perf_counter() - start)
            for line in logs[i]:
                print(f"   [{'first' if i == 0 else 'second'} invocation] {line}")
    skipped = sum("done before" in line for line in logs[1])
    total = len(variants) * len(SEEDS)
    if skipped != total:
        print(f"   RESUME FAILED: the second invocation re-trained {total - skipped} of {total} finished runs")
        return 1
    flops, eval_flops, params = flops_per_image(len(CLASSES))
    wall = [r["wall_time_s"] for r in results]
    cpu = [r["cpu_time_s"] for r in results]
    epoch = [r["time_per_epoch_s"] for r in results]
    train_images = args.max_train  # the subset keeps the first max_train training images
    # Training FLOP/s per second of epoch (the epoch includes validation: a lower bound) and per CPU second
    # of the run (data loading and the test included: on a busy machine the wall clock says little).
    rate = flops * train_images / statistics.median(epoch)
    cpu_rate = args.epochs * flops * train_images / statistics.median(cpu)
    print(f"   CIFAR ViT recipe: {params:,} parameters, {flops / 1e9:.2f} GFLOP per training image "
          f"(forward + backward), {eval_flops / 1e9:.2f} GFLOP per evaluated image, {len(CLASSES)} classes")
    print(f"   per run ({args.epochs} epoch(s) of {train_images} images, {args.threads} thread(s)): wall median "
          f"{statistics.median(wall):.1f} s (min {min(wall):.1f}, max {max(wall):.1f}), CPU median "
          f"{statistics.median(cpu):.1f} s, {statistics.median(epoch):.1f} s / epoch; training GFLOP per wall second of "
          f"epoch {rate / 1e9:.1f}, per CPU second of the run {cpu_rate / 1e9:.1f}")
    print(f"   first invocation {seconds[0]:.1f} s ({total} runs trained), second {seconds[1]:.2f} s "
          f"({skipped} of {total} skipped): second / first = {seconds[1] / seconds[0]:.1e}")
    for epochs in ESTIMATE_EPOCHS:
        print(f"   estimate, not a measurement: the five-class recipe on full CIFAR-10, {epochs} epochs, at a sustained "
              f"{args.gpu_tflops:g} TFLOP/s (T4 assumption): {gpu_estimate(flops, eval_flops, args.gpu_tflops, epochs):.0f} s "
              "per run (compute only; start-up and data loading excluded)")
    write_json(args.json, {"hardware": info, "classes": CLASSES, "grid": GRID, "seeds": SEEDS,
                           "epochs": args.epochs, "max_train": args.max_train, "threads": args.threads,
                           "gflop_per_train_image": flops / 1e9, "gflop_per_eval_image": eval_flops / 1e9, "num_parameters": params, "runs": results,
                           "first_s": seconds[0], "second_s": seconds[1], "skipped": skipped})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
