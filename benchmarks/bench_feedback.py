"""Benchmark: how often the grader's feedback names the mistake, on generated single mistakes.

Run: `.venv/bin/python benchmarks/bench_feedback.py [--json PATH] [--sandbox]`. Mutation operators over
the reference's solution regions (swapped axes, another softmax axis, wrong constants, dropped terms and
calls, reordered arguments, off-by-one ranges, reshape for transpose; `tests/feedback_variants.py`) give
single mistakes; each is graded in this process with `grader.grade_in_process` (the same cases,
comparisons, analysers and substitutions as the sandboxed grader). Per part it reports:

* detected: the mutant loses points (the others compute the same function: equivalent mutants);
* localised: of the detected ones, only the mutated part loses points (composites included);
* specific: of the detected ones, the mutated part's feedback names a cause (a catalogue hint, an
  analyser sentence or a translated error), not only the part's generic sentence;

and the false-hint count: correct variants written in other styles that lose points or get any hint.
Then it times grading (sandboxed, one process per submission as in production) for the reference and a
buggy submission, with the analysers on and off in the same run (`--sandbox-repeats`). Goal (issue 13):
specific on >= 90% of detected mutants in every part, 0 false hints, time within 1.5x.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from coursecore.parts import analysers

from autograder import bugs, grader  # noqa: E402
from coursecore.parts import COMPOSITE_PARTS  # noqa: E402
import feedback_variants as fv  # noqa: E402

GOAL_SPECIFIC = 0.90
GOAL_TIME_RATIO = 1.5
NON_SPECIFIC = {grader.NOT_IMPLEMENTED_HINT, grader.GRADIENT_HINT, *bugs.GENERIC_HINTS.values()}


def specific(hints: list[str]) -> bool:
    return any(h not in NON_SPECIFIC for h in hints)


def measure_mutants(root: Path) -> dict:
    per_part = defaultdict(lambda: {"mutants": 0, "detected": 0, "localised": 0, "specific": 0, "missed": []})
    for i, (part, op, line, edit) in enumerate(fv.mutants()):
        folder = fv.make(root, f"mutant{i:03d}", [edit])
        report = grader.grade_in_process(folder)
        row = per_part[part]
        row["mutants"] += 1
        lost = {p.part for p in report.parts if p.score < p.max_score}
        if not lost:
            continue
        row["detected"] += 1
        row["localised"] += lost == {part}
        own = report.part(part)
        if specific(own.hints):
            row["specific"] += 1
        else:
            row["missed"].append(f"{op}: {line}")
    return dict(per_part)


def measure_variants(root: Path) -> list[str]:
    false = []
    for name, edits in fv.VARIANTS.items():
        report = grader.grade_in_process(fv.make(root, f"variant_{name}", edits))
        for p in report.parts:
            if p.score < p.max_score or p.hints:
                false.append(f"{name}: {p.part} {p.score}/{p.max_score} {p.hints}")
    return false


def time_sandboxed(root: Path, repeats: int) -> dict:
    """Seconds per sandboxed grading, reference and a buggy submission, analysers on and off."""
    buggy = fv.make(root, "timed_buggy", [(fv.T, "weights = scores.softmax(dim=-1)", "weights = scores.softmax(dim=-2)"),
                                          (fv.V, "cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)",
                                           "cls = self.cls_token")])
    ref = fv.make(root, "timed_reference")
    saved_analyse, saved_subs = grader.analyse_case, grader.substitutions
    times = {}
    grader.grade(ref)  # warm: reference cases built once per grader process
    for mode in ("before (no analysers, no substitution)", "after"):
        if mode.startswith("before"):
            grader.analyse_case, grader.substitutions = (lambda *a: []), (lambda results: {})
        else:
            grader.analyse_case, grader.substitutions = saved_analyse, saved_subs
        for label, folder in (("reference", ref), ("buggy", buggy)):
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                grader.grade(folder)
                runs.append(time.perf_counter() - start)
            times[f"{label}, {mode}"] = statistics.median(runs)
    grader.analyse_case, grader.substitutions = saved_analyse, saved_subs
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--sandbox-repeats", type=int, default=3, help="sandboxed gradings per timing (0: skip)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    start = time.perf_counter()
    per_part = measure_mutants(root)
    false = measure_variants(root)
    took = time.perf_counter() - start
    print(f"{'part':<36} {'mutants':>7} {'detected':>8} {'localised':>9} {'specific':>8}")
    ok = True
    for part, row in per_part.items():
        det = row["detected"] or 1
        rate = row["specific"] / det
        ok &= rate >= GOAL_SPECIFIC
        print(f"{part:<36} {row['mutants']:>7} {row['detected']:>8} {row['localised'] / det:>9.0%} {rate:>8.0%}")
    total = {k: sum(r[k] for r in per_part.values()) for k in ("mutants", "detected", "localised", "specific")}
    print(f"{'all parts':<36} {total['mutants']:>7} {total['detected']:>8} "
          f"{total['localised'] / max(total['detected'], 1):>9.0%} {total['specific'] / max(total['detected'], 1):>8.0%}")
    for part, row in per_part.items():
        for miss in row["missed"]:
            print(f"  no specific hint, {part}: {miss}")
    print(f"false hints on {len(fv.VARIANTS)} correct variants: {len(false)}")
    for line in false:
        print(f"  {line}")
    print(f"(in-process grading of {total['mutants'] + len(fv.VARIANTS)} folders: {took:.1f} s)")
    times = time_sandboxed(root, args.sandbox_repeats) if args.sandbox_repeats else {}
    for label, seconds in times.items():
        print(f"sandboxed grading, {label}: {seconds:.2f} s (median of {args.sandbox_repeats})")
    for label in ("reference", "buggy"):
        before, after = times.get(f"{label}, before (no analysers, no substitution)"), times.get(f"{label}, after")
        if before and after:
            print(f"time ratio {label}: x{after / before:.2f} (goal <= x{GOAL_TIME_RATIO})")
    if args.json:
        Path(args.json).write_text(json.dumps({"per_part": per_part, "false_hints": false, "times": times}, indent=2))
    print("goal met" if ok and not false else "GOAL NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
