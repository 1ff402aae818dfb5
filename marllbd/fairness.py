"""Fairness of a per-server load vector, and the shapings that turn it into a reward.

Every metric takes x, a 1-D vector of non-negative finite loads (one per server:
flow durations, busy workers, queue lengths...), and returns a float.
``per_step`` evaluates a metric on each row of a (steps, servers) matrix at once;
``shape`` and ``reward`` turn a metric into an RL reward (identity, exp or log form).

Words, as the code uses them (three things once all went by "fairness"):

- a *fairness metric* is one of METRICS (jain, cv, ...) of a per-server load vector;
  this module defines them, and the word "fairness" means them alone.
- the *reward* is a fairness metric of one per-server feature, shaped
  (marllbd.envs.reward.RewardSpec: metric, field, shaping); call it the reward, also
  when it is Jain's index of durations, never "fairness".
- *utilisation Jain* is Jain's index of the servers' busy fractions over a run, an
  evaluation score (marllbd.training.report's "Jain (util.)"); *duration Jain* is the
  daemon's Jain's index of the decayed mean flow duration (its metrics endpoint).

Edge cases, the same for every metric:

- empty vector (no server): ``ValueError``; fairness of nothing is undefined.
- NaN or ±inf anywhere: ``ValueError`` naming the index of the first bad element,
  because these values feed rewards and garbage must not train an agent silently.
- a negative element: ``ValueError`` naming its index; loads are non-negative.
- one server, or all servers with equal load: perfectly fair (jain 1, cv 0,
  min_max 1, product 1, gini 0, over_provision 0, variance 0, std 0).
- all zeros (an idle cluster): perfectly fair as well. Every server carries the
  same (zero) load, and each metric's limit along x = c·(1, ..., 1) as c → 0 is its
  perfectly fair value, so this keeps the metrics continuous along equal loads and
  every reward finite (MARLLB's code also returns Jain 1 for a zero sum).
- zeros mixed with positive loads: ordinary values; an idle server beside a busy
  one is unfair, so min_max and product are 0 there.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

Kernel = Callable[[NDArray[np.float64]], NDArray[np.float64]]


class Metric(NamedTuple):
    """A registered metric: scalar function, direction, perfectly fair value, row kernel."""

    fn: Callable[[ArrayLike], float]
    higher_is_better: bool
    ideal: float
    kernel: Kernel


def _loads(x: ArrayLike, ndim: int) -> NDArray[np.float64]:
    """Return x as a float64 array of the given rank, or raise naming the first bad element."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"fairness input must be {ndim}-D (servers last), got shape {a.shape}")
    if a.shape[-1] == 0:
        raise ValueError("fairness input has no servers; a metric needs at least one load")
    for bad, what in ((~np.isfinite(a), "not finite"), (a < 0, "negative")):
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), a.shape)
            index = ", ".join(str(int(i)) for i in where)
            raise ValueError(
                f"fairness input x[{index}] = {float(a[where])!r} is {what}; "
                "loads must be finite and non-negative"
            )
    return a


