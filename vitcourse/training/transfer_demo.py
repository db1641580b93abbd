"""The offline transfer experiment: our own "pretrained" backbones, then every fine-tuning mode, no download.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Pretrained weights cannot be downloaded on CI or in `make demo`, so the experiment builds its own:
    1. pretrain a small timm ViT and a small timm Swin from scratch on the digits 0-4 (about 650 images);
    2. save each as a weights file (a plain timm state dict, the format of a downloaded checkpoint);
    3. fine-tune on the digits 5-9 with only `shots` images per class, in every mode of
       `vitcourse.training.transfer`, loading the file through `create_backbone(weights=FILE)` — the code
       path a downloaded ViT-S/16 or Swin-T takes on Colab; `scratch` trains the same architecture from a
       random initialisation with the same budget.

The digits are 8x8 and grey: the ViT cuts them into 2x2 patches (a 4x4 grid), the Swin embeds every pixel
(patch_size 1, an 8x8 grid, windows of 4x4) and merges once (4x4 in its last stage).

    report = offline_demo("runs/transfer-demo", seeds=(0, 1, 2))
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

import data_utils
from data_utils import DatasetSplits
from vitcourse.training import runtime
from vitcourse.models import pretrained as P
from vitcourse.training.recipes import DIGITS_AUGMENT
from vitcourse.training.train import TrainConfig, evaluate, train
from vitcourse.training.transfer import MODES, BackboneSpec, FeatureCache, run_mode

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)  # the "upstream" task
TARGET_CLASSES = (5, 6, 7, 8, 9)  # the "downstream" task: digits the backbone has never seen
DEFAULT_SHOTS = 10  # training images per downstream class: the small-data regime where pretraining pays
# Small timm models for 8x8 grey digits (names of real timm architectures, sizes overridden).
DEMO_ARCHS = {
    # 2x2 patches, 16 tokens + class token, 64 wide and 4 deep (~0.2M parameters): the course's digits ViT.
    "vit": ("vit_tiny_patch16_224", dict(img_size=8, patch_size=2, embed_dim=64, depth=4, num_heads=4,
                                         mlp_ratio=2.0)),
    # Pixels as patches (8x8 grid), 4x4 windows, two stages of 2 blocks (32 then 64 wide, ~0.1M parameters).
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=8, patch_size=1, window_size=4, embed_dim=32,
                                                  depths=(2, 2), num_heads=(2, 4), mlp_ratio=2.0)),
}
# Upstream: the digits ViT recipe (docs/benchmarks.md), shortened; 5 classes train fast.
PRETRAIN_CONFIG = TrainConfig(epochs=25, batch_size=64, lr=1e-3, warmup_epochs=2, weight_decay=0.05,
                              label_smoothing=0.1, augment=DIGITS_AUGMENT, progress=False)
# Downstream: 50 images, so small batches for enough steps; one recipe and budget for every mode.
FINETUNE_CONFIG = TrainConfig(epochs=30, batch_size=10, lr=1e-3, warmup_epochs=2, weight_decay=0.05,
                              label_smoothing=0.1, augment=DIGITS_AUGMENT, progress=False)
PARTIAL_BLOCKS = 1  # the demo's models have 4 blocks: unfreeze the last one


def few_shot(splits: DatasetSplits, shots: int, seed: int = 0) -> DatasetSplits:
    """Keep `shots` seeded training images per class (validation and test sets unchanged)."""
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for k in range(splits.num_classes):
        idx = torch.nonzero(splits.train_labels == k).flatten()
        if len(idx) < shots:
            raise ValueError(f"class {k} has only {len(idx)} training images, fewer than shots={shots}")
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:shots]])
    keep = torch.cat(keep).sort().values
    return dataclasses.replace(splits, train_images=splits.train_images[keep], train_labels=splits.train_labels[keep])


def pretrain(arch: str, out_dir: Path, cfg: TrainConfig = PRETRAIN_CONFIG, seed: int = 0) -> tuple[Path, float]:
    """Train DEMO_ARCHS[arch] from scratch on the digits 0-4 and save its weights: (file, test accuracy)."""
    name, kwargs = DEMO_ARCHS[arch]
    splits = data_utils.load_dataset("digits", classes=PRETRAIN_CLASSES, val_size=0, seed=seed)
    runtime.seed_everything(seed)
    net = P.create_backbone(name, splits.num_classes, pretrained=False, in_chans=splits.in_chans, **kwargs)
    train(net, splits, dataclasses.replace(cfg, seed=seed))
    acc = evaluate(net, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std).accuracy
    path = P.save_weights(net, Path(out_dir) / f"{arch}_digits0-4_seed{seed}.pth")
    return path, acc


def offline_demo(out_dir, archs: Sequence[str] = ("vit", "swin"), modes: Sequence[str] = MODES,
                 shots: int = DEFAULT_SHOTS, seeds: Sequence[int] = (0,), pretrain_cfg: TrainConfig = PRETRAIN_CONFIG,
                 finetune_cfg: TrainConfig = FINETUNE_CONFIG, partial_blocks: int = PARTIAL_BLOCKS,
                 log: Optional[callable] = print) -> dict:
    """Pretrain on 0-4, fine-tune on `shots` images per class of 5-9 in every mode, for each arch and seed.

    Returns a JSON-ready report: hardware, the configs, and per (arch, seed) the upstream accuracy and one
    `ModeResult` dict per mode, plus per (arch, mode) the mean and min/max test accuracy over the seeds.
    """
    out_dir = Path(out_dir)
    start = time.perf_counter()
    runs = []
    for arch in archs:
        name, kwargs = DEMO_ARCHS[arch]
        for seed in seeds:
            weights, up_acc = pretrain(arch, out_dir, pretrain_cfg, seed)
            splits = few_shot(data_utils.load_dataset("digits", classes=TARGET_CLASSES, val_size=0, seed=seed),
                              shots, seed)
            spec = BackboneSpec(name, weights=str(weights), arch=kwargs)
            cfg = dataclasses.replace(finetune_cfg, seed=seed)
            cache = FeatureCache()
            results = [run_mode(splits, spec, m, cfg, partial_blocks=partial_blocks, cache=cache) for m in modes]
            runs.append({"arch": arch, "seed": seed, "upstream_test_accuracy": up_acc, "weights": str(weights),
                         "modes": [r.to_dict() for r in results]})
            if log:
                log(f"{arch} seed {seed}: upstream {up_acc:.1%} | " +
                    " ".join(f"{r.mode} {r.test_accuracy:.1%}" for r in results))
    summary = {}
    for arch in archs:
        for mode in modes:
            accs = [m["test_accuracy"] for r in runs if r["arch"] == arch for m in r["modes"] if m["mode"] == mode]
            rows = [m for r in runs if r["arch"] == arch for m in r["modes"] if m["mode"] == mode]
            summary[f"{arch}/{mode}"] = {
                "mean_test_accuracy": float(np.mean(accs)), "min": float(np.min(accs)), "max": float(np.max(accs)),
                "trainable_params": rows[0]["trainable_params"], "total_params": rows[0]["total_params"],
                "mean_epoch_time_s": float(np.mean([m["epoch_time_s"] for m in rows])),
            }
    return {"hardware": runtime.hardware_info(runtime.pick_device(finetune_cfg.device)),
            "shots_per_class": shots, "seeds": list(seeds), "pretrain_classes": PRETRAIN_CLASSES,
            "target_classes": TARGET_CLASSES, "pretrain_config": pretrain_cfg.to_dict(),
            "finetune_config": finetune_cfg.to_dict(), "partial_blocks": partial_blocks, "archs":
            {a: {"timm_name": DEMO_ARCHS[a][0], "overrides": DEMO_ARCHS[a][1]} for a in archs},
            "runs": runs, "summary": summary, "wall_time_s": time.perf_counter() - start}


def format_summary(report: dict) -> str:
    """A Markdown table of the demo's summary (one row per arch and mode)."""
    lines = ["| model | mode | trainable / total params | time/epoch (s) | test accuracy: mean (min–max) |",
             "|---|---|---|---|---|"]
    for key, s in report["summary"].items():
        arch, mode = key.split("/")
        lines.append(f"| {arch} | {mode} | {s['trainable_params']:,} / {s['total_params']:,} | "
                     f"{s['mean_epoch_time_s']:.2f} | {s['mean_test_accuracy']:.1%} ({s['min']:.1%}–{s['max']:.1%}) |")
    return "\n".join(lines)
