"""Benchmark: time to grade one complete submission, and 50 submissions with N parallel workers.

Run: `.venv/bin/python benchmarks/bench_grading.py [--count 50] [--workers 1 2 4]`. Every submission is
a copy of the reference (the slowest kind: every part runs to the end). Reported side by side in one
run: the reference cases are built once, then one submission alone, then the batch per worker count,
with the speed-up over one worker. Goal (issue 4): one submission in <= 30 s on 2 CPU cores, no GPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder import cases, grader, sandbox  # noqa: E402
from coursecore import impl  # noqa: E402

GOAL_ONE_S = 30.0  # issue 4: one complete submission on 2 CPU cores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="submissions in the batch")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="parallel gradings to try")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        folders = []
        for i in range(args.count):
            folder = root / f"student{i:03d}"
            folder.mkdir()
            for name in sandbox.STUDENT_FILES:
                shutil.copyfile(impl.solutions_dir() / name, folder / name)
            folders.append(folder)
        print(f"machine: {os.cpu_count()} CPU cores; isolation: {sandbox.isolation()[0] or 'none'}")
        start = time.perf_counter()
        cases.graded_cases(str(impl.solutions_dir().resolve()))
        print(f"reference cases and outputs (once per grader process): {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        report = grader.grade(folders[0])
        one = time.perf_counter() - start
        verdict = "ok" if one <= GOAL_ONE_S else "OVER GOAL"
        print(f"one submission: {one:.1f} s (score {report.score}/{report.max_score}; goal <= {GOAL_ONE_S:.0f} s: {verdict})")
        base = None
        for workers in args.workers:
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                scores = list(pool.map(lambda f: grader.grade(f).score, folders))
            took = time.perf_counter() - start
            base = took if base is None else base  # the first worker count is the baseline
            wrong = sum(s != report.max_score for s in scores)
            print(f"{args.count} submissions, {workers} worker(s): {took:.1f} s "
                  f"({took / args.count:.2f} s each; speed-up x{base / took:.2f} vs {args.workers[0]} worker(s)); "
                  f"{wrong} not at full marks")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
