"""Cost of the allow-list sandbox, measured side by side in one run.

1. CLI grader: seconds per submission (the reference, all parts) with bubblewrap vs the `unshare` fallback.
2. nbgrader's kernel: seconds to start a kernel and run a notebook-like cell (`import torch`, a matmul)
   with jupyter_client's plain AsyncKernelManager (before) vs SandboxedKernelManager (after).

    python benchmarks/bench_sandbox.py [--repeats 2]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import header  # noqa: F401 - also puts the repository on sys.path

import torch
from jupyter_client import AsyncKernelManager

from autograder import bwrap, grader, sandbox
from autograder.kernel_sandbox import SandboxedKernelManager
from coursecore import impl, settings

CELL = "import torch\nx = torch.randn(256, 256)\nprint(float((x @ x).sum()) != 0)"


def cli_seconds(backend: str) -> float:
    settings.SANDBOX.set(backend)
    sandbox._isolation_cache.clear()
    start = time.perf_counter()
    report = grader.grade(impl.solutions_dir())
    assert report.score == report.max_score, report.table()
    return time.perf_counter() - start


async def _kernel(cls, cwd: str) -> float:
    start = time.perf_counter()
    km = cls(kernel_name="python3")
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=120)
    reply = await kc.execute_interactive(CELL, timeout=120, output_hook=lambda m: None)
    assert reply["content"]["status"] == "ok", reply
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    header("allow-list sandbox cost", torch.device("cpu"))
    if not bwrap.usable():
        print("bubblewrap does not run here: nothing to compare")
        return
    rows = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
        for backend in ("unshare", "bwrap"):
            rows.setdefault(f"CLI grade, {backend}", []).append(cli_seconds(backend))
        with tempfile.TemporaryDirectory() as cwd:
            for name, cls in (("plain kernel", AsyncKernelManager), ("sandboxed kernel", SandboxedKernelManager)):
                rows.setdefault(f"kernel start + cell, {name}", []).append(asyncio.run(_kernel(cls, cwd)))
    for name, values in rows.items():
        print(f"   {name:40s} median {statistics.median(values):6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
