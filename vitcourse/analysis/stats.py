"""Is a difference between two training recipes real? Means, spreads and intervals over seeds.

A single run of a small ViT can land a few points above or below its recipe's typical accuracy: the seed
changes the initial weights, the data order and the augmentation. So an ablation trains every variant on
several seeds and reports

* per variant: the mean, the sample standard deviation and a 95% Student-t interval for the mean;
* per pair of variants: the *paired* difference (variant - baseline, seed by seed: the same seed gives both
  runs the same validation split and data order, so the seed's luck cancels), with its t interval, and a
  sentence a student can read ("... not distinguishable at this budget" when the interval holds 0).

scipy.stats supplies the t quantiles. Accuracies are fractions in 0..1; the sentences speak in points
(percentage points, 1 point = 0.01).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as _scipy_stats

CONFIDENCE = 0.95  # the course reports 95% intervals everywhere
POINTS = 100.0  # accuracy fraction -> percentage points


@dataclass(frozen=True)
class Interval:
    """Mean of `n` values with its sample standard deviation and a two-sided t interval."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for a single value
    low: float  # nan when n < 2: one run says nothing about the spread
    high: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t critical value for the mean of n values (n - 1 degrees of freedom)."""
    if n < 2:
        raise ValueError(f"an interval needs at least 2 values, got {n}")
    return float(_scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1))


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean, sample standard deviation and the t interval mean ± t·s/√n of `values`."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(1, mean, float("nan"), float("nan"), float("nan"), confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n, confidence) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half, confidence)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The interval of mean(a_i - b_i): a and b are results of two variants on the same seeds, in order."""
    if len(a) != len(b):
        raise ValueError(f"a paired comparison needs the same seeds on both sides, got {len(a)} and {len(b)} runs")
    return summarize([x - y for x, y in zip(a, b)], confidence)


def seeds_needed(std: float, half_width: float, confidence: float = CONFIDENCE, max_n: int = 10_000) -> int:
    """The fewest seeds n whose t interval t(n-1)·std/√n is at most `half_width` wide on each side.

    `std` is the spread of single runs measured in a pilot grid (same unit as `half_width`).
    """
    if std < 0 or half_width <= 0:
        raise ValueError(f"need std >= 0 and half_width > 0, got std={std}, half_width={half_width}")
    for n in range(2, max_n + 1):
        if t_quantile(n, confidence) * std / math.sqrt(n) <= half_width:
            return n
    raise ValueError(f"more than {max_n} seeds would be needed for ±{half_width} with a spread of {std}")


def _points(x: float) -> str:
    return f"{x * POINTS:+.1f}".replace("-", "\u2212")


def verdict(a_name: str, b_name: str, diff: Interval) -> str:
    """One sentence on `a_name` vs `b_name` from their paired difference (a - b) in accuracy fractions."""
    head = f"{a_name} vs {b_name}: {_points(diff.mean)} points"
    if diff.n < 2:
        return f"{head} from a single seed: run more seeds before concluding anything"
    share = f"{diff.confidence:.0%} interval [{_points(diff.low)}, {_points(diff.high)}] over {diff.n} seeds"
    if diff.low > 0:
        return f"{head}, {share}: {a_name} is better at this budget"
    if diff.high < 0:
        return f"{head}, {share}: {a_name} is worse at this budget"
    return f"{head}, {share}: not distinguishable at this budget"


def seeds_needed_normal(std: float, half_width: float, confidence: float = CONFIDENCE) -> int:
    """The common slip: the normal quantile (1.96) instead of Student's t, n = ceil((z·std / half_width)²)."""
    z = float(_scipy_stats.norm.ppf(0.5 + confidence / 2))
    return max(2, math.ceil((z * std / half_width) ** 2))


def grade_seeds_needed(answer, std: float, half_width: float, points: float = 2.0,
                       confidence: float = CONFIDENCE) -> float:
    """Grade "how many seeds for a ±half_width interval given a spread of std": print feedback, return points.

    Full points for the t-based answer; half for the normal-quantile slip (the interval is then too narrow
    for a handful of seeds). The correct number is never printed.
    """
    correct = seeds_needed(std, half_width, confidence)
    if not isinstance(answer, (int, float)) or isinstance(answer, bool) or answer != int(answer):
        print(f"SEEDS_NEEDED should be a whole number of seeds, got {answer!r}")
        return 0.0
    answer = int(answer)
    if answer == correct:
        print("SEEDS_NEEDED: correct")
        return float(points)
    if answer == seeds_needed_normal(std, half_width, confidence) and answer != correct:
        print("SEEDS_NEEDED: this is the count with the normal quantile 1.96; with a few seeds the spread itself "
              "is estimated, so the interval uses Student's t with n - 1 degrees of freedom, which is wider. "
              "Find the smallest n with t(n-1)·s/√n <= the half-width.")
        return points / 2
    side = "few" if answer < correct else "many"
    print(f"SEEDS_NEEDED: {answer} seeds are too {side}: find the smallest n with t(n-1)·s/√n <= the half-width "
          f"(t from scipy.stats.t.ppf(0.975, n - 1))")
    return 0.0
