"""Tables and measurements the CNN notebook (assignment 7) prints: the network family, the fold's speed-up,
the profile of each network's training step, and the architecture-change table (`compare_change`).

Shape legend: B batch, C channels, H/W image height/width, K classes.

Everything takes the student's loaded `cnn.py` (`implementation`), so the numbers are the student's code.
Speed claims are ratios measured side by side in one run (unfolded and folded timed alternately), never
wall-clock constants.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from vitcourse.analysis import complexity, stats


def family_table(implementation, names: Iterable[str] = complexity.CNN_MODELS, **overrides) -> str:
    """Markdown: parameters (closed form and numel()), forward GFLOPs per image. (Not the count after folding:
    assignment 7 asks for it.)"""
    lines = ["| network | convs | params | numel() | GFLOPs / image |", "|---|---:|---:|---:|---:|"]
    for name in names:
        cfg = complexity.cnn_config(name, **overrides)
        model = implementation.ConvNet(cfg)
        numel = sum(p.numel() for p in model.parameters())
        flops = complexity.FLOPS_PER_MAC * complexity.count_cnn_macs(cfg)["total"]
        lines.append(f"| {name} | {cfg.num_convs} | {complexity.count_cnn_parameters(cfg)['total']:,} | {numel:,} | "
                     f"{flops / 1e9:.3f} |")
    return "\n".join(lines)


@torch.no_grad()
def batch_norm_dependence(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                          batch_sizes: tuple[int, ...] = (2, 64)) -> dict:
    """Test accuracy of a trained batch-norm network with its running statistics (eval mode) and with each batch's
    own statistics (the batch norms in train mode, as during training), at several batch sizes.

    Batch norm's downsides, measured: in eval mode a prediction does not depend on the other images of its batch;
    with batch statistics it does, and small batches give noisy statistics. Runs on a copy (train-mode batch norms
    update their running statistics), with everything but the batch norms in eval mode (no dropout).
    images: (B, C, H, W) normalised as in training; labels: (B,).

    Returns {"rows": {mode: {batch size: accuracy}}, "changed": {batch size: share of images whose predicted class
    differs between eval and batch statistics}, "markdown": the table}."""
    import copy

    net = copy.deepcopy(model).eval()
    device = next(net.parameters()).device
    images, labels = images.to(device), labels.to(device)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError(f"{type(model).__name__} has no batch norm: build it with batch_norm=True (bn_cnn)")
    for m in norms:  # train mode would move the running statistics the eval-mode rows use: keep them as trained
        m.momentum = 0.0

    # The same images for every batch size, in whole batches (a last batch of one image has no variance).
    step = math.lcm(*batch_sizes)
    n = len(images) // step * step
    if n == 0:
        raise ValueError(f"batch_norm_dependence needs at least {step} images for batch sizes {tuple(batch_sizes)}")

    def predict(batch_stats: bool, size: int) -> torch.Tensor:
        for m in norms:
            m.train(batch_stats)
        return torch.cat([net(images[i:i + size]).argmax(-1) for i in range(0, n, size)])

    rows, changed = {"eval mode (running statistics)": {}, "train mode (the batch's statistics)": {}}, {}
    for size in batch_sizes:
        fixed, batch = predict(False, size), predict(True, size)
        rows["eval mode (running statistics)"][size] = (fixed == labels[:n]).float().mean().item()
        rows["train mode (the batch's statistics)"][size] = (batch == labels[:n]).float().mean().item()
        changed[size] = (fixed != batch).float().mean().item()
    sizes = list(batch_sizes)
    lines = ["| statistics | " + " | ".join(f"batch {b}" for b in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    lines += [f"| {mode} | " + " | ".join(f"{acc[b]:.1%}" for b in sizes) + " |" for mode, acc in rows.items()]
    lines.append("| predictions that change | " + " | ".join(f"{changed[b]:.1%}" for b in sizes) + " |")
    return {"rows": rows, "changed": changed, "markdown": "\n".join(lines)}


def stage_flops_table(names: Iterable[str] = complexity.CNN_MODELS, baseline: str = "mish_cnn", **overrides) -> str:
    """Markdown: forward MFLOPs per image of every stage of each network (closed form), and each network's total in
    units of `baseline`'s: the numbers the text about the family refers to."""
    names = list(names)
    per = {n: complexity.count_cnn_macs(complexity.cnn_config(n, **overrides)) for n in names}
    stages = max((k for m in per.values() for k in m if k.startswith("stages.")), key=lambda k: int(k.split(".")[1]))
    width = int(stages.split(".")[1]) + 1
    lines = ["| network | " + " | ".join(f"stage {i + 1}" for i in range(width)) + f" | total | × {baseline} |",
             "|---|" + "---:|" * (width + 2)]
    base = per[baseline]["total"] if baseline in per else None
    for name, macs in per.items():
        cells = [f"{complexity.FLOPS_PER_MAC * macs[f'stages.{i}'] / 1e6:.1f}" if f"stages.{i}" in macs else ""
                 for i in range(width)]
        ratio = f"{macs['total'] / base:.0f}×" if base else "n/a"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {complexity.FLOPS_PER_MAC * macs['total'] / 1e6:.1f} | "
                     f"{ratio} |")
    return "\n".join(lines)


