"""Helpers shared by the benchmarks: where the shared real-image subset lives, a hardware header, timing.

Benchmarks print ratios measured side by side in one run (the machine's load changes between runs;
a ratio measured in one process is what can be compared across machines).
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as `python benchmarks/bench_x.py` from anywhere

from vitcourse.training import runtime  # noqa: E402

# 5,085 train / 1,017 test real CIFAR-10 images in the CIFAR python layout (not part of the product).
SHARED_CIFAR10_MINI = REPO_ROOT / ".." / "shared" / "datasets" / "cifar10-mini"


def header(title: str, device: torch.device) -> dict:
    """Print and return the facts a measurement needs next to it."""
    info = runtime.hardware_info(device)
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)  # a shared machine makes timings noisy
    except OSError:
        pass
    print(f"== {title}")
    print("   " + ", ".join(f"{k}={v}" for k, v in info.items()))
    return info


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Wall-clock seconds of fn(), GPU work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def write_json(path, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {path}")
