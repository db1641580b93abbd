"""Held-out feedback measure for `cnn.py` and `finetune.py` (docs/grading.md): of the realistic mistakes in
tests/a67_mistakes.py, how many get a hint that names the mistake, how many a wrong diagnosis, how many lose
points outside their own part; and whether the correct variants in other styles keep full marks without a hint.

    python benchmarks/bench_a67_feedback.py [-v]

Graded in this process (`grader.grade_in_process`: the grader's cases, comparisons, catalogue and analysers
without the sandbox); the mistakes are our own code. tests/test_decomposition.py asserts the same figures.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import a67_mistakes as am  # noqa: E402

if __name__ == "__main__":
    start = time.perf_counter()
    result = am.measure()
    for name, file, part, _, words in am.MISTAKES:
        flag = "ok  " if name in result["named"] else "MISS"
        flag = "WRONG" if name in result["wrong"] else flag
        if "-v" in sys.argv or flag != "ok  ":
            print(f"{flag} {name:32} {part:30} {result['hints'][name]}")
    total = len(am.MISTAKES)
    print(f"named: {len(result['named'])}/{total} ({100 * len(result['named']) / total:.0f}%); wrong diagnoses: "
          f"{len(result['wrong'])} {result['wrong'] or ''}; points lost outside their part: {result['misplaced'] or 0}")
    bad = {k: v for k, v in result["variants"].items() if v[0] < v[1] or v[2]}
    print(f"correct variants: {len(result['variants']) - len(bad)}/{len(result['variants'])} full marks and no hint "
          f"{bad or ''}")
    print(f"{time.perf_counter() - start:.0f} s")
