"""Tables and measurements the CNN notebook (assignment 7) prints: the network family, the fold's speed-up,
the profile of each network's training step.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Everything takes the student's loaded `cnn.py` (`implementation`), so the numbers are the student's code.
Speed claims are ratios measured side by side in one run (unfolded and folded timed alternately), never
wall-clock constants.
"""
from __future__ import annotations

import statistics
import time
from typing import Iterable, Optional

import torch
from torch import nn

from vitcourse.analysis import complexity


def family_table(implementation, names: Iterable[str] = complexity.CNN_MODELS, **overrides) -> str:
    """Markdown: parameters (closed form and numel()), folded parameters, forward GFLOPs per image."""
    lines = ["| network | convs | params | numel() | folded params | GFLOPs / image |", "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        cfg = complexity.cnn_config(name, **overrides)
        model = implementation.ConvNet(cfg)
        numel = sum(p.numel() for p in model.parameters())
        flops = complexity.FLOPS_PER_MAC * complexity.count_cnn_macs(cfg)["total"]
        lines.append(f"| {name} | {cfg.num_convs} | {complexity.count_cnn_parameters(cfg)['total']:,} | {numel:,} | "
                     f"{complexity.folded_cnn_parameters(cfg):,} | {flops / 1e9:.3f} |")
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
