"""The reward: a fairness metric, shaped, over one per-server feature; or the user's own.

The environments compute the built-in rewards with compiled twins of
marllbd.fairness's numpy definitions (equal to them within a few ulps; tests/envs
check 1e-12 relative): one compiled call per step instead of several numpy calls.

reward_metric="custom" with reward_fn=f makes the reward f(features, active): f gets
the (num_servers, 12) feature matrix of the interval (marllbd.features.FEATURE_NAMES;
read-only, float64) and the (num_servers,) bool vector of servers taking new flows,
and returns a finite number.  For example, the negated mean completion time::

    from marllbd.envs import LoadBalanceEnv
    from marllbd.features import FEATURE_NAMES

    FCT = FEATURE_NAMES.index("fct_decayed_mean")
    env = LoadBalanceEnv(
        "seed-16",
        reward_metric="custom",
        reward_fn=lambda features, active: -float(features[active, FCT].mean()),
    )

DEFAULT_REWARD_FIELD is the single default of the environments and the trainers,
chosen by measurement (benchmarks/reward_ranking.py, docs/reward.md).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
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
CUSTOM = "custom"
"""reward_metric of a user-supplied reward_fn."""
RewardFn = Callable[[np.ndarray, np.ndarray], float]
"""A custom reward: (features (num_servers, 12), active (num_servers,) bool) -> float."""
DEFAULT_REWARD_METRIC = "jain"
DEFAULT_REWARD_FIELD = "fct_decayed_mean"
"""The default feature of the reward, for the environments and the trainers: of the
candidates measured, the one whose Jain reward ranks the baseline policies as their mean
FCT does (docs/reward.md)."""
DEFAULT_REWARD_SHAPING = "identity"
_FCT_MEAN = FEATURE_NAMES.index("fct_mean")
_FCT_P90 = FEATURE_NAMES.index("fct_p90")
# fairness.shape's defaults
_SHARPNESS = 1.0
_EPS = 1e-6


@dataclass(frozen=True)
class RewardSpec:
    """reward = shape(metric(features[:, field])), or fn(features, active) with metric "custom".

    The default is Jain of DEFAULT_REWARD_FIELD.  Errors name the environments' arguments
    (reward_metric, reward_field, reward_shaping, reward_fn).
    """

    metric: str = DEFAULT_REWARD_METRIC
    field: str = DEFAULT_REWARD_FIELD
    shaping: str = DEFAULT_REWARD_SHAPING
    fn: RewardFn | None = None
    """The custom reward (metric "custom" only); field and shaping do not apply to it."""

    def __post_init__(self) -> None:
        if self.metric == CUSTOM:
            if not callable(self.fn):
                raise ValueError(
                    "reward_fn: reward_metric='custom' needs a callable "
                    f"reward_fn(features, active) -> float, got {self.fn!r}"
                )
        elif self.fn is not None:
            raise ValueError(
                f"reward_fn: given, but reward_metric is {self.metric!r}; "
                "pass reward_metric='custom' to use it"
            )
        elif self.metric not in fairness.METRICS:
            raise ValueError(
                f"reward_metric: unknown metric {self.metric!r}; valid: "
                f"{', '.join([*sorted(fairness.METRICS), CUSTOM])}"
            )
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
        if self.fn is not None:
            raise ValueError("reward_metric 'custom' has no compiled kernel; call the spec")
        m = fairness.metric(self.metric)
        return (
            self.column,
            METRIC_CODES[self.metric],
            SHAPE_CODES[self.shaping],
            m.higher_is_better,
            m.ideal,
        )

    def __call__(self, features: np.ndarray, active: np.ndarray | None = None) -> float:
        """The reward of one interval's (num_servers, 12) features; `active` (servers taking
        new flows, all if None) is for a custom reward_fn only."""
        if self.fn is not None:
            return self._custom(features, active)
        # Features are finite and non-negative by construction: skip the input checks
        # of fairness.reward (hot path).
        reward, value = reward_kernel(np.ascontiguousarray(features), *self.codes)
        return self.checked(reward, value)

    def step(
        self, features: np.ndarray, n_fct: np.ndarray, active: np.ndarray
    ) -> tuple[float, float, float]:
        """(reward, fct_mean, fct_p90_max) of one interval of one LB (see fct_stats)."""
        if self.fn is not None:
            fct_mean, fct_p90 = fct_stats(features, n_fct)
            return self._custom(features, active), fct_mean, fct_p90
        reward, value, fct_mean, fct_p90 = step_kernel(features, n_fct, *self.codes)
        return self.checked(reward, value), fct_mean, fct_p90

    def batch_step(
        self, features: np.ndarray, n_fct: np.ndarray, active: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """step() of each env i of a batch: features (N, n, 12), n_fct (N, n), active[i];
        returns the arrays (rewards, fct_mean, fct_p90_max), each (N,)."""
        count = features.shape[0]
        if self.fn is not None:
            rows = [self.step(features[i], n_fct[i], active[i]) for i in range(count)]
            r, m, p = (np.array(c, dtype=np.float64) for c in zip(*rows, strict=True))
            return r, m, p
        out = np.empty((4, count))
        batch_step_kernel(features, n_fct, *self.codes, out)
        if not np.isfinite(out[1]).all():
            for i in np.flatnonzero(~np.isfinite(out[1])):
                self.checked(out[0, i], out[1, i])  # raises, naming the metric
        return out[0], out[2], out[3]

    def checked(self, reward: float, value: float) -> float:
        """reward, or fairness.shape's error for a non-finite metric value."""
        if not math.isfinite(value):
            return fairness.shape(value, self.shaping, self.metric)  # raises
        return reward

    def _custom(self, features: np.ndarray, active: np.ndarray | None) -> float:
        assert self.fn is not None
        feats = np.asarray(features, dtype=np.float64).view()
        feats.flags.writeable = False  # the environment's own buffer: not the user's to edit
        up = (
            np.ones(feats.shape[0], dtype=bool)
            if active is None
            else np.asarray(active, dtype=bool).view()
        )
        up.flags.writeable = False
        out = self.fn(feats, up)
        scalar = isinstance(out, numbers.Real) or (
            isinstance(out, np.ndarray) and out.ndim == 0 and out.dtype.kind in "biuf"
        )
        value = float(out) if scalar else math.nan
        if not math.isfinite(value):
            raise ValueError(
                f"reward_fn: returned {out!r}; expected a finite number "
                "(a scalar: the reward of the interval)"
            )
        return value


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
def batch_step_kernel(
    feats: np.ndarray,
    n_fct: np.ndarray,
    col: int,
    code: int,
    shape: int,
    higher_is_better: bool,
    ideal: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """step_kernel of each env i of a batch (feats[i], n_fct[i]) into out[:, i]: the rows
    reward, value, fct_mean, fct_p90_max."""
    for i in range(feats.shape[0]):
        r, v, m, p = step_kernel(feats[i], n_fct[i], col, code, shape, higher_is_better, ideal)
        out[0, i] = r
        out[1, i] = v
        out[2, i] = m
        out[3, i] = p


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
