"""Seconds per notebook of `nbgrader autograde` for a whole class: serial vs parallel, side by side in one run.

The same collected class (copies of one scratch course) is autograded three ways:

1. serial: one nbgrader process for the whole class (`jobs=1`);
2. per student: `jobs` processes at a time, one nbgrader process per student (the old lifecycle);
3. batched: `jobs` nbgrader processes, each over a contiguous slice of the class (`grading.autograde`).

    python benchmarks/bench_class_grading.py [--students 40] [--jobs 2] [--assignment a5_analysis]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import header  # noqa: F401 - also puts the repository on sys.path

import torch

from coursetools import grading, term, progress, release

KINDS = (
    term.Student("ref", "solved everything"),
    term.Student("stub", "untouched release", code="stubs", answers=False),
    term.Student("ooo", "ran cells out of order", out_of_order=True),
    term.Student("del", "deleted a test cell", delete_cells=("test_num_tokens",)),
)


def collected(scratch: Path, assignment: str, n: int) -> tuple[Path, list[str]]:
    course = term.make_course(scratch, [assignment])
    release.release(course, [assignment], zip_=False, log=lambda _: None)
    ids = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        student = term.Student(f"s{i:03d}-{kind.id}", kind.story, code=kind.code, answers=kind.answers,
                                    delete_cells=kind.delete_cells, out_of_order=kind.out_of_order)
        term.make_submission(student, assignment, course, scratch / "students")
        ids.append(student.id)
    release.nbgrader(course, "zip_collect", assignment, "--force")
    return course, ids


def timed(course: Path, assignment: str, ids: list[str], batches: list[list[str]], jobs: int) -> float:
    start = time.perf_counter()
    grading._run_batches(course, "autograde", assignment, batches, ids, jobs)
    seconds = time.perf_counter() - start
    left = progress.unfinished(course, assignment, ids)
    assert not left, left
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--assignment", default="a5_analysis")
    args = parser.parse_args()
    header("class autograde: serial vs per-student vs batched", torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        base, ids = collected(Path(tmp) / "base", args.assignment, args.students)
        ways = {
            "serial (1 process)": ([ids], 1),
            f"one process per student, {args.jobs} at a time": ([[s] for s in ids], args.jobs),
            f"batched ({args.jobs} processes over slices)": (grading._batches(ids, args.jobs), args.jobs),
        }
        results = {}
        for name, (batches, jobs) in ways.items():
            course = Path(tmp) / name.split()[0]
            shutil.copytree(base, course)
            results[name] = timed(course, args.assignment, ids, batches, jobs)
            print(f"{name:<44} {results[name]:7.1f} s   {results[name] / len(ids):5.2f} s per notebook", flush=True)
        serial = results["serial (1 process)"]
        for name, seconds in results.items():
            print(f"{name:<44} speed-up x{serial / seconds:.2f}")


if __name__ == "__main__":
    main()
