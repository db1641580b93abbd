"""How well do FLOPs predict training time? Ratios measured side by side in one run.

For a few of the assignment's models this times a training step (vitcourse.analysis.sweep.measure) and prints,
relative to the first model, the ratio of measured step time next to the ratio of closed-form training
FLOPs. A ratio near 1 means FLOPs predict time on this machine; small models usually run below the
hardware's peak (overheads, memory-bound elementwise work), so their time ratio exceeds the FLOP ratio.
It also compares fused and manual attention on the same ViT.

    .venv/bin/python benchmarks/bench_complexity.py [--full] [--device cuda] [--batch-size 64] [--steps 5]
"""
from __future__ import annotations

import argparse
import copy

import torch

from vitcourse.analysis import complexity, sweep

QUICK = [("vit", dict(patch_size=8, embed_dim=256, depth=4, num_heads=4)),
         ("vit", dict(patch_size=4, embed_dim=256, depth=4, num_heads=4)),
         ("vit", dict(patch_size=4, embed_dim=256, depth=8, num_heads=4)),
         ("resnet18_cifar", {}), ("resnet18_imagenet", {})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="all 18 CIFAR-10 models instead of five")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    settings = sweep.MeasureSettings(batch_size=args.batch_size, warmup_steps=args.warmup, timed_steps=args.steps,
                                     device=args.device)
    specs = (sweep.assignment_specs(num_classes=(10,)) if args.full
             else [sweep.ModelSpec.make(model, 10, **options) for model, options in QUICK])

    rows = sweep.run_sweep(specs, settings)
    base = rows[0]
    print(f"device {base['device']}, batch {base['batch_size']}, median of {args.steps} steps\n")
    print(f"{'model':<22}{'train GFLOPs/img':>18}{'step (s)':>10}{'FLOP ratio':>12}{'time ratio':>12}{'GFLOP/s':>10}")
    for row in rows:
        achieved = row["train_gflops"] * row["train_images_per_s"]
        print(f"{row['name']:<22}{row['train_gflops']:>18.3f}{row['train_step_s']:>10.3f}"
              f"{row['train_gflops'] / base['train_gflops']:>12.2f}{row['train_step_s'] / base['train_step_s']:>12.2f}"
              f"{achieved:>10.1f}")

    # Fused vs manual attention on one ViT, same weights, measured one after the other.
    spec = specs[1] if len(specs) > 1 else specs[0]
    fused = spec.build()
    manual = copy.deepcopy(fused)
    complexity.set_fused_attention(manual, False)
    times = {name: sweep.measure(model, spec.image_shape, settings, 10)["train_step_s"]
             for name, model in (("fused", fused), ("manual", manual))}
    print(f"\n{spec.name}: manual / fused attention step time = {times['manual'] / times['fused']:.2f} "
          f"(torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
