"""adaptive-sed: SED over server capacities estimated online from the reservoir features.

Static SED needs the operator's capacities to be right; when a server silently
slows down (lost workers, a noisy neighbour) or capacities drift, its weights
are wrong and its flows wait.  Balancers that get no signal from the servers
infer them from what the data plane sees instead: Aquarius (Yao et al., IEEE
TNSM 2022) passively collects flow durations and completion times at the LB
to infer server state, and HLB (Yao et al., "HLB: Toward Load-Aware Load
Balancing", IEEE/ACM ToN 2022) infers each server's occupancy and processing
speed from them, without monitoring or signalling, and filters its estimates
over time (Kalman filtering of server capacity).  This policy does that with
the features alone (no ground truth) and keeps the operator's static capacity
unless the data clearly says otherwise.

The model: a processor-sharing server of capacity c serves each of its n
flows at rate min(c / n, 1) per unit of work, so a flow's completion time is
about θ · max(A / c, 1), θ the fleet's unit-work time (mean work over
per-worker speed, common to all servers) and A the server's concurrency
(active flows, averaged over the interval's two ends).  Over a sliding window
of the last `window` intervals with FCT samples, each weighted by A + 1 (its
completions grow with A):

    G_i = Σ_t w_t fct_mean_t / θ        g_i(c) = Σ_t w_t max(A_t / c, 1)

- θ: the median over servers of Σ w fct / g_i(ĉ_i) at the current estimates,
  so the servers that agree with the model set the scale and a few wrong ones
  do not.
- Evidence against the static capacity C_i: e_i = log(G_i / g_i(C_i)), with a
  standard error from the spread of the intervals' log ratios (at least
  `spread` / sqrt(n), n the effective number of intervals).  Only when
  n >= `min_intervals`, |e_i| > `threshold` and |e_i| > `z` standard errors is
  the capacity refitted: ĉ_i solves g_i(ĉ) = G_i (g falls with c; bisection in
  log c, a fixed number of steps, within C_i / bound .. C_i · bound).  A slower
  server is never fitted above C_i, a faster one never below (an unsaturated
  server is as fast at any c >= A, so "faster" only bounds c from below); a fit
  within `threshold` of C_i is C_i.  Otherwise the target is C_i: the prior.
- A slower server may instead run all its workers slower (a noisy neighbour, a
  `speed` fault): then its flows are slow even unsaturated, and the fit above,
  which explains slowness only by saturation, reads it as a far smaller server and
  starves it (measured: 0.6 for a real 1.5).  The speed reading of the same
  evidence is ĉ = C_i · e^-e_i; a slower server takes the larger of the two.
- Filter: log ĉ_i moves by `smoothing` of the way to its target each interval
  (an exponential filter).  A server with no sample in the window (idle, down,
  or no flow finished) goes back to its prior.

The weights are ĉ normalised to mean 1 and clipped to the data plane's ratio
(weights_within_ratio); everything is fixed-size arithmetic (one compiled kernel
per interval, ~23 µs at 64 servers), so the policy is `bounded`.  On stationary
traffic the test almost never fires and the weights are static SED's.

What it cannot see: a server that gained capacity looks the same as before
until SED loads it past its configured capacity, so gains are found late or
not at all (losses are what hurt the tail).  With several LB nodes each counts
only its own active flows, so A underestimates the concurrency and saturation
is detected later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from marllbd.features import FEATURE_NAMES, NUM_FEATURES
from marllbd.policies.interface import (
    GroundTruth,
    Policy,
    PolicyContext,
    PolicyError,
    weights_within_ratio,
)

_ACTIVE = FEATURE_NAMES.index("active_flows")
_FCT = FEATURE_NAMES.index("fct_mean")
_BISECT_STEPS = 24
"""Bisection steps on log c over C / bound .. C · bound: 2^-24 of that range."""
_TINY = 1e-300

_F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AdaptiveConfig:
    """The estimator's knobs; the defaults were chosen on generated scenarios (docs/design.md)."""

    window: int = 32
    """Control intervals the capacity fit looks back over."""
    threshold: float = 0.3
    """|log(observed / expected FCT)| at the static capacity above which it may move ..."""
    z: float = 3.0
    """... if that is also this many standard errors ..."""
    min_intervals: float = 8.0
    """... over at least this many (effective) intervals with samples."""
    spread: float = 0.5
    """Floor of one interval's log-ratio standard deviation (few intervals underrate it)."""
    bound: float = 8.0
    """The estimate stays within static / bound .. static × bound."""
    smoothing: float = 0.3
    """Filter gain: the share of the way log ĉ moves to its target each interval."""

    def __post_init__(self) -> None:
        if self.window < 2:
            raise PolicyError(f"adaptive-sed window: expected >= 2 intervals, got {self.window}")
        for key in ("threshold", "z", "min_intervals", "spread"):
            if not getattr(self, key) >= 0.0:
                raise PolicyError(f"adaptive-sed {key}: expected >= 0, got {getattr(self, key)}")
        if not self.bound > 1.0:
            raise PolicyError(f"adaptive-sed bound: expected > 1, got {self.bound}")
        if not 0.0 < self.smoothing <= 1.0:
            raise PolicyError(f"adaptive-sed smoothing: expected in (0, 1], got {self.smoothing}")


