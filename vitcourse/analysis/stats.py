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

from coursecore.counts import CONFIDENCE  # noqa: E402 - the course reports 95% intervals everywhere
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
