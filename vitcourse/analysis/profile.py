"""Where a training step's time goes: a few steps under `torch.profiler`, broken down like TensorBoard's
profiler overview (kernel, memcpy, memset, data loading, CPU execution, other), from the profiler's own events.

Shape legend: B batch, C channels, H/W image height/width, K classes.

    report = profile_training(model, loader, device="cpu", active=3, trace_path="trace.json")
    report.shares          # {'data_loading': 0.12, 'cpu_execution': 0.85, 'other': 0.03, ...}

How the breakdown is computed (the rule of the PyTorch TensorBoard plugin's "step time breakdown"): each
active step is the interval of its `ProfilerStep#N` event in the Chrome trace the profiler writes. Every
microsecond of it goes to exactly one category, the first in PRIORITY whose events cover it: GPU kernels,
then GPU memcpy, then GPU memset, then data loading (the DataLoader's own `enumerate(DataLoader)...`
annotation, or DATA_LABEL around the fetch of a batch), then CPU execution (any CPU operator), and what no
event covers is 'other' (Python between operators, the profiler itself). So the categories add up to the
step time by construction; on a GPU, CPU work that overlaps a kernel counts as kernel time, and
`gpu_utilization` is the share of the step during which at least one kernel runs. On a CPU there are no
kernels, copies or sets on a device: those categories are None and listed in `absent`.

Holistic Trace Analysis (`pip install HolisticTraceAnalysis`) reads the same trace file for a deeper GPU
analysis (idle time, kernel overlap, queue lengths); `hta_summary` runs its temporal breakdown when the
package is installed and the trace has GPU events.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

# Kineto (torch.profiler's tracer) writes its own log lines to the process's stderr: "USDT ... profiler_start" around
# every trace and, on a machine without a GPU, "ERROR ... gpuGetDeviceCount failed with code 35". Jupyter forwards
# them into the notebook, where they read as failures. Level 6 keeps it quiet; it is read when the first trace
# starts, so setting it here (imported before any profiling) is in time. A value someone set is kept.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

CATEGORIES = ("kernel", "memcpy", "memset", "data_loading", "cpu_execution", "other")
PRIORITY = CATEGORIES[:-1]  # who owns a microsecond covered by several events; 'other' is what is left
GPU_CATEGORIES = ("kernel", "memcpy", "memset")
DATA_LABEL = "vitcourse.data_loading"  # our annotation around `next(batches)` (covers the device data path too)
DATALOADER_PREFIX = "enumerate(DataLoader)"  # what torch's DataLoader annotates each __next__ with
STEP_PREFIX = "ProfilerStep#"  # one per prof.step(): the step boundaries
TRACE_CATEGORIES = {"kernel": {"kernel"}, "memcpy": {"gpu_memcpy"}, "memset": {"gpu_memset"}}
CPU_TRACE_CATEGORIES = {"cpu_op", "user_annotation"}
SUM_TOLERANCE = 1e-6  # relative: the categories partition the step, so only rounding separates the sums


PROFILE_MODELS = ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16", "resnet18", "vit")  # what `build_profiled_model` builds


def build_profiled_model(model: str, image_size: int, num_classes: int = 10) -> nn.Module:
    """The profiled model: a CNN of the CNN assignment, ResNet-18 (CIFAR form) or the CIFAR recipe's ViT."""
    from vitcourse.training import recipes
    from vitcourse.models import cnn

    if model in cnn.NETWORKS:
        return cnn.build(model, image_size=image_size, num_classes=num_classes)
    if model == "resnet18":
        return recipes.build_model("resnet18", dict(num_classes=num_classes))
    config = dict(recipes.default_recipe("cifar10", "vit")[0], image_size=image_size, num_classes=num_classes)
    return recipes.build_model("vit", config)


def random_loader(num_images: int, batch_size: int, image_size: int, num_workers: int = 0,
                  num_classes: int = 10) -> torch.utils.data.DataLoader:
    """A DataLoader over random CIFAR-sized images: the classic data path, with nothing to download."""
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(num_images, 3, image_size, image_size, generator=g),
                                          torch.randint(0, num_classes, (num_images,), generator=g))
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                       drop_last=True)


def default_batch_size(device: str | torch.device) -> int:
    """Images per profiled step: a GPU needs a real batch to be busy (16 would measure launch overhead only)."""
    return 128 if torch.device(device).type == "cuda" else 16