@dataclass
class _State:
    """What decide() carries from one interval to the next."""

    w: _F64
    """(window, n): each interval's weight A + 1, 0 where the server had no FCT sample."""
    fct: _F64
    """(window, n): fct_mean."""
    conc: _F64
    """(window, n): concurrency A."""
    log_fct: _F64
    """(window, n): log fct_mean where sampled (0 elsewhere), taken once when recorded."""
    log_conc: _F64
    """(window, n): log A (-inf at 0), taken once when recorded."""
    slot: int
    """Row of the window the next interval overwrites."""
    prev_active: _F64
    log_c: _F64
    """The filtered log capacity estimate."""

    def copy(self) -> _State:
        return _State(
            self.w.copy(), self.fct.copy(), self.conc.copy(), self.log_fct.copy(),
            self.log_conc.copy(), self.slot, self.prev_active.copy(), self.log_c.copy(),
        )  # fmt: skip


class AdaptiveSed:
    """SED over capacities estimated from flow completion times (see the module docstring)."""

    name = "adaptive-sed"
    dispatch = "sed"
    needs_ground_truth = False
    bounded = True

    def __init__(self, config: AdaptiveConfig | None = None) -> None:
        self.config = config if config is not None else AdaptiveConfig()
        self._log_prior: _F64 | None = None
        self._state: _State | None = None

    def reset(self, ctx: PolicyContext) -> None:
        n, k = ctx.num_servers, self.config.window
        self._log_prior = np.log(ctx.capacities)
        self._state = _State(
            np.zeros((k, n)), np.zeros((k, n)), np.zeros((k, n)), np.zeros((k, n)),
            np.zeros((k, n)), 0, np.zeros(n), self._log_prior.copy(),
        )  # fmt: skip

    def decide(
        self, features: _F64, active: npt.NDArray[np.bool_], truth: GroundTruth | None
    ) -> _F64:
        state = self._checked(features, active).copy()
        weights = self._step(state, features, active)
        self._state = state
        return weights

    def warm(self, features: _F64, active: npt.NDArray[np.bool_]) -> object:
        """What `decide` computes, on a copy of the state (decide's state is untouched)."""
        return self._step(self._checked(features, active).copy(), features, active)

    @property
    def capacities(self) -> _F64:
        """The current capacity estimates, in the static capacities' units."""
        if self._state is None:
            raise PolicyError(f"policy {self.name!r}: call reset(ctx) before reading capacities")
        return np.exp(self._state.log_c)

    def _checked(self, features: _F64, active: npt.NDArray[np.bool_]) -> _State:
        if self._state is None or self._log_prior is None:
            raise PolicyError(f"policy {self.name!r}: call reset(ctx) before decide()")
        n = self._log_prior.shape[0]
        if np.shape(features) != (n, NUM_FEATURES):
            raise PolicyError(
                f"features: expected shape ({n}, {NUM_FEATURES}), got {np.shape(features)}"
            )
        if np.shape(active) != (n,):
            raise PolicyError(f"active: expected shape ({n},), got {np.shape(active)}")
        return self._state

    def observe(self, features: _F64, active: npt.NDArray[np.bool_]) -> None:
        """Fold one interval into the estimates, as `decide` does, without the weights (for
        readers of `capacities` only: the equivariant policies' capacity hint)."""
        self._record(self._checked(features, active), features, active)

    def _step(self, s: _State, features: _F64, active: npt.NDArray[np.bool_]) -> _F64:
        """Record this interval in s, refit the capacities, return the weights."""
        self._record(s, features, active)
        w = np.exp(s.log_c)
        return weights_within_ratio(w / w.mean())

    def _record(self, s: _State, features: _F64, active: npt.NDArray[np.bool_]) -> None:
        """Record this interval in s and refit its capacities (in place)."""
        assert self._log_prior is not None
        cfg = self.config
        s.slot = _record_and_fit(
            s.w, s.fct, s.conc, s.log_fct, s.log_conc, s.slot, s.prev_active, s.log_c,
            self._log_prior,
            np.ascontiguousarray(features[:, _ACTIVE], dtype=np.float64),
            np.ascontiguousarray(features[:, _FCT], dtype=np.float64),
            np.ascontiguousarray(active, dtype=np.bool_),
            cfg.threshold, cfg.z, cfg.min_intervals, cfg.spread, float(np.log(cfg.bound)),
            cfg.smoothing,
        )  # fmt: skip