def _scaled(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Split each row into its max m and y = x / m in [0, 1]; an all-zero row becomes y = 1.

    Dividing by the max first makes the scale-invariant metrics exactly invariant
    and keeps squares from overflowing; y = 1 encodes "all equal" for idle rows.
    """
    m = x.max(axis=-1, keepdims=True)
    busy = m > 0
    y = np.where(busy, x / np.where(busy, m, 1.0), 1.0)
    return m[..., 0], y


def _jain(x: NDArray[np.float64]) -> NDArray[np.float64]:
    _, y = _scaled(x)
    n = y.shape[-1]
    # y has a 1 in every row, so the denominator is at least n.
    return np.asarray(y.sum(axis=-1) ** 2 / (n * (y * y).sum(axis=-1)))


def _cv(x: NDArray[np.float64]) -> NDArray[np.float64]:
    _, y = _scaled(x)
    return np.asarray(y.std(axis=-1) / y.mean(axis=-1))


def _min_max(x: NDArray[np.float64]) -> NDArray[np.float64]:
    _, y = _scaled(x)
    return np.asarray(y.min(axis=-1))


def _variance(x: NDArray[np.float64]) -> NDArray[np.float64]:
    m, y = _scaled(x)
    return np.asarray(m * m * y.var(axis=-1))


def _std(x: NDArray[np.float64]) -> NDArray[np.float64]:
    m, y = _scaled(x)
    return np.asarray(m * y.std(axis=-1))


def _makespan(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(x.max(axis=-1))


def _product(x: NDArray[np.float64]) -> NDArray[np.float64]:
    _, y = _scaled(x)
    with np.errstate(divide="ignore"):
        # log 0 = -inf, so a row holding an idle server has product exp(-inf) = 0.
        return np.asarray(np.exp(np.log(y).mean(axis=-1)))


def _gini(x: NDArray[np.float64]) -> NDArray[np.float64]:
    _, y = _scaled(x)
    n = y.shape[-1]
    # Sorted form of the mean absolute difference: G = Σ (2i − n − 1) y_(i) / (n Σ y),
    # i = 1..n over ascending y; O(n log n) instead of the O(n²) pair sum.
    rank = 2.0 * np.arange(1, n + 1) - n - 1
    g = (np.sort(y, axis=-1) * rank).sum(axis=-1) / (n * y.sum(axis=-1))
    return np.asarray(np.maximum(g, 0.0))


def _over_provision(x: NDArray[np.float64]) -> NDArray[np.float64]:
    _, y = _scaled(x)
    return np.asarray(1.0 - 1.0 / y.mean(axis=-1))


def _one(kernel: Kernel, x: ArrayLike) -> float:
    return float(kernel(_loads(x, 1)[np.newaxis, :])[0])


def jain(x: ArrayLike) -> float:
    """Jain's index (Σx)² / (n Σx²) ∈ [1/n, 1]; 1 iff all loads are equal (Jain et al. 1984)."""
    return _one(_jain, x)


def cv(x: ArrayLike) -> float:
    """Coefficient of variation: population std / mean ≥ 0; 0 iff all loads are equal."""
    return _one(_cv, x)


def min_max(x: ArrayLike) -> float:
    """Max-min fairness min(x) / max(x) ∈ [0, 1]; 1 iff all loads are equal."""
    return _one(_min_max, x)


def variance(x: ArrayLike) -> float:
    """Population variance of the loads (MARLLB's 'var' reward), in load units squared."""
    return _one(_variance, x)


def std(x: ArrayLike) -> float:
    """Population standard deviation of the loads, in load units."""
    return _one(_std, x)


def makespan(x: ArrayLike) -> float:
    """Largest load (MARLLB's 'max' reward): the server that finishes last."""
    return _one(_makespan, x)


def product(x: ArrayLike) -> float:
    """Product fairness (Π x_i / max x)^(1/n) ∈ [0, 1]: geometric mean of x_i / max x.

    1 iff all loads are equal, 0 if any server is idle beside a busy one. MARLLB's code
    (its 'product' reward) uses the plain product, i.e. this value to the power n; the
    n-th root makes values comparable across cluster sizes and keeps them from underflowing.
    """
    return _one(_product, x)


def gini(x: ArrayLike) -> float:
    """Gini coefficient ∈ [0, (n−1)/n] ⊂ [0, 1), in O(n log n); 0 iff all loads are equal."""
    return _one(_gini, x)


def over_provision(x: ArrayLike) -> float:
    """1 − max/mean ∈ [1 − n, 0]: how far the busiest server sits above the mean (MARLLB)."""
    return _one(_over_provision, x)


METRICS: dict[str, Metric] = {
    "jain": Metric(jain, True, 1.0, _jain),
    "cv": Metric(cv, False, 0.0, _cv),
    "min_max": Metric(min_max, True, 1.0, _min_max),
    "variance": Metric(variance, False, 0.0, _variance),
    "std": Metric(std, False, 0.0, _std),
    "makespan": Metric(makespan, False, 0.0, _makespan),
    "product": Metric(product, True, 1.0, _product),
    "gini": Metric(gini, False, 0.0, _gini),
    "over_provision": Metric(over_provision, True, 0.0, _over_provision),
}

SHAPES = ("identity", "exp", "log")


def metric(name: str) -> Metric:
    """Look a metric up by name; an unknown name raises ValueError listing the valid ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(
            f"unknown fairness metric {name!r}; valid: {', '.join(sorted(METRICS))}"
        ) from None


def per_step(name: str, loads: ArrayLike) -> NDArray[np.float64]:
    """Evaluate metric `name` on every row of a (steps, servers) matrix, vectorised."""
    return metric(name).kernel(_loads(loads, 2))


def shape(
    value: float, kind: str, name: str, *, sharpness: float = 1.0, eps: float = 1e-6
) -> float:
    """Turn the value of metric `name` into a reward where higher is better.

    With g = |value − ideal| (0 when perfectly fair):
    'identity' is value, negated for lower-is-better metrics (Jain stays Jain);
    'exp' is exp(−sharpness·g) ∈ (0, 1] (MARLLB's var_exp and max_exp used sharpness 1e4);
    'log' is −log(g + eps), most sensitive near the ideal (MARLLB's var_log, max_log).
    """
    spec = metric(name)
    if kind not in SHAPES:
        raise ValueError(f"unknown reward shape {kind!r}; valid: {', '.join(SHAPES)}")
    if not np.isfinite(value):
        raise ValueError(f"cannot shape a non-finite {name} value {value!r}")
    if not (sharpness > 0 and eps > 0):
        raise ValueError(f"sharpness and eps must be > 0, got {sharpness!r} and {eps!r}")
    if kind == "identity":
        return float(value) if spec.higher_is_better else -float(value)
    gap = abs(float(value) - spec.ideal)
    if kind == "exp":
        return float(np.exp(-sharpness * gap))
    return float(-np.log(gap + eps))


def reward(
    name: str, x: ArrayLike, kind: str = "identity", *, sharpness: float = 1.0, eps: float = 1e-6
) -> float:
    """Metric `name` of loads x, shaped by `kind` (see `shape`)."""
    return shape(metric(name).fn(x), kind, name, sharpness=sharpness, eps=eps)
