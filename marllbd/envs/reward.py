"""The reward: a fairness metric, shaped, over one per-server feature.

The environments compute it with compiled twins of marllbd.fairness's numpy
definitions (equal to them within a few ulps; tests/envs check 1e-12 relative):
one compiled call per step instead of several numpy calls.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np

from marllbd import fairness
from marllbd.features import FEATURE_NAMES

_CV, _GINI, _JAIN, _MAKESPAN, _MIN_MAX, _OVER, _PRODUCT, _STD, _VARIANCE = range(9)
METRIC_CODES = {
    "cv": _CV,
    "gini": _GINI,
    "jain": _JAIN,
    "makespan": _MAKESPAN,
    "min_max": _MIN_MAX,
    "over_provision": _OVER,
    "product": _PRODUCT,
    "std": _STD,
    "variance": _VARIANCE,
}
SHAPE_CODES = {name: i for i, name in enumerate(fairness.SHAPES)}
_FCT_MEAN = FEATURE_NAMES.index("fct_mean")
_FCT_P90 = FEATURE_NAMES.index("fct_p90")
# fairness.shape's defaults
_SHARPNESS = 1.0
_EPS = 1e-6


@dataclass(frozen=True)
class RewardSpec:
    """reward = shape(metric(features[:, field])); default Jain of the decayed mean duration."""

    metric: str = "jain"
    field: str = "dur_decayed_mean"
    shaping: str = "identity"

    def __post_init__(self) -> None:
        fairness.metric(self.metric)  # raises naming the valid metrics
        if self.field not in FEATURE_NAMES:
            raise ValueError(
                f"reward_field: unknown feature {self.field!r}; valid: {', '.join(FEATURE_NAMES)}"
            )
        if self.shaping not in fairness.SHAPES:
            raise ValueError(
                f"reward_shaping: expected one of {', '.join(fairness.SHAPES)}, "
                f"got {self.shaping!r}"
            )

    @functools.cached_property
    def column(self) -> int:
        return FEATURE_NAMES.index(self.field)

    @functools.cached_property
    def codes(self) -> tuple[int, int, int, bool, float]:
        """The compiled kernels' arguments: column, metric, shaping, direction, ideal."""
        m = fairness.metric(self.metric)
        return (
            self.column,
            METRIC_CODES[self.metric],
            SHAPE_CODES[self.shaping],
            m.higher_is_better,
            m.ideal,
        )

    def __call__(self, features: np.ndarray) -> float:
        # Features are finite and non-negative by construction: skip the input checks
        # of fairness.reward (hot path).
        reward, value = reward_kernel(np.ascontiguousarray(features), *self.codes)
        return self.checked(reward, value)

    def checked(self, reward: float, value: float) -> float:
        """reward, or fairness.shape's error for a non-finite metric value."""
        if not math.isfinite(value):
            return fairness.shape(value, self.shaping, self.metric)  # raises
        return reward


_kernel = numba.njit(cache=True)


@_kernel
def _metric(code: int, x: np.ndarray) -> float:  # pragma: no cover - compiled
    """Metric METRIC_CODES[code] of loads x, as marllbd.fairness defines it (its _scaled
    form: y = x / max(x), y = 1 for an all-zero x)."""
    n = x.shape[0]
    m = 0.0
    for i in range(n):
        m = max(m, x[i])
    y = np.ones(n)
    if m > 0.0:
        for i in range(n):
            y[i] = x[i] / m
    if code == _MAKESPAN:
        return m
    s = 0.0
    for i in range(n):
        s += y[i]
    mean = s / n
    if code == _JAIN:
        sq = 0.0
        for i in range(n):
            sq += y[i] * y[i]
        return s * s / (n * sq)
    if code in (_CV, _STD, _VARIANCE):  # population, two-pass
        d = 0.0
        for i in range(n):
            e = y[i] - mean
            d += e * e
        var = d / n
        if code == _CV:
            return math.sqrt(var) / mean
        if code == _STD:
            return m * math.sqrt(var)
        return m * m * var
    if code == _MIN_MAX:
        lo = 1.0
        for i in range(n):
            lo = min(lo, y[i])
        return lo
    if code == _OVER:
        return 1.0 - 1.0 / mean
    if code == _PRODUCT:  # exp(mean(log y)), 0 with an idle server
        lg = 0.0
        for i in range(n):
            if y[i] == 0.0:
                return 0.0
            lg += math.log(y[i])
        return math.exp(lg / n)
    # _GINI: Σ (2i − n − 1) y_(i) / (n Σ y) over ascending y, at least 0
    ys = np.sort(y)
    g = 0.0
    for i in range(n):
        g += ys[i] * (2.0 * (i + 1) - n - 1)
    return max(g / (n * s), 0.0)


@_kernel
def _shape(
    value: float, shape: int, higher_is_better: bool, ideal: float
) -> float:  # pragma: no cover - compiled
    """fairness.shape's value for a finite metric value."""
    if shape == 0:
        return value if higher_is_better else -value
    gap = abs(value - ideal)
    if shape == 1:
        return math.exp(-_SHARPNESS * gap)
    return -math.log(gap + _EPS)


@_kernel
def reward_kernel(
    feats: np.ndarray, col: int, code: int, shape: int, higher_is_better: bool, ideal: float
) -> tuple[float, float]:  # pragma: no cover - compiled
    """(reward, metric value) of feats[:, col]; the reward is NaN if the value is not finite."""
    value = _metric(code, feats[:, col])
    if not math.isfinite(value):
        return np.nan, value
    return _shape(value, shape, higher_is_better, ideal), value


@_kernel
def step_kernel(
    feats: np.ndarray,
    n_fct: np.ndarray,
    col: int,
    code: int,
    shape: int,
    higher_is_better: bool,
    ideal: float,
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """reward_kernel's (reward, value), then fct_stats'."""
    reward, value = reward_kernel(feats, col, code, shape, higher_is_better, ideal)
    fct_mean, fct_p90_max = fct_stats(feats, n_fct)
    return reward, value, fct_mean, fct_p90_max


@_kernel
def fct_stats(feats: np.ndarray, n_fct: np.ndarray) -> tuple[float, float]:  # pragma: no cover
    """The interval's FCT statistics (step_info): the mean over the sampled completions of
    all servers and the worst server's p90; NaN for an interval without completions."""
    total = 0
    dot = 0.0
    p90 = -np.inf
    for i in range(n_fct.shape[0]):
        total += n_fct[i]
        dot += feats[i, _FCT_MEAN] * n_fct[i]
        p90 = max(p90, feats[i, _FCT_P90])
    if total == 0:
        return np.nan, np.nan
    return dot / total, p90
