"""The offline transfer experiment: our own "pretrained" backbones, then every fine-tuning mode, no download.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Pretrained weights cannot be downloaded on CI or in `make demo`, so the experiment builds its own:
    1. pretrain a small timm ViT and a small timm Swin from scratch on an upstream task made of the digits
       0-4 only: every training image under each of UPSTREAM_VIEWS (rotations by 0/90/180/270 degrees),
       labelled by (digit, rotation) — 20 classes (`upstream_splits`);
    2. save each as a weights file (a plain timm state dict, the format of a downloaded checkpoint), cached
       under a name that hashes the whole recipe (`recipe_key`), so a second run reads it back;
    3. fine-tune on the digits 5-9 — upright, classes the backbone has never seen — with only `shots`
       images per class, in every mode of `vitcourse.training.transfer`, loading the file through
       `create_backbone(weights=FILE)` — the code path a downloaded ViT-S/16 or Swin-T takes on Colab;
       `scratch` trains the same architecture from a random initialisation with the same budget.

Why this upstream task (docs/transfer.md has the measurements): trained on the 5 digits alone, the
backbones learn 5 directions that say little about other digits, and they lose to scratch downstream.
Asking for the digit AND its rotation makes the features describe strokes and their orientation, which
is what tells a 6 from a 9 or a 7 from a 1, and it multiplies the upstream data by 4 without ever
showing a 5-9. The downstream test images are never seen upstream (the digits' test split is fixed).

The digits are 8x8 and grey: the ViT cuts them into 2x2 patches (a 4x4 grid), the Swin embeds every pixel
(patch_size 1, an 8x8 grid, windows of 4x4) and merges once (4x4 in its last stage).

    report = offline_demo("runs/transfer-demo", seeds=(0, 1, 2))
    print(format_summary(report))
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

import data_utils
from data_utils import DatasetSplits
from vitcourse.training import runtime
from vitcourse.models import pretrained as P
from vitcourse.training.recipes import DIGITS_AUGMENT
from vitcourse.training.train import TrainConfig, evaluate, train
from vitcourse.training.transfer import MODES, BackboneSpec, FeatureCache, run_mode

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)  # the "upstream" digits
TARGET_CLASSES = (5, 6, 7, 8, 9)  # the "downstream" task: digits the backbone has never seen
DEFAULT_SHOTS = 10  # training images per downstream class: the small-data regime where pretraining pays
# Upstream views: the 8 symmetries of the square (4 quarter turns, with and without a mirror first), exact on
# the pixel grid (no interpolation): view name -> (mirror left-right first?, quarter turns).
VIEWS = {f"{'mirror_' if m else ''}rot{90 * k}": (m, k) for m in (False, True) for k in range(4)}
UPSTREAM_VIEWS = tuple(VIEWS)
# Small models for 8x8 grey digits: names of real timm architectures with their sizes overridden, and the course's
# own ResNet.
DEMO_ARCHS = {
    # 2x2 patches, 16 tokens + class token, 64 wide and 4 deep (~0.1M parameters): the course's digits ViT,
    # with the 4 heads its transfer numbers (docs/transfer.md) were measured with (the recipe now has 8).
    "vit": ("vit_tiny_patch16_224", dict(img_size=8, patch_size=2, embed_dim=64, depth=4, num_heads=4,
                                         mlp_ratio=2.0)),
    # Pixels as patches (8x8 grid), 4x4 windows, two stages of 2 blocks (32 then 64 wide, ~0.1M parameters).
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=8, patch_size=1, window_size=4, embed_dim=32,
                                                  depths=(2, 2), num_heads=(2, 4), mlp_ratio=2.0)),
    # Swin-S is Swin-T with its deep stage three times as deep (18 blocks, not 6), widths unchanged: here the
    # last stage's 2 blocks become 6 (~0.25M parameters).
    "swin_s": ("swin_small_patch4_window7_224", dict(img_size=8, patch_size=1, window_size=4, embed_dim=32,
                                                     depths=(2, 6), num_heads=(2, 4), mlp_ratio=2.0)),
    # Assignment 4's ResNet (CIFAR form: 3x3 stem, no max-pool), one block per stage, 16 to 128 wide (~0.25M
    # parameters); strides keep its last stage on the same 4x4 grid as the ViT's patches, for Grad-CAM.
    "cnn": ("resnet_cifar", dict(blocks=(1, 1, 1, 1), widths=(16, 32, 64, 128), strides=(1, 1, 2, 1))),
}
DEFAULT_DEMO_ARCHS = ("vit", "swin")  # `vitcourse transfer --demo` and docs/transfer.md's numbers
# Upstream: the digits ViT recipe (docs/benchmarks.md) on 8x the images (5,768 = 721 digits x 8 views), 8 epochs
# of batch 64: 720 steps. Longer helps the upstream accuracy more than the transfer, and costs the demo's time.
PRETRAIN_CONFIG = TrainConfig(epochs=8, batch_size=64, lr=1e-3, warmup_epochs=2, weight_decay=0.05,
                              label_smoothing=0.1, augment=DIGITS_AUGMENT, progress=False)
# Downstream: 50 images, so small batches for enough steps (150); one budget for every mode.
FINETUNE_CONFIG = TrainConfig(epochs=30, batch_size=10, lr=1e-3, warmup_epochs=2, weight_decay=0.05,
                              label_smoothing=0.1, augment=DIGITS_AUGMENT, progress=False)
# Per-mode peak learning rates where FINETUNE_CONFIG.lr does not fit: a lone linear head on frozen features
# is a convex problem that 150 steps at 1e-3 leave far from its optimum (the probe, fitted to convergence,
# showed it); 1e-2 gets there. `full` keeps 1e-3 for its head (the backbone learns at a tenth of it).
MODE_LR = {"head": 5e-3}
PARTIAL_BLOCKS = 1  # the demo's models have 4 blocks: unfreeze the last one
RECIPE_VERSION = 1  # bump when the upstream code changes in a way the recipe fields do not show


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


# ----------------------------------------------------------------------------------------------------
# Upstream: digits 0-4 x rotations, pretrained once per recipe and cached
# ----------------------------------------------------------------------------------------------------
def _views(images: torch.Tensor, labels: torch.Tensor, views: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image (B, C, H, W) under every view; label digit·V + view index, so (B·V, C, H, W) and (B·V,)."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown upstream views {unknown}: choose from {', '.join(VIEWS)}")
    V = len(views)
    view = lambda m, k: torch.rot90(torch.flip(images, dims=(3,)) if m else images, k, dims=(2, 3))  # noqa: E731
    x = torch.cat([view(*VIEWS[v]) for v in views])  # (V·B, C, H, W)
    y = torch.cat([labels * V + i for i, _ in enumerate(views)])  # (V·B,)
    return x, y


def upstream_splits(seed: int = 0, views: Sequence[str] = UPSTREAM_VIEWS,
                    classes: Sequence[int] = PRETRAIN_CLASSES) -> DatasetSplits:
    """The upstream task: the digits `classes` under every view, labelled (digit, view), len(classes)·V classes.

    Train and test images come from the digits' own train and test splits (the test split never changes,
    so no downstream test image is seen upstream either way).
    """
    s = data_utils.load_dataset("digits", classes=classes, val_size=0, seed=seed)
    train_x, train_y = _views(s.train_images, s.train_labels, views)
    test_x, test_y = _views(s.test_images, s.test_labels, views)
    names = tuple(f"{digit}/{v}" for digit in s.class_names for v in views)
    return dataclasses.replace(s, train_images=train_x, train_labels=train_y, test_images=test_x,
                               test_labels=test_y, class_names=names)


def recipe_key(arch: str, cfg: TrainConfig, seed: int, views: Sequence[str] = UPSTREAM_VIEWS,
               arch_spec: Optional[tuple[str, dict]] = None) -> str:
    """A short hash of everything that decides the upstream weights (not the device or the progress bar)."""
    name, kwargs = arch_spec or DEMO_ARCHS[arch]
    train_cfg = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "progress", "budget_minutes")}
    recipe = dict(version=RECIPE_VERSION, timm_name=name, arch=kwargs, classes=PRETRAIN_CLASSES, views=list(views),
                  train=train_cfg, seed=seed)
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pretrain(arch: str, out_dir: Path, cfg: TrainConfig = PRETRAIN_CONFIG, seed: int = 0,
             views: Sequence[str] = UPSTREAM_VIEWS, reuse: bool = True,
             arch_spec: Optional[tuple[str, dict]] = None, log: Optional[Callable] = None) -> tuple[Path, float]:
    """Train DEMO_ARCHS[arch] (or `arch_spec`, a (timm name, overrides) pair, named `arch`) from scratch on
    `upstream_splits` and save its weights: (file, upstream test accuracy). With `reuse`, a file of the same
    `recipe_key` in `out_dir` is returned instead (its accuracy is read from the .json written beside it).
    `log`: told before and after a pretraining (it takes a while: a notebook cell must not sit silent), and when
    the cached file is used."""
    name, kwargs = arch_spec or DEMO_ARCHS[arch]
    key = recipe_key(arch, cfg, seed, views, arch_spec)
    path = Path(out_dir) / f"{arch}_digits0-4x{len(views)}views_{key}.pth"
    meta = path.with_suffix(".json")
    if reuse and path.is_file() and meta.is_file():
        acc = float(json.loads(meta.read_text())["upstream_test_accuracy"])
        if log:
            log(f"{arch}: the backbone pretrained earlier ({path}, upstream test accuracy {acc:.1%})")
        return path, acc
    splits = upstream_splits(seed, views)
    runtime.seed_everything(seed)
    net = P.create_backbone(name, splits.num_classes, pretrained=False, in_chans=splits.in_chans, **kwargs)
    if log:
        log(f"{arch}: pretraining {name} from scratch on the digits 0-4 ({len(splits.train_labels):,} images, "
            f"{cfg.epochs} epochs; once, then cached in {path.parent}) ...")
    start = time.perf_counter()
    train(net, splits, dataclasses.replace(cfg, seed=seed))
    train_s = time.perf_counter() - start
    acc = evaluate(net, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std).accuracy
    if log:
        log(f"{arch}: pretrained in {train_s:.0f} s, upstream test accuracy {acc:.1%}")
    P.save_weights(net, path)
    meta.write_text(json.dumps({"upstream_test_accuracy": acc, "train_time_s": train_s, "arch": arch,
                                "seed": seed, "views": list(views), "pretrain_config": cfg.to_dict()}, indent=2))
    return path, acc


# ----------------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------------
def offline_demo(out_dir, archs: Sequence[str] = DEFAULT_DEMO_ARCHS, modes: Sequence[str] = MODES,
                 shots: int = DEFAULT_SHOTS, seeds: Sequence[int] = (0,), pretrain_cfg: TrainConfig = PRETRAIN_CONFIG,
                 finetune_cfg: TrainConfig = FINETUNE_CONFIG, partial_blocks: int = PARTIAL_BLOCKS,
                 log: Optional[Callable] = print, views: Sequence[str] = UPSTREAM_VIEWS,
                 mode_lr: Optional[dict] = None, reuse_upstream: bool = True, finetune=None) -> dict:
    """Pretrain on digits 0-4 x views, fine-tune on `shots` images per class of 5-9 in every mode, for each
    arch and seed (each seed pretrains its own upstream model: the spread includes the upstream's).

    Args:
        mode_lr: peak learning rate per mode where it differs from finetune_cfg.lr (default MODE_LR).
        reuse_upstream: read cached upstream weights of the same recipe from `out_dir` (see `pretrain`).
        finetune: the module whose set_trainable / attention_statistics every mode uses (assignment 6's
            finetune.py; None: the course's reference), passed on to `run_mode`.

    Returns a JSON-ready report: hardware, the configs, and per (arch, seed) the upstream accuracy and one
    `ModeResult` dict per mode (with its attention statistics), plus per (arch, mode) the summary
    (`summarize`).
    """
    out_dir = Path(out_dir)
    mode_lr = dict(MODE_LR if mode_lr is None else mode_lr)
    start = time.perf_counter()
    runs = []
    for arch in archs:
        name, kwargs = DEMO_ARCHS[arch]
        for seed in seeds:
            t0 = time.perf_counter()
            weights, up_acc = pretrain(arch, out_dir, pretrain_cfg, seed, views, reuse_upstream)
            pretrain_s = time.perf_counter() - t0
            splits = few_shot(data_utils.load_dataset("digits", classes=TARGET_CLASSES, val_size=0, seed=seed),
                              shots, seed)
            spec = BackboneSpec(name, weights=str(weights), arch=kwargs)
            cache = FeatureCache()
            cfgs = {m: dataclasses.replace(finetune_cfg, seed=seed, lr=mode_lr.get(m, finetune_cfg.lr)) for m in modes}
            results = [run_mode(splits, spec, m, cfgs[m], partial_blocks=partial_blocks, cache=cache,
                                finetune=finetune) for m in modes]
            runs.append({"arch": arch, "seed": seed, "upstream_test_accuracy": up_acc, "weights": str(weights),
                         "pretrain_time_s": pretrain_s, "modes": [r.to_dict() for r in results]})
            if log:
                log(f"{arch} seed {seed}: upstream {up_acc:.1%} ({pretrain_s:.0f} s) | " +
                    " ".join(f"{r.mode} {r.test_accuracy:.1%}" for r in results))
    return {"hardware": runtime.hardware_info(runtime.pick_device(finetune_cfg.device)),
            "shots_per_class": shots, "seeds": list(seeds), "pretrain_classes": PRETRAIN_CLASSES,
            "upstream_views": list(views), "target_classes": TARGET_CLASSES, "pretrain_config": pretrain_cfg.to_dict(),
            "finetune_config": finetune_cfg.to_dict(), "mode_lr": mode_lr, "partial_blocks": partial_blocks,
            "archs": {a: {"timm_name": DEMO_ARCHS[a][0], "overrides": DEMO_ARCHS[a][1]} for a in archs},
            "runs": runs, "summary": summarize(runs), "wall_time_s": time.perf_counter() - start}


ATTENTION_KEYS = ("mean", "std", "mass_fraction", "centre_edge_ratio")


def summarize(runs: list[dict]) -> dict:
    """Per "arch/mode": test accuracy over the seeds (mean, std with ddof=0, min, max), the gain over
    `scratch` of the same seed (mean, std), parameters, time per epoch, and each attention statistic
    averaged over the seeds (None where the model has no class token)."""
    summary = {}
    for arch in dict.fromkeys(r["arch"] for r in runs):
        mine = [r for r in runs if r["arch"] == arch]
        for mode in dict.fromkeys(m["mode"] for r in mine for m in r["modes"]):
            rows = [m for r in mine for m in r["modes"] if m["mode"] == mode]
            accs = np.array([m["test_accuracy"] for m in rows])
            scratch = [next((m["test_accuracy"] for m in r["modes"] if m["mode"] == "scratch"), None) for r in mine]
            gains = np.array([a - s for a, s in zip(accs, scratch) if s is not None])
            attention = None
            if all(m.get("attention") for m in rows):
                attention = {k: float(np.mean([m["attention"][k] for m in rows])) for k in ATTENTION_KEYS}
            summary[f"{arch}/{mode}"] = {
                "mean_test_accuracy": float(accs.mean()), "std_test_accuracy": float(accs.std()),
                "min": float(accs.min()), "max": float(accs.max()), "seeds": len(accs),
                "gain_over_scratch": float(gains.mean()) if len(gains) else None,
                "gain_over_scratch_std": float(gains.std()) if len(gains) else None,
                "trainable_params": rows[0]["trainable_params"], "total_params": rows[0]["total_params"],
                "mean_epoch_time_s": float(np.mean([m["epoch_time_s"] for m in rows])),
                "attention": attention,
            }
    return summary


def format_summary(report: dict) -> str:
    """A Markdown table of the demo's summary: one row per arch and mode, with the test accuracy over the
    seeds, the gain over scratch, and the last block's CLS-to-patch attention statistics (ViT only)."""
    lines = ["| model | mode | trainable / total params | time/epoch (s) | test accuracy: mean ± std (min–max) "
             "| vs scratch (points) | CLS attn mean / std | 50%-mass patches | centre/edge |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, s in report["summary"].items():
        arch, mode = key.split("/")
        gain = "—" if mode == "scratch" or s["gain_over_scratch"] is None else \
            f"{100 * s['gain_over_scratch']:+.1f} ± {100 * s['gain_over_scratch_std']:.1f}"
        a = s.get("attention")
        attn = ("n/a (no class token)", "n/a", "n/a") if a is None else \
            (f"{a['mean']:.4f} / {a['std']:.4f}", f"{a['mass_fraction']:.0%}", f"{a['centre_edge_ratio']:.2f}")
        lines.append(f"| {arch} | {mode} | {s['trainable_params']:,} / {s['total_params']:,} | "
                     f"{s['mean_epoch_time_s']:.2f} | {s['mean_test_accuracy']:.1%} ± {s['std_test_accuracy']:.1%} "
                     f"({s['min']:.1%}–{s['max']:.1%}) | {gain} | {attn[0]} | {attn[1]} | {attn[2]} |")
    return "\n".join(lines)