@dataclass
class ProfileReport:
    """The step-time breakdown of the active steps (means over steps, milliseconds)."""

    device: str
    steps: int  # active (measured) steps
    step_time_ms: float  # mean length of a ProfilerStep interval
    wall_step_time_ms: float  # mean of perf_counter around the same steps, without the profiler's view
    breakdown_ms: dict  # category -> mean ms per step (None where the category does not exist here)
    shares: dict  # category -> share of the step time (None where absent)
    gpu_utilization: Optional[float]  # share of the step with a kernel running; None on a CPU
    absent: list  # categories with no meaning on this device, and why
    per_step_ms: list = field(default_factory=list)  # per active step: {category: ms, 'step': ms}
    trace_path: Optional[str] = None  # the Chrome / Perfetto trace (open in ui.perfetto.dev or chrome://tracing)
    schedule: dict = field(default_factory=dict)  # wait / warmup / active

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """The breakdown as a Markdown table."""
        lines = ["| category | ms / step | share |", "|---|---:|---:|"]
        for name in CATEGORIES:
            ms, share = self.breakdown_ms[name], self.shares[name]
            lines.append(f"| {name} | {'n/a' if ms is None else f'{ms:.2f}'} | "
                         f"{'n/a' if share is None else f'{share:.1%}'} |")
        lines.append(f"| **step** | {self.step_time_ms:.2f} | 100% |")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------- interval algebra