# The estimator, compiled: one pass per server over its window column, in the order the
# module docstring gives (numpy's axis-0 sums are sequential too, and numba's exp and log
# are libm's, as numpy's on this path).  _max/_min propagate NaN as np.maximum/np.minimum.


@numba.njit(cache=True, nogil=True, inline="always")
def _max(a: float, b: float) -> float:
    return a if (a >= b or a != a) else b


@numba.njit(cache=True, nogil=True, inline="always")
def _min(a: float, b: float) -> float:
    return a if (a <= b or a != a) else b


@numba.njit(cache=True, nogil=True)
def _load(w: _F64, conc: _F64, i: int, c: float) -> float:
    """g_i(c) = Σ_t w_t max(A_t / c, 1) over server i's window column."""
    g = 0.0
    for t in range(w.shape[0]):
        g += w[t, i] * _max(conc[t, i] / c, 1.0)
    return g


@numba.njit(cache=True, nogil=True)
def _median(x: _F64) -> float:
    """np.median: the middle value, the mean of the two middle ones, NaN if any is NaN."""
    m = x.shape[0]
    for v in x:
        if v != v:
            return np.nan
    y = np.sort(x)
    half = m // 2
    return y[half] if m % 2 else (y[half - 1] + y[half]) / 2.0


@numba.njit(cache=True, nogil=True)
def _solve(w: _F64, conc: _F64, idx: npt.NDArray[np.int64], goal: _F64, wsum: _F64,
           log_prior: _F64, span: float) -> _F64:  # fmt: skip
    """log c with g_i(c) = goal_i for the servers idx, by bisection within log_prior ± span.

    g falls from +inf to Σ w (reached at c >= max A); a goal at or below Σ w is met by
    every c past that point, so the smallest such c is returned (the most a window of
    unsaturated intervals says), the end of the range if none is in it.  The servers
    are bisected together (the inner loop runs across them: independent sums)."""
    m = idx.shape[0]
    lo = np.empty(m)
    hi = np.empty(m)
    top = np.empty(m)
    c = np.empty(m)
    g = np.empty(m)
    for j in range(m):
        i = idx[j]
        lo[j] = log_prior[i] - span
        hi[j] = log_prior[i] + span
        top[j] = _max(goal[j], wsum[i] * (1.0 + 1e-9))
    for _ in range(_BISECT_STEPS):
        for j in range(m):
            c[j] = np.exp(0.5 * (lo[j] + hi[j]))
            g[j] = 0.0
        for t in range(w.shape[0]):
            for j in range(m):
                i = idx[j]
                g[j] += w[t, i] * _max(conc[t, i] / c[j], 1.0)
        for j in range(m):
            mid = 0.5 * (lo[j] + hi[j])
            if g[j] > top[j]:
                lo[j] = mid
            else:
                hi[j] = mid
    return 0.5 * (lo + hi)


