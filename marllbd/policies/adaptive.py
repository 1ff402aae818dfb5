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
(weights_within_ratio); everything is fixed-size numpy arithmetic, so the
policy is `bounded`.  On stationary traffic the test almost never fires and
the weights are static SED's.

What it cannot see: a server that gained capacity looks the same as before
until SED loads it past its configured capacity, so gains are found late or
not at all (losses are what hurt the tail).  With several LB nodes each counts
only its own active flows, so A underestimates the concurrency and saturation
is detected later.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    slot: int
    """Row of the window the next interval overwrites."""
    prev_active: _F64
    log_c: _F64
    """The filtered log capacity estimate."""

    def copy(self) -> _State:
        return _State(
            self.w.copy(), self.fct.copy(), self.conc.copy(), self.slot,
            self.prev_active.copy(), self.log_c.copy(),
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
            np.zeros((k, n)), np.zeros((k, n)), np.zeros((k, n)), 0, np.zeros(n),
            self._log_prior.copy(),
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

    def _step(self, s: _State, features: _F64, active: npt.NDArray[np.bool_]) -> _F64:
        """Record this interval in s, refit the capacities, return the weights."""
        assert self._log_prior is not None
        cfg = self.config
        log_prior = self._log_prior
        a_now = np.maximum(np.nan_to_num(features[:, _ACTIVE]), 0.0)
        fct = features[:, _FCT]
        conc = 0.5 * (a_now + s.prev_active)
        s.prev_active = a_now
        sampled = np.asarray(active, dtype=bool) & np.isfinite(fct) & (fct > 0.0)
        s.w[s.slot] = np.where(sampled, conc + 1.0, 0.0)
        s.fct[s.slot] = np.where(sampled, fct, 0.0)
        s.conc[s.slot] = conc
        s.slot = (s.slot + 1) % cfg.window

        wsum = s.w.sum(axis=0)
        known = wsum > 0.0
        target = log_prior
        if np.count_nonzero(known) >= 2:  # θ needs peers to compare with
            observed = (s.w * s.fct).sum(axis=0)
            expected = _load(s.w, s.conc, np.exp(s.log_c))
            theta = float(np.exp(np.median(np.log(observed[known] / expected[known]))))
            goal = observed / theta
            evidence, se, n_eff = _evidence(s.w, s.fct, s.conc, theta, log_prior, goal, wsum)
            se = np.maximum(se, cfg.spread / np.sqrt(np.maximum(n_eff, 1.0)))
            strong = (
                known
                & (n_eff >= cfg.min_intervals)
                & (np.abs(evidence) > cfg.threshold)
                & (np.abs(evidence) > cfg.z * se)
            )
            if strong.any():
                fit = _solve(s.w, s.conc, goal, wsum, log_prior, cfg.bound)
                # A slower server may have lost workers (the fit above) or run every
                # worker slower (capacity C e^-evidence, slow even when unsaturated):
                # the larger of the two, so a slow-but-unsaturated server is not read as
                # a tiny one and starved.
                span = float(np.log(cfg.bound))
                by_speed = np.clip(log_prior - evidence, log_prior - span, log_prior)
                fit = np.where(
                    evidence < 0.0,
                    np.maximum(fit, log_prior),
                    np.minimum(np.maximum(fit, by_speed), log_prior),
                )
                fit = np.where(np.abs(fit - log_prior) < cfg.threshold, log_prior, fit)
                target = np.where(strong, fit, log_prior)
        s.log_c = s.log_c + cfg.smoothing * (target - s.log_c)
        w = np.exp(s.log_c)
        return weights_within_ratio(w / w.mean())


def _load(w: _F64, conc: _F64, c: _F64) -> _F64:
    """g(c) = Σ_t w_t max(A_t / c, 1) per server (column)."""
    return (w * np.maximum(conc / c, 1.0)).sum(axis=0)


def _evidence(
    w: _F64, fct: _F64, conc: _F64, theta: float, log_c: _F64, goal: _F64, wsum: _F64
) -> tuple[_F64, _F64, _F64]:
    """Per server: log(G / g(c)) over the window at capacities exp(log_c), its standard
    error from the spread of the intervals' log ratios (weights w), and the effective
    number of intervals (Σw)² / Σw²."""
    c = np.exp(log_c)
    h = np.maximum(conc / c, 1.0)
    ratio = np.log(np.maximum(goal, _TINY) / np.maximum(_load(w, conc, c), _TINY))
    has = w > 0.0
    x = np.where(has, np.log(np.where(has, fct, 1.0) / (theta * h)), 0.0)
    safe = np.maximum(wsum, _TINY)
    mu = (w * x).sum(axis=0) / safe
    var = (w * (x - mu) ** 2).sum(axis=0) / safe
    n_eff = wsum**2 / np.maximum((w**2).sum(axis=0), _TINY)
    return ratio, np.sqrt(var / np.maximum(n_eff, 1.0)), n_eff


def _solve(w: _F64, conc: _F64, goal: _F64, wsum: _F64, log_prior: _F64, bound: float) -> _F64:
    """log c with g(c) = goal per server, by bisection within log_prior ± log bound.

    g falls from +inf to Σ w (reached at c >= max A); a goal at or below Σ w is
    met by every c past that point, so the smallest such c is returned (the most
    a window of unsaturated intervals says), the end of the range if none is in it.
    """
    span = float(np.log(bound))
    lo = log_prior - span
    hi = log_prior + span
    goal = np.maximum(goal, wsum * (1.0 + 1e-9))
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        too_small = _load(w, conc, np.exp(mid)) > goal
        lo = np.where(too_small, mid, lo)
        hi = np.where(too_small, hi, mid)
    return 0.5 * (lo + hi)


def adaptive_sed(arg: str | None = None) -> Policy:
    """SED over capacities estimated online from the reservoir features (no ground truth)."""
    if arg is not None:
        raise PolicyError(f"policy 'adaptive-sed' takes no argument, got adaptive-sed:{arg}")
    return AdaptiveSed()
