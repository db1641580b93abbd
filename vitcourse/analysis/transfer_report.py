"""Tables and attention summaries of a transfer experiment, computed with a `finetune` implementation.

Shape legend: B batch, C channels, H/W image height/width, N tokens, h heads, H'/W' the patch grid, K classes.

The freezing logic, attention rollout and attention statistics are the student's code in assignment 6
(`finetune.py`); the library never carries its own copy. Every function that needs them takes the module
(`finetune=` the student's, imported in the notebook) and falls back to the course's reference
(`reference_finetune()`, instructors only: `solutions/` is not released).

    results = {"vit": run_transfer(task, spec, MODES, cfg, finetune=finetune, keep_models=True)}
    print(results_table(results))
    print(attention_table(results["vit"], task, finetune))
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from data_utils import DatasetSplits
from data_utils.augment import normalize_batch

ATTENTION_IMAGES = 64  # test images the attention statistics average over: enough for 2 digits, seconds on CPU


def reference_finetune():
    """The course's reference `finetune` module (solutions/finetune.py): for instructors, the CLI and the demo."""
    from coursecore import impl

    try:
        return impl.load(impl.solutions_dir(), modules=("finetune",)).finetune
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}. Without the course's reference, pass your own module: import finetune, "
                                "then finetune=finetune") from None


def result_of(results: Sequence, mode: str):
    """The ModeResult of `mode` in one backbone's list of results."""
    for r in results:
        if r.mode == mode:
            return r
    raise KeyError(f"no results for mode {mode!r}: the modes run were {', '.join(r.mode for r in results)}")


def model_inputs(model: nn.Module, images: torch.Tensor, splits: DatasetSplits) -> torch.Tensor:
    """uint8 images (B, C, H, W) normalised as the trainer does and resized as the model resizes them (a
    `ResizeInput` wrapper: CIFAR's 32 px to 224), on the model's device: the backbone's own input, float32."""
    from vitcourse.models.pretrained import ResizeInput

    device = next(model.parameters()).device
    mean = torch.tensor(splits.mean, device=device)  # (C,)
    std = torch.tensor(splits.std, device=device)
    x = normalize_batch(images.to(device), mean, std)
    while isinstance(getattr(model, "net", None), nn.Module) or isinstance(model, ResizeInput):
        if isinstance(model, ResizeInput):
            return model.resize(x)
        model = model.net
    return x


# ---------------------------------------------------------------------------------------------- tables
def trainable_table(finetune, names: Sequence[str], num_classes: int = 10, partial_blocks: int = 2,
                    modes: Sequence[str] = ("head", "partial", "full")) -> str:
    """Markdown: the parameters each mode trains in real timm backbones (built without weights), by `finetune`."""
    from vitcourse.models import pretrained as P

    lines = ["| backbone | " + " | ".join(f"{m} (trainable)" for m in modes) + " | total |",
             "|---|" + "---|" * (len(modes) + 1)]
    for name in names:
        net = P.unwrap(P.create_backbone(name, num_classes, pretrained=False))
        counts = []
        for mode in modes:
            finetune.set_trainable(net, mode, partial_blocks)
            counts.append(sum(p.numel() for p in net.parameters() if p.requires_grad))
        total = sum(p.numel() for p in net.parameters())
        lines.append(f"| {name} | " + " | ".join(f"{c:,} ({c / total:.2%})" for c in counts) + f" | {total:,} |")
    return "\n".join(lines)


def results_table(results: dict) -> str:
    """Markdown: one row per backbone and mode (trainable parameters, time per epoch, GPU memory, accuracy)."""
    lines = ["| backbone | mode | trainable / total params | time/epoch (s) | peak GPU memory (MiB) | test accuracy |",
             "|---|---|---|---|---|---|"]
    for arch, rows in results.items():
        for r in rows:
            mem = f"{r.peak_gpu_mem_mib:,.0f}" if r.peak_gpu_mem_mib is not None else "CPU"
            when = " (once)" if r.mode == "probe" else ""
            lines.append(f"| {arch} | {r.mode} | {r.trainable_params:,} / {r.total_params:,} | "
                         f"{r.epoch_time_s:.2f}{when} | {mem} | {r.test_accuracy:.1%} |")
    return "\n".join(lines)