@numba.njit(cache=True, nogil=True)
def _record_and_fit(
    w: _F64, fct: _F64, conc: _F64, log_fct: _F64, log_conc: _F64, slot: int,
    prev_active: _F64, log_c: _F64,
    log_prior: _F64, a_raw: _F64, fct_now: _F64, active: npt.NDArray[np.bool_],
    threshold: float, z: float, min_intervals: float, spread: float, span: float,
    smoothing: float,
) -> int:  # fmt: skip
    """One interval of the estimator (module docstring) on the window arrays (window, n),
    in place: record the interval in row `slot`, refit, move log_c; the next slot."""
    k, n = w.shape
    for i in range(n):
        a = a_raw[i]
        if a != a:
            a = 0.0
        elif a == np.inf:
            a = np.finfo(np.float64).max
        elif a == -np.inf:
            a = -np.finfo(np.float64).max
        a = _max(a, 0.0)
        c = 0.5 * (a + prev_active[i])
        prev_active[i] = a
        f = fct_now[i]
        sampled = active[i] and np.isfinite(f) and f > 0.0
        w[slot, i] = c + 1.0 if sampled else 0.0
        fct[slot, i] = f if sampled else 0.0
        conc[slot, i] = c
        log_fct[slot, i] = np.log(f) if sampled else 0.0
        log_conc[slot, i] = np.log(c)
    slot = (slot + 1) % k

    wsum = np.zeros(n)
    observed = np.zeros(n)
    for t in range(k):
        for i in range(n):
            wsum[i] += w[t, i]
            observed[i] += w[t, i] * fct[t, i]
    known = wsum > 0.0
    m = 0
    for i in range(n):
        m += known[i]
    target = log_prior.copy()
    if m >= 2:  # θ needs peers to compare with
        ratios = np.empty(m)
        j = 0
        for i in range(n):
            if known[i]:
                ratios[j] = np.log(observed[i] / _load(w, conc, i, np.exp(log_c[i])))
                j += 1
        theta = np.exp(_median(ratios))
        x = np.empty(k)
        idx = np.empty(n, dtype=np.int64)
        goals = np.empty(n)
        evidences = np.empty(n)
        m_fit = 0
        for i in range(n):
            if not known[i]:
                continue
            # The evidence against the static capacity: log(G / g(C)), its standard error
            # from the spread of the intervals' log ratios, the effective number of intervals.
            # The spread's log ratios are log(fct_t / max(A_t / C, 1)) from the logs kept in
            # the window (log θ, common to all, shifts them without spreading them).
            goal = observed[i] / theta
            cap = np.exp(log_prior[i])
            g = 0.0
            sx = 0.0
            for t in range(k):
                h = _max(conc[t, i] / cap, 1.0)
                g += w[t, i] * h
                lh = _max(log_conc[t, i] - log_prior[i], 0.0)
                x[t] = log_fct[t, i] - lh if w[t, i] > 0.0 else 0.0
                sx += w[t, i] * x[t]
            evidence = np.log(_max(goal, _TINY) / _max(g, _TINY))
            safe = _max(wsum[i], _TINY)
            mu = sx / safe
            sv = 0.0
            s2 = 0.0
            for t in range(k):
                sv += w[t, i] * (x[t] - mu) ** 2
                s2 += w[t, i] ** 2
            n_eff = wsum[i] ** 2 / _max(s2, _TINY)
            se = np.sqrt((sv / safe) / _max(n_eff, 1.0))
            se = _max(se, spread / np.sqrt(_max(n_eff, 1.0)))
            strong = n_eff >= min_intervals and abs(evidence) > threshold and abs(evidence) > z * se
            if strong:
                idx[m_fit] = i
                goals[m_fit] = goal
                evidences[m_fit] = evidence
                m_fit += 1
        fits = _solve(w, conc, idx[:m_fit], goals[:m_fit], wsum, log_prior, span)
        for j in range(m_fit):
            i = idx[j]
            prior = log_prior[i]
            evidence = evidences[j]
            fit = fits[j]
            # A slower server may have lost workers (the fit) or run every worker slower
            # (capacity C e^-evidence, slow even when unsaturated): the larger of the two,
            # so a slow-but-unsaturated server is not read as a tiny one and starved.
            by_speed = _min(_max(prior - evidence, prior - span), prior)
            fit = _max(fit, prior) if evidence < 0.0 else _min(_max(fit, by_speed), prior)
            if abs(fit - prior) < threshold:
                fit = prior
            target[i] = fit
    for i in range(n):
        log_c[i] = log_c[i] + smoothing * (target[i] - log_c[i])
    return slot


def adaptive_sed(arg: str | None = None) -> Policy:
    """SED over capacities estimated online from the reservoir features (no ground truth)."""
    if arg is not None:
        raise PolicyError(f"policy 'adaptive-sed' takes no argument, got adaptive-sed:{arg}")
    return AdaptiveSed()