def _time(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def fold_speedup(model: nn.Module, images: torch.Tensor, repeats: int = 10) -> dict:
    """Eval-mode inference of `model` and of `model.fold_batch_norms()`, timed alternately on `images`.

    Returns: unfolded_ms, folded_ms (medians), speedup (unfolded / folded) and max_abs_diff of the logits.
    """
    model = model.eval()
    folded = model.fold_batch_norms()
    device = images.device
    err = (folded(images) - model(images)).abs().max().item()
    plain, fast = [], []
    for _ in range(max(repeats, 1)):  # alternate, so a change of load hits both alike
        plain.append(_time(lambda: model(images), device))
        fast.append(_time(lambda: folded(images), device))
    p, f = statistics.median(plain), statistics.median(fast)
    return dict(unfolded_ms=1e3 * p, folded_ms=1e3 * f, speedup=p / f, max_abs_diff=err,
                unfolded_params=sum(q.numel() for q in model.parameters()),
                folded_params=sum(q.numel() for q in folded.parameters()))


def describe_fold(timing: dict, noise: float = 0.05) -> str:
    """`fold_speedup`'s result in sentences: both times, the ratio with what it means, the logits' largest
    difference (in scientific notation: float32 round-off is ~1e-7, which rounding to 4 decimals shows as 0).
    The parameter counts are left out: assignment 7 asks for the folded one."""
    ratio = timing["speedup"]
    if abs(ratio - 1) <= noise:
        verdict = (f"within {noise:.0%} of 1: timing noise. Here the eval-mode batch norm is one cheap elementwise pass "
                   "beside the convolutions (on a CPU, or a GPU with a small batch); folding pays where it is a "
                   "memory-bound kernel of its own per layer")
    elif ratio > 1:
        verdict = "the folded network is faster: one pass over every activation per batch norm is gone"
    else:
        verdict = ("the folded network was slower in this measurement: it computes strictly less, so this is the "
                   "machine (other work, caches, allocation): re-run the cell, or measure on a GPU with a larger batch")
    return (f"unfolded {timing['unfolded_ms']:.2f} ms, folded {timing['folded_ms']:.2f} ms per batch (medians, timed "
            f"alternately): speed-up {ratio:.2f}x, {verdict}.\n"
            f"largest difference of the logits: {timing['max_abs_diff']:.1e} (float32 round-off)")


def profile_table(rows: list[dict]) -> str:
    """Markdown of `profile_row` results: step time and the share of each category."""
    from vitcourse.analysis.profile import CATEGORIES

    head = "| network | params | step ms | " + " | ".join(CATEGORIES) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(CATEGORIES)]
    for r in rows:
        shares = " | ".join("n/a" if r["shares"][c] is None else f"{r['shares'][c]:.0%}" for c in CATEGORIES)
        lines.append(f"| {r['name']} | {r['params']:,} | {r['step_ms']:.1f} | {shares} |")
    return "\n".join(lines)


def profile_row(name: str, model: nn.Module, batches, device: str = "cpu", active: int = 3,
                channels_last: bool = False, trace_path: Optional[str] = None) -> dict:
    """One network's training step under torch.profiler (`vitcourse.analysis.profile.profile_training`)."""
    from vitcourse.analysis.profile import profile_training

    report = profile_training(model, batches, device=device, wait=1, warmup=1, active=active,
                              channels_last=channels_last, trace_path=trace_path)
    return dict(name=name, params=sum(p.numel() for p in model.parameters()), step_ms=report.step_time_ms,
                shares=report.shares, report=report)


# ---- the architecture-change exercise -------------------------------------------------------------------------
CHANGE_NAME = "my_change"  # the student's architecture, as its `arch` in the ablation folder
CHANGE_TABLE = "change.md"  # written next to the ablation's table
SPEED_TOLERANCE = 0.05  # step-time ratios within 5 % of 1 count as "about as fast": below that, timing noise