def size_comparison(results: dict, small: str = "swin", large: str = "swin_s", labels: Optional[dict] = None) -> str:
    """Markdown: the `large` backbone against the `small` one in every mode both ran — parameters, time per epoch
    and peak memory as ratios (large / small), test accuracies and their difference with its noise.

    The noise: with n test images, an accuracy p has a binomial standard error √(p(1−p)/n); the difference of two
    independent ones has √2 times that. A difference inside ±2 of those is not evidence that one model is better
    (one seed, one split: the interval is a lower bound on the real spread). `labels`: what to call each backbone."""
    name = lambda arch: (labels or {}).get(arch, arch)  # noqa: E731
    if small not in results or large not in results:
        missing = [a for a in (small, large) if a not in results]
        return f"no comparison: {', '.join(missing)} did not run (fast mode runs one Swin)"
    by_mode = {r.mode: r for r in results[small]}
    lines = [f"| mode | params {name(large)} / {name(small)} | time/epoch × | peak memory × | {name(small)} acc | "
             f"{name(large)} acc | difference | ±2 SE |", "|---|---|---|---|---|---|---|---|"]
    for r in results[large]:
        s = by_mode.get(r.mode)
        if s is None:
            continue
        n = len(r.predictions) or 1
        p = (r.test_accuracy + s.test_accuracy) / 2
        two_se = 2 * math.sqrt(2 * p * (1 - p) / n)
        mem = (f"{r.peak_gpu_mem_mib / s.peak_gpu_mem_mib:.2f}" if r.peak_gpu_mem_mib and s.peak_gpu_mem_mib
               else "CPU")
        lines.append(f"| {r.mode} | {r.total_params:,} / {s.total_params:,} ({r.total_params / s.total_params:.2f}×) | "
                     f"{r.epoch_time_s / max(s.epoch_time_s, 1e-9):.2f} | {mem} | {s.test_accuracy:.1%} | "
                     f"{r.test_accuracy:.1%} | {100 * (r.test_accuracy - s.test_accuracy):+.1f} pts | "
                     f"±{100 * two_se:.1f} pts |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- attention
def patch_grid(model: nn.Module, num_patches: int) -> tuple[int, int]:
    """The patch grid (H', W') of a timm ViT (its patch_embed.grid_size), else the square one."""
    from vitcourse.models.pretrained import unwrap

    grid = getattr(getattr(unwrap(model), "patch_embed", None), "grid_size", None)
    if grid is not None and grid[0] * grid[1] == num_patches:
        return tuple(int(g) for g in grid)
    side = int(round(num_patches ** 0.5))
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patch tokens do not form a square grid: pass the grid")
    return side, side


@torch.no_grad()
def attention_summary(model: nn.Module, x: torch.Tensor, finetune=None) -> dict:
    """The class token's attention statistics (finetune.attention_statistics, averaged over the images of x)
    for the last layer (heads averaged) and for the rollout (finetune.attention_rollout) of a ViT.

    Returns {"last": {mean, std, mass_fraction, centre_edge_ratio}, "rollout": {...}}, floats.
    """
    from vitcourse.analysis import interpret

    finetune = finetune or reference_finetune()
    maps = interpret.attention_maps(model, x)  # [(B, h, N, N)] per block
    prefix = getattr(getattr(model, "net", model), "num_prefix_tokens", 1)
    n = maps[-1].shape[-1] - prefix
    grid = patch_grid(model, n)
    rows = {"last": maps[-1].mean(1)[:, 0, prefix:], "rollout": finetune.attention_rollout(maps)[:, 0, prefix:]}
    out = {}
    for which, a in rows.items():
        stats = finetune.attention_statistics(a.double(), grid)
        out[which] = {k: float(torch.as_tensor(v).double().mean()) for k, v in stats.items()}
    return out


def attention_table(results: Sequence, splits: DatasetSplits, finetune=None, images: int = ATTENTION_IMAGES) -> str:
    """Markdown: the attention statistics of every ViT mode whose model was kept (`keep_models=True`)."""
    x_raw = splits.test_images[:images]
    lines = ["| mode | map | mean | std | mass fraction (50%) | centre/edge |", "|---|---|---|---|---|---|"]
    for r in results:
        model = getattr(r, "model", None)
        if model is None:
            continue
        summary = attention_summary(model, model_inputs(model, x_raw, splits), finetune)
        for which, s in summary.items():
            lines.append(f"| {r.mode} | {which} | {s['mean']:.4f} | {s['std']:.4f} | {s['mass_fraction']:.3f} | "
                         f"{s['centre_edge_ratio']:.2f} |")
    if len(lines) == 2:
        raise ValueError("no kept models: run_transfer(..., keep_models=True) keeps them for this table")
    return "\n".join(lines)


def disagreement_table(preds_a, preds_b, labels, names: tuple[str, str] = ("A", "B"),
                       class_names: Optional[Sequence[str]] = None) -> str:
    """Markdown of `interpret.disagreement`: per class, both accuracies and the images only one model gets right."""
    from vitcourse.analysis import interpret

    a, b = names
    rows = interpret.disagreement(preds_a, preds_b, labels, class_names=class_names)
    lines = [f"| class | n | {a} acc | {b} acc | only {a} right | only {b} right | both wrong |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} | {r['acc_a']:.1%} | {r['acc_b']:.1%} | {r['a_only']} | "
                     f"{r['b_only']} | {r['both_wrong']} |")
    total = {k: sum(r[k] for r in rows) for k in ("n", "a_only", "b_only", "both_wrong")}
    lines.append(f"| all | {total['n']} | | | {total['a_only']} | {total['b_only']} | {total['both_wrong']} |")
    return "\n".join(lines)
