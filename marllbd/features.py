"""A frame → per-server feature matrix: the one place features are computed.

The simulator env (in process) and the daemon (on a shared-memory `Frame`)
both call `compute`, so a policy sees the same numbers in training and in
service (DESIGN contract 3).  Features stay in raw units (counts, seconds);
learned policies normalise them themselves.

Per server, in FEATURE_NAMES order: active flows; for flow duration (`dur`)
and flow completion time (`fct`) each the mean, p90, std, decayed mean and
decayed p90 over the valid reservoir samples (MARLLB's 11); the previous
weight.  Definitions, for the m valid samples v_j of one quantity:

- mean = Σ v_j / m; std = sqrt(Σ (v_j − mean)² / m) (population std).
- decayed: sample j has weight w_j = exp(−age_j / tau), age_j = ts_ns −
  min(t_j, ts_ns) in seconds like tau, so samples stamped in the future
  weigh 1.  The weights are computed relative to the newest sample instead
  (it weighs exactly 1): both decayed statistics are invariant to scaling
  the weights, and an old reservoir then never underflows to all-zero
  weights.  decayed mean = Σ w_j v_j / Σ w_j.
- p-quantile under weights w (p = 0.9): the smallest sample value x such that
  the weights of the samples with value ≤ x sum to ≥ p · Σ w (the smallest
  value whose cumulative normalised weight, in sorted order, reaches p).
  p90 uses equal weights 1, so with m samples it is the r-th smallest value,
  r the smallest integer with r ≥ 0.9 · m; decayed p90 uses w.  When all
  weights are equal (tau = inf, or every sample at ts_ns) they coincide.
- no valid sample (m = 0): all five statistics of that quantity are 0.0.

Inactive servers get features like any other; policies receive the active
flags separately.  Sample values must be finite (`Frame.validate` checks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numba
import numpy as np
import numpy.typing as npt

from marllbd.dataplane.reservoir import NO_RUNTIME
from marllbd.ipc.layout import DEFAULT_K

FEATURE_SPEC_VERSION = 1
"""Bumped whenever a feature's definition or position changes."""

FEATURE_NAMES: tuple[str, ...] = (
    "active_flows",
    "dur_mean",
    "dur_p90",
    "dur_std",
    "dur_decayed_mean",
    "dur_decayed_p90",
    "fct_mean",
    "fct_p90",
    "fct_std",
    "fct_decayed_mean",
    "fct_decayed_p90",
    "prev_weight",
)
NUM_FEATURES = len(FEATURE_NAMES)
DEFAULT_TAU = 1.0
"""Default decay time constant, seconds."""

_QUANTILE = 0.9
_STATS = 5  # statistics per quantity
_COL_DUR = 1
_COL_FCT = _COL_DUR + _STATS
_COL_PREV = _COL_FCT + _STATS
_AGE_CAP_NS = np.uint64(1 << 62)  # ~146 years: only a garbage timestamp is older
_PIVOT_SAMPLE = 16  # subsample size for the quantiles' pivot
_PIVOT_RANK = 11  # about the 70th percentile: both p90s usually lie above it

# The helpers allocate nothing and run without the numba runtime (the private `_nrt`
# option, as marllbd.dataplane.reservoir's scalar kernels): with it, each array view and
# each call taking arrays counts references atomically, several times per server.
_helper = numba.njit(cache=True, nogil=True, **NO_RUNTIME)
# The per-quantity helpers are inlined into _rows: calls passing several arrays cost more
# than the work on a few samples.  _quantile, called four times, stays a call (inlined,
# its copies doubled the cold compile time).
_inline_helper = numba.njit(cache=True, nogil=True, inline="always", **NO_RUNTIME)


class FrameLike(Protocol):
    """What `compute` reads: a `marllbd.ipc.ring.Frame` or a `marllbd.sim.engine.Observation`.

    Arrays have num_servers rows; sample arrays are (num_servers, k) and
    entries at index >= n_dur / n_fct are not valid samples.
    """

    @property
    def num_servers(self) -> int: ...
    @property
    def ts_ns(self) -> int: ...
    @property
    def active(self) -> npt.NDArray[np.bool_]: ...
    @property
    def active_flows(self) -> npt.NDArray[np.uint64]: ...
    @property
    def n_dur(self) -> npt.NDArray[np.uint32]: ...
    @property
    def n_fct(self) -> npt.NDArray[np.uint32]: ...
    @property
    def dur_values(self) -> npt.NDArray[np.float64]: ...
    @property
    def fct_values(self) -> npt.NDArray[np.float64]: ...
    @property
    def dur_t_ns(self) -> npt.NDArray[np.uint64]: ...
    @property
    def fct_t_ns(self) -> npt.NDArray[np.uint64]: ...


@dataclass(frozen=True)
class FeatureSpec:
    """The feature definition a policy was trained with (recorded in checkpoint manifests)."""

    version: int = FEATURE_SPEC_VERSION
    names: tuple[str, ...] = FEATURE_NAMES
    tau: float = DEFAULT_TAU
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        check_tau(self.tau)
        if self.k < 1:
            raise ValueError(f"FeatureSpec.k: expected a reservoir size >= 1, got {self.k}")