@dataclass
class ChangeReport:
    """What `compare_change` measured: the table, the verdict and every number behind them."""

    markdown: str  # the table and the verdict, as written to out_dir/change.md
    verdict: str  # one plain sentence
    rows: dict  # label ('baseline', 'change') -> params, gflops, step_ms, val_acc, test_acc, variant, seeds
    step_ratio: float  # median profiled step time of the change / of the baseline (< 1: faster)
    accuracy_diff: stats.Interval  # paired test-accuracy difference change - baseline over the common seeds
    results: list  # the ablation's per-run JSON records (ablate.run_grid)
    profiles: dict  # label -> profiled step times (ms), one per alternating repeat
    path: Optional[Path] = None  # out_dir/change.md


def _random_batches(in_chans: int, image_size: int, batch_size: int, count: int, num_classes: int) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch_size, in_chans, image_size, image_size, generator=g),
             torch.randint(0, num_classes, (batch_size,), generator=g)) for _ in range(count)]


def change_verdict(step_ratio: float, diff: stats.Interval, tolerance: float = SPEED_TOLERANCE) -> str:
    """A plain sentence: 'faster and more accurate', 'faster but less accurate: ...', with the evidence.

    Args:
        step_ratio: step time of the change / of the baseline.
        diff: paired test-accuracy difference (change - baseline); with one seed its point value only.
    """
    speed = "faster" if step_ratio < 1 - tolerance else "slower" if step_ratio > 1 + tolerance else "about as fast"
    points = f"{stats._points(diff.mean)} points"
    if diff.n >= 2:
        evidence = f"{points}, {diff.confidence:.0%} interval [{stats._points(diff.low)}, {stats._points(diff.high)}] " \
                   f"over {diff.n} seeds"
        accuracy = "more accurate" if diff.low > 0 else "less accurate" if diff.high < 0 else "not distinguishable in accuracy"
    else:  # one seed: the sign of one difference, said as such
        evidence = f"{points} from a single seed (no interval: run 2 or more seeds to know)"
        accuracy = "more accurate" if diff.mean > 0 else "less accurate" if diff.mean < 0 else "equally accurate"
    good = {"faster": True, "slower": False}.get(speed), {"more accurate": True, "less accurate": False}.get(accuracy)
    joint = " and " if good[0] is not None and good[0] == good[1] else " but " if None not in good else ", "
    return f"{speed}{joint}{accuracy}: step time ×{step_ratio:.2f}, test accuracy {evidence}"