def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _subtract(intervals: list[tuple[float, float]], taken: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """intervals minus taken (both sorted, disjoint)."""
    out, j = [], 0
    for start, end in intervals:
        cur = start
        while j < len(taken) and taken[j][1] <= cur:
            j += 1
        k = j
        while k < len(taken) and taken[k][0] < end:
            if taken[k][0] > cur:
                out.append((cur, taken[k][0]))
            cur = max(cur, taken[k][1])
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(b - a for a, b in intervals)


def _clip(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return [(max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi]


# ------------------------------------------------------------------------------------------------- the trace
def _category(event: dict) -> Optional[str]:
    cat, name = event.get("cat", ""), event.get("name", "")
    for category, trace_cats in TRACE_CATEGORIES.items():
        if cat in trace_cats:
            return category
    if cat in CPU_TRACE_CATEGORIES:
        if name.startswith(STEP_PREFIX):
            return None
        if name == DATA_LABEL or name.startswith(DATALOADER_PREFIX):
            return "data_loading"
        return "cpu_execution"
    return None


def breakdown_from_trace(trace: dict | str | os.PathLike, has_gpu: Optional[bool] = None) -> dict:
    """Per-step breakdown of a Chrome trace written by `torch.profiler` (microseconds).

    Returns {'steps': [{category: µs, 'step': µs}, ...], 'gpu_busy': [µs per step], 'has_gpu': bool}.
    """
    if not isinstance(trace, dict):
        trace = json.loads(Path(trace).read_text())
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    steps = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
                   if e.get("name", "").startswith(STEP_PREFIX) and e.get("cat") in CPU_TRACE_CATEGORIES)
    by_category: dict[str, list] = {name: [] for name in PRIORITY}
    for e in events:
        category = _category(e)
        if category is not None:
            by_category[category].append((float(e["ts"]), float(e["ts"]) + float(e["dur"])))
    if has_gpu is None:
        has_gpu = any(by_category[c] for c in GPU_CATEGORIES)
    unions = {name: _union(iv) for name, iv in by_category.items()}
    rows, busy = [], []
    for lo, hi in steps:
        taken: list[tuple[float, float]] = []
        row = {}
        for name in PRIORITY:
            own = _subtract(_clip(unions[name], lo, hi), taken)
            row[name] = _length(own)
            taken = _union(taken + own)
        row["other"] = (hi - lo) - _length(taken)
        row["step"] = hi - lo
        rows.append(row)
        busy.append(_length(_clip(unions["kernel"], lo, hi)))
    return dict(steps=rows, gpu_busy=busy, has_gpu=has_gpu)


def hta_summary(trace_dir: str | os.PathLike) -> Optional[dict]:
    """Holistic Trace Analysis' temporal breakdown (idle / compute / non-compute GPU time) of the traces in
    trace_dir, or None when HTA is not installed or the traces hold no GPU events."""
    try:
        from hta.trace_analysis import TraceAnalysis
    except ImportError:
        return None
    try:
        frame = TraceAnalysis(trace_dir=str(trace_dir)).get_temporal_breakdown(visualize=False)
    except Exception:  # HTA raises on CPU-only traces (no GPU streams to analyse)
        return None
    return frame.to_dict(orient="records")


# --------------------------------------------------------------------------------------------- the profiling
def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One plain training step: forward, cross-entropy, backward, optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_training(model: nn.Module, batches: Iterable, *, device: str | torch.device = "cpu", wait: int = 1,
                     warmup: int = 1, active: int = 3, optimizer: Optional[torch.optim.Optimizer] = None,
                     trace_path: Optional[str | os.PathLike] = None, channels_last: bool = False) -> ProfileReport:
    """Run wait + warmup + active training steps under torch.profiler and break the active ones down.

    Args:
        model: any classifier mapping (B, C, H, W) images to (B, K) logits; trained in place.
        batches: an iterable of (images (B, C, H, W), labels (B,)) batches, e.g. a DataLoader; cycled when
            it has fewer batches than steps. Fetching a batch is part of the step, as in a training loop.
        device: where the model and the batches go.
        wait, warmup, active: the profiler schedule; warm-up steps are traced but discarded (the first steps
            pay for allocations, cuDNN autotuning and lazy initialisation).
        optimizer: default AdamW(lr=1e-3).
        trace_path: where to write the Chrome / Perfetto trace (default: a temporary file, removed).
        channels_last: put model and images in channels-last memory format.

    Returns:
        A ProfileReport with the mean breakdown per active step.
    """
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    if active < 1 or wait < 0 or warmup < 0:
        raise ValueError(f"profile schedule wait={wait}, warmup={warmup}, active={active}: need active >= 1")
    device = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-3)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    keep_trace = trace_path is not None
    with contextlib.ExitStack() as stack:
        if trace_path is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            trace_path = Path(tmp) / "trace.json"
        trace_path = Path(trace_path)
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        batches_iter = itertools.cycle(batches) if not hasattr(batches, "__next__") else batches
        total = wait + warmup + active
        walls = []
        with profile(activities=activities, schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
                     on_trace_ready=lambda p: p.export_chrome_trace(str(trace_path))) as prof:
            for step in range(total):
                start = time.perf_counter()
                with record_function(DATA_LABEL):
                    images, labels = next(batches_iter)
                    images = images.to(device, non_blocking=True, memory_format=fmt)
                    labels = labels.to(device, non_blocking=True)
                train_step(model, optimizer, images, labels)
                _sync(device)  # a step ends when its GPU work does
                if step >= wait + warmup:
                    walls.append(time.perf_counter() - start)
                prof.step()
        result = breakdown_from_trace(trace_path, has_gpu=device.type == "cuda")
        report = _report(result, walls, device, dict(wait=wait, warmup=warmup, active=active))
        report.trace_path = str(trace_path) if keep_trace else None  # a temporary trace goes with its folder
    return report


def _report(result: dict, walls: list, device: torch.device, sched: dict) -> ProfileReport:
    rows = result["steps"]
    if not rows:
        raise RuntimeError("the profiler recorded no ProfilerStep events: no active step was traced")
    n = len(rows)
    step_us = sum(r["step"] for r in rows) / n
    mean = {name: sum(r[name] for r in rows) / n for name in CATEGORIES}
    has_gpu = result["has_gpu"]
    absent = [] if has_gpu else [f"{name}: no GPU, so no device {name} (everything runs as CPU operators)"
                                 for name in GPU_CATEGORIES]
    breakdown = {name: (None if name in GPU_CATEGORIES and not has_gpu else mean[name] / 1e3) for name in CATEGORIES}
    shares = {name: (None if breakdown[name] is None else mean[name] / step_us) for name in CATEGORIES}
    gpu_util = (sum(result["gpu_busy"]) / n) / step_us if has_gpu else None
    per_step = [{k: v / 1e3 for k, v in r.items()} for r in rows]
    return ProfileReport(device=str(device), steps=n, step_time_ms=step_us / 1e3,
                         wall_step_time_ms=1e3 * sum(walls) / max(len(walls), 1), breakdown_ms=breakdown,
                         shares=shares, gpu_utilization=gpu_util, absent=absent, per_step_ms=per_step,
                         schedule=sched)