def check_tau(tau: float) -> None:
    if not tau > 0.0:
        raise ValueError(
            f"tau: expected a decay time constant > 0 seconds (inf allowed), got {tau}"
        )


def compute(
    obs: FrameLike,
    prev_weights: npt.NDArray[np.float64],
    *,
    tau: float = DEFAULT_TAU,
    out: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """The (num_servers, 12) float64 feature matrix of `obs`, written into `out` if given."""
    n = obs.num_servers
    if out is None:
        out = np.empty((n, NUM_FEATURES))
    elif out.shape != (n, NUM_FEATURES) or out.dtype != np.float64:
        raise ValueError(
            f"out: expected a float64 array of shape ({n}, {NUM_FEATURES}), "
            f"got {out.dtype} {out.shape}"
        )
    check_tau(tau)
    kernel(
        np.uint64(obs.ts_ns),
        obs.active_flows,
        obs.n_dur,
        obs.dur_values,
        obs.dur_t_ns,
        obs.n_fct,
        obs.fct_values,
        obs.fct_t_ns,
        prev_weights,
        float(tau),
        out,
    )
    return out


@numba.njit(cache=True, nogil=True)
def kernel(
    ts: np.uint64,
    active_flows: npt.NDArray[np.uint64],
    n_dur: npt.NDArray[np.uint32],
    dur_values: npt.NDArray[np.float64],
    dur_t_ns: npt.NDArray[np.uint64],
    n_fct: npt.NDArray[np.uint32],
    fct_values: npt.NDArray[np.float64],
    fct_t_ns: npt.NDArray[np.uint64],
    prev_weights: npt.NDArray[np.float64],
    tau: float,
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Fill out[i, :] for every server i; raises ValueError on inconsistent shapes."""
    n = out.shape[0]
    k = dur_values.shape[1]
    if (
        active_flows.shape[0] != n
        or n_dur.shape[0] != n
        or n_fct.shape[0] != n
        or prev_weights.shape[0] != n
    ):
        raise ValueError("features: active_flows, n_dur, n_fct, prev_weights need num_servers rows")
    if (
        dur_values.shape[0] != n
        or fct_values.shape[0] != n
        or dur_t_ns.shape[0] != n
        or fct_t_ns.shape[0] != n
        or fct_values.shape[1] != k
        or dur_t_ns.shape[1] != k
        or fct_t_ns.shape[1] != k
    ):
        raise ValueError("features: sample values and timestamps must all be (num_servers, k)")
    for i in range(n):
        if n_dur[i] > k or n_fct[i] > k:
            raise ValueError("features: n_dur and n_fct must be <= k (the sample array width)")
    vbuf = np.empty(k)
    wbuf = np.empty(k)
    ubuf = np.empty((2, k))
    sample = np.empty(_PIVOT_SAMPLE)
    _rows(
        ts, active_flows, n_dur, dur_values, dur_t_ns, n_fct, fct_values, fct_t_ns,
        prev_weights, tau, out, vbuf, wbuf, ubuf, sample,
    )  # fmt: skip


@_helper
def _rows(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    ts, active_flows, n_dur, dur_values, dur_t_ns, n_fct, fct_values, fct_t_ns,
    prev_weights, tau, out, vbuf, wbuf, ubuf, sample,
):  # fmt: skip
    """kernel's loop over the servers, with its scratch buffers (allocates nothing); the
    sample counts are checked already (a raise in this loop slows every row)."""
    n = out.shape[0]
    for i in range(n):
        row = out[i]
        row[0] = np.float64(active_flows[i])
        m_dur = int(n_dur[i])
        m_fct = int(n_fct[i])
        _quantity(
            dur_values[i], dur_t_ns[i], m_dur, ts, tau, row, _COL_DUR, vbuf, wbuf, ubuf, sample
        )
        _quantity(
            fct_values[i], fct_t_ns[i], m_fct, ts, tau, row, _COL_FCT, vbuf, wbuf, ubuf, sample
        )
        row[_COL_PREV] = np.float64(prev_weights[i])


@_inline_helper
def _quantity(
    values: npt.NDArray[np.float64],
    t_ns: npt.NDArray[np.uint64],
    m: int,
    ts: np.uint64,
    tau: float,
    row: npt.NDArray[np.float64],
    col: int,
    vbuf: npt.NDArray[np.float64],
    wbuf: npt.NDArray[np.float64],
    ubuf: npt.NDArray[np.float64],
    sample: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """The five statistics of one quantity's first m samples into row[col : col + 5]."""
    if m == 0:
        for c in range(_STATS):
            row[col + c] = 0.0
        return
    mean, std, dmean, sw = _moments(values, t_ns, m, ts, tau, vbuf, wbuf)
    p90, dp90 = _quantiles(vbuf, wbuf, m, sw, ubuf[0], ubuf[1], sample)
    row[col] = mean
    row[col + 1] = p90
    row[col + 2] = std
    row[col + 3] = dmean
    row[col + 4] = dp90


@_inline_helper
def _moments(
    values: npt.NDArray[np.float64],
    t_ns: npt.NDArray[np.uint64],
    m: int,
    ts: np.uint64,
    tau: float,
    vbuf: npt.NDArray[np.float64],
    wbuf: npt.NDArray[np.float64],
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """(mean, std, decayed mean, weight sum) of m >= 1 samples; copies values and weights."""
    newest = np.uint64(0)
    for j in range(m):
        t = t_ns[j]
        if t > ts:
            t = ts
        if t > newest:
            newest = t
    scale = -1e-9 / tau
    s = 0.0
    sw = 0.0
    swv = 0.0
    last_age = np.uint64(0)
    w = 1.0
    for j in range(m):
        t = t_ns[j]
        if t > newest:
            t = newest
        age = newest - t
        if age > _AGE_CAP_NS:
            age = _AGE_CAP_NS
        v = values[j]
        # Samples often share a timestamp (durations are stamped at the window's end):
        # reuse the previous weight instead of another exp.
        if j == 0 or age != last_age:
            # int64 first: AVX2 has no uint64 -> float64 conversion, and ages are < 2^62.
            w = math.exp(np.float64(np.int64(age)) * scale)
            last_age = age
        vbuf[j] = v
        wbuf[j] = w
        s += v
        sw += w
        swv += w * v
    mean = s / m
    ss = 0.0
    for j in range(m):
        d = vbuf[j] - mean
        ss += d * d
    return mean, math.sqrt(ss / m), swv / sw, sw


@_inline_helper
def _quantiles(
    v: npt.NDArray[np.float64],
    w: npt.NDArray[np.float64],
    m: int,
    sw: float,
    uv: npt.NDArray[np.float64],
    uw: npt.NDArray[np.float64],
    sample: npt.NDArray[np.float64],
) -> tuple[float, float]:  # pragma: no cover - compiled
    """(p90 with unit weights, p90 with weights w) of the first m pairs; may reorder v, w.

    Both quantiles usually sit above the pivot taken from a small sorted
    subsample, so the samples above it are moved out and searched starting
    from the weight below the pivot; otherwise all m samples are searched.
    """
    target_u = _QUANTILE * m
    target_w = _QUANTILE * sw
    p90 = 0.0
    dp90 = 0.0
    found_u = False
    found_w = False
    if m >= 2 * _PIVOT_SAMPLE:
        step = m // _PIVOT_SAMPLE
        for a in range(_PIVOT_SAMPLE):
            x = v[a * step]
            b = a
            while b > 0 and sample[b - 1] > x:
                sample[b] = sample[b - 1]
                b -= 1
            sample[b] = x
        p = sample[_PIVOT_RANK]
        c = 0
        wl = 0.0
        for j in range(m):
            x = v[j]
            uv[c] = x
            uw[c] = w[j]
            above = x > p
            c += above
            wl += 0.0 if above else w[j]
        lower = np.float64(m - c)
        if wl < target_w:
            dp90 = _quantile(uv, uw, c, target_w, False, wl)
            found_w = True
        if lower < target_u:
            p90 = _quantile(uv, uw, c, target_u, True, lower)
            found_u = True
    if not found_w:
        dp90 = _quantile(v, w, m, target_w, False, 0.0)
    if not found_u:
        p90 = _quantile(v, w, m, target_u, True, 0.0)
    return p90, dp90


@_helper
def _quantile(
    v: npt.NDArray[np.float64],
    w: npt.NDArray[np.float64],
    m: int,
    target: float,
    unit: bool,
    below: float,
) -> float:  # pragma: no cover - compiled
    """Smallest v[j] (j < m) at which `below` plus the sorted cumulative weight reaches target.

    Quickselect with three-way partitions, expected O(m); reorders v and w
    together.  Needs below < target.  With unit weights (w ignored, each
    sample weighs 1) and an integer `below` every partial sum is exact.
    """
    lo = 0
    hi = m - 1
    # `below`: weight of the samples known to be smaller than v[lo..hi]; stays < target.
    while lo < hi:
        a = v[lo]
        b = v[(lo + hi) >> 1]
        c = v[hi]
        p = max(min(a, b), min(max(a, b), c))  # median of three
        lt = lo
        i = lo
        gt = hi
        wl = 0.0
        we = 0.0
        while i <= gt:
            x = v[i]
            wi = 1.0 if unit else w[i]
            if x < p:
                v[i], v[lt] = v[lt], x
                w[i], w[lt] = w[lt], w[i]
                wl += wi
                lt += 1
                i += 1
            elif x > p:
                v[i], v[gt] = v[gt], x
                w[i], w[gt] = w[gt], w[i]
                gt -= 1
            else:
                we += wi
                i += 1
        # v[lo:lt] < p, v[lt:gt + 1] == p, v[gt + 1:hi + 1] > p
        if below + wl >= target:
            hi = lt - 1
        elif below + wl + we >= target or gt >= hi:
            # gt >= hi: nothing is larger; only rounding kept the sum below target.
            return p
        else:
            below += wl + we
            lo = gt + 1
    return v[lo]