def compare_change(change, settings, out_dir, *, seeds: Sequence[int] = (0,), baseline: Optional[str] = None,
                   name: str = CHANGE_NAME, profile_repeats: int = 3, profile_steps: int = 2, profile_batch: int = 16,
                   log=print) -> ChangeReport:
    """The baseline network and `change` side by side: profiled step time, parameters, GFLOPs and accuracy.

    Both are trained through `vitcourse.analysis.ablate` with the recipe of `settings.model` (e.g. 'vgg16'),
    the same seeds and budget, into `out_dir` (resumable: finished runs are kept, an edited `change` is
    trained again). Step times come from `profile_row`, the two networks profiled alternately (A B B A ...)
    so a change of load hits both; GFLOPs are the closed form of `vitcourse.analysis.complexity`. Writes
    out_dir/change.md (the table and the verdict).

    Args:
        change: a ConvNetConfig (e.g. dataclasses.replace(cnn.CONFIGS['vgg16'], stages=...)); its image size,
            channels and classes are taken from the data, like the baseline's.
        settings: an ablate.Settings with a CNN `model` and `implementation` (the student's cnn.py).
        out_dir: the ablation folder of the two variants.
        seeds: the seeds both are trained on; 2 or more give the paired interval of the accuracy difference.
        baseline: the baseline's `arch` (default: the model's own network, the ablation's 'default' variant).
        name: the change's `arch` name in the folder.
        profile_repeats, profile_steps, profile_batch: alternating profiles per network, active steps in each,
            images per step (random images of the trained size).

    Returns:
        A ChangeReport (table, verdict and the numbers behind them).
    """
    from vitcourse.analysis import ablate
    from vitcourse.training import recipes, runtime

    if settings.model not in recipes.CNN_MODELS:
        raise ablate.AblationError(f"compare_change compares CNNs: settings.model is {settings.model!r}, use one of "
                                   f"{', '.join(recipes.CNN_MODELS)}")
    settings = dataclasses.replace(settings, architectures={**settings.architectures, name: change})
    variants = [{} if baseline is None else {"arch": baseline}, {"arch": name}]
    results = ablate.run_grid(variants, list(seeds), settings, out_dir, log=log)
    labels = {"baseline": ablate.variant_name(variants[0]), "change": ablate.variant_name(variants[1])}
    runs = {label: {r["seed"]: r for r in results if r["variant"] == v} for label, v in labels.items()}
    module = ablate._implementation(settings)
    device = str(runtime.pick_device(settings.device))  # profiled where the runs trained

    nets, configs = {}, {}
    for label in labels:
        model_config = runs[label][min(runs[label])]["model_config"]
        fields = {k: v for k, v in model_config.items() if k not in ("arch", "resize_input")}
        configs[label] = module.ConvNetConfig(**fields)
        nets[label] = module.ConvNet(configs[label])  # the network itself, at the size it was trained at
    profiles = {label: [] for label in labels}
    order = list(labels)
    for repeat in range(max(profile_repeats, 1)):
        for label in (order if repeat % 2 == 0 else order[::-1]):  # A B, B A, ...: drift hits both alike
            cfg = configs[label]
            batches = _random_batches(cfg.in_chans, cfg.image_size, profile_batch, 2 + profile_steps, cfg.num_classes)
            row = profile_row(label, nets[label], batches, device=device, active=profile_steps)
            profiles[label].append(row["step_ms"])

    common = sorted(set(runs["baseline"]) & set(runs["change"]))
    rows = {}
    for label in labels:
        seeds_run = [runs[label][s] for s in common]
        val = [r["best_val_acc"] for r in seeds_run]
        shown = (baseline or settings.model) if label == "baseline" else name
        rows[label] = dict(variant=labels[label], name=shown, seeds=common, params=seeds_run[0]["num_parameters"],
                           gflops=complexity.FLOPS_PER_MAC * complexity.count_cnn_macs(configs[label])["total"] / 1e9,
                           step_ms=statistics.median(profiles[label]),
                           val_acc=None if None in val else statistics.fmean(val),
                           test_acc=statistics.fmean(r["test_accuracy"] for r in seeds_run))
    ratio = rows["change"]["step_ms"] / rows["baseline"]["step_ms"]
    diff = stats.paired_difference([runs["change"][s]["test_accuracy"] for s in common],
                                   [runs["baseline"][s]["test_accuracy"] for s in common])
    verdict = change_verdict(ratio, diff)
    markdown = change_markdown(rows, ratio, diff, verdict, profile_repeats)
    path = Path(out_dir) / CHANGE_TABLE
    path.write_text(markdown)
    return ChangeReport(markdown=markdown, verdict=verdict, rows=rows, step_ratio=ratio, accuracy_diff=diff,
                        results=results, profiles=profiles, path=path)


def _relative(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.1f}%".replace("-", "\u2212") if old else "n/a"


def change_markdown(rows: dict, ratio: float, diff: stats.Interval, verdict: str, repeats: int) -> str:
    """The change table: one row per quantity, baseline | change | the change's delta."""
    b, c = rows["baseline"], rows["change"]
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}"  # noqa: E731
    interval = (f" [{stats._points(diff.low)}, {stats._points(diff.high)}]" if diff.n >= 2 else " (one seed)")
    val_delta = "n/a" if None in (b["val_acc"], c["val_acc"]) else f"{stats._points(c['val_acc'] - b['val_acc'])} points"
    lines = [f"| | baseline (`{b['name']}`) | change (`{c['name']}`) | change vs baseline |",
             "|---|---:|---:|---:|",
             f"| parameters | {b['params']:,} | {c['params']:,} | {_relative(c['params'], b['params'])} |",
             f"| forward GFLOPs / image | {b['gflops']:.4g} | {c['gflops']:.4g} | {_relative(c['gflops'], b['gflops'])} |",
             f"| training step (ms, profiled, median of {repeats}) | {b['step_ms']:.1f} | {c['step_ms']:.1f} | "
             f"×{ratio:.2f} |",
             f"| validation accuracy (%) | {pct(b['val_acc'])} | {pct(c['val_acc'])} | {val_delta} |",
             f"| test accuracy (%, mean of {diff.n} seed{'s' if diff.n > 1 else ''}) | {pct(b['test_acc'])} | "
             f"{pct(c['test_acc'])} | {stats._points(diff.mean)} points{interval} |",
             "", f"Verdict: {verdict}."]
    return "\n".join(lines) + "\n"
