"""Confidence intervals for a mean over a few independent runs (Student's t), and for
the ratio of paired runs (a geometric mean: the t interval of the log ratios).

`t_quantile` is exact for every integer number of degrees of freedom: the
two-sided t distribution function has a closed form as a finite series in
θ = atan(t / √df) (Abramowitz & Stegun 26.7.3-4), inverted here by bisection
to the last bit.  df = inf gives the normal quantile.  No scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
"""The two-sided confidence of the intervals the evaluation reports."""


def t_within(t: float, df: float) -> float:
    """P(|T| <= t) for T ~ Student's t with `df` degrees of freedom (an integer >= 1, or inf)."""
    if t <= 0.0:
        return 0.0
    if math.isinf(df):
        return math.erf(t / math.sqrt(2.0))
    nu = int(df)
    theta = math.atan(t / math.sqrt(nu))
    c2 = math.cos(theta) ** 2
    s = math.sin(theta)
    if nu % 2:  # odd: (2/π)(θ + sinθ cosθ (1 + 2/3 c² + 2·4/(3·5) c⁴ + ... up to c^(ν-3)))
        if nu == 1:
            return 2.0 * theta / math.pi
        term, total = 1.0, 1.0
        for k in range(1, (nu - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + s * math.cos(theta) * total)
    # even: sinθ (1 + 1/2 c² + 1·3/(2·4) c⁴ + ... up to c^(ν-2))
    term, total = 1.0, 1.0
    for k in range(1, (nu - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (integer >= 1, or inf).

    ValueError names the argument if p is not in (0, 1) or df is not a whole number >= 1.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p: expected a probability in (0, 1), got {p}")
    if not (math.isinf(df) and df > 0) and not (df >= 1 and float(df).is_integer()):
        raise ValueError(f"df: expected a whole number >= 1 or inf, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target = 2.0 * p - 1.0  # P(|T| <= q) for the upper quantile q
    lo, hi = 0.0, 1.0
    while t_within(hi, df) < target:
        lo, hi = hi, hi * 2.0
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # adjacent floats: converged
            return hi
        if t_within(mid, df) < target:
            lo = mid
        else:
            hi = mid


@dataclass(frozen=True)
class Estimate:
    """The mean of per-run values (for paired_ratio: the geometric mean of ratios) and its
    two-sided t confidence interval.

    With fewer than two values the interval is unknown: low and high are NaN.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return 0.5 * (self.high - self.low)

    def excludes(self, value: float) -> bool:
        """Whether `value` lies outside the interval (False when the interval is unknown)."""
        return self.low > value or self.high < value


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of `values` ± t(1 - (1 - confidence)/2, n - 1) · s / √n (s: sample std, ddof 1)."""
    n = len(values)
    if n == 0:
        raise ValueError("values: expected at least one value")
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, confidence)
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half, n, confidence)


def paired_ratio(
    values: Sequence[float], baselines: Sequence[float], confidence: float = CONFIDENCE
) -> Estimate:
    """The geometric mean of values[i] / baselines[i] with its t confidence interval.

    Pairs share everything but the thing compared (e.g. two policies on the same
    trace), so the log ratios are the independent samples: their mean_ci,
    exponentiated.  The interval is therefore multiplicative (low · high = mean²),
    and a ratio of 1 outside it is a difference beyond the noise between pairs.
    ValueError names the argument if the lengths differ or a value is not
    positive (a log ratio needs both sides > 0).
    """
    if len(values) != len(baselines):
        raise ValueError(f"baselines: expected one per value ({len(values)}), got {len(baselines)}")
    for name, xs in (("values", values), ("baselines", baselines)):
        bad = next((x for x in xs if not x > 0.0), None)
        if bad is not None:
            raise ValueError(f"{name}: expected positive numbers for a ratio, got {bad}")
    logs = mean_ci([math.log(v / b) for v, b in zip(values, baselines, strict=True)], confidence)
    return Estimate(
        math.exp(logs.mean), math.exp(logs.low), math.exp(logs.high), logs.n, confidence
    )
