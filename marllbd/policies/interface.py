"""The policy interface: what a policy is given, what it returns, and the rules on weights.

A policy maps the feature matrix of one control interval to per-server
weights; the data-plane rule named by its `dispatch` applies them to new
flows.  The same object runs in `env.step` and in the daemon (DESIGN
contract 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from marllbd.errors import MarllbdError
from marllbd.ipc.layout import DEFAULT_MAX_WEIGHT_RATIO


class PolicyError(MarllbdError, ValueError):
    """A policy that cannot be found, loaded or run as asked."""


_F64 = np.dtype(np.float64)


def _vector(name: str, values: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise PolicyError(f"{name}: expected shape ({n},), got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class PolicyContext:
    """What a policy knows before the first interval; `capacities` is stored read-only."""

    num_servers: int
    capacities: npt.NDArray[np.float64]
    """The operator's static capacity per server (e.g. worker counts), finite and > 0."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_servers < 1:
            raise PolicyError(f"PolicyContext.num_servers: expected >= 1, got {self.num_servers}")
        caps = _vector("PolicyContext.capacities", self.capacities, self.num_servers).copy()
        bad = ~(np.isfinite(caps) & (caps > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise PolicyError(
                f"PolicyContext.capacities[{i}]: expected a finite value > 0, got {caps[i]}"
            )
        caps.setflags(write=False)
        object.__setattr__(self, "capacities", caps)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """What only the simulator knows about the last interval (for oracle-like policies)."""

    utilization: npt.NDArray[np.float64]
    """Busy fraction of each server over the last interval, in [0, 1]."""
    queue: npt.NDArray[np.float64]
    """Flows in service plus backlog per server at the end of the interval."""
    capacities: npt.NDArray[np.float64]
    """The servers' current real capacities, which may drift from the static ones."""

    def __post_init__(self) -> None:
        u, q, c = self.utilization, self.queue, self.capacities
        if (  # the engine builds one a step from float64[n] arrays: no conversion to check
            type(u) is type(q) is type(c) is np.ndarray
            and u.dtype is q.dtype is c.dtype is _F64
            and u.ndim == 1
            and u.shape == q.shape == c.shape
        ):
            return
        util = np.asarray(self.utilization, dtype=np.float64)
        if util.ndim != 1:
            raise PolicyError(f"GroundTruth.utilization: expected a 1-D array, got {util.shape}")
        n = util.shape[0]
        for field in ("utilization", "queue", "capacities"):
            object.__setattr__(
                self, field, _vector(f"GroundTruth.{field}", getattr(self, field), n)
            )


@runtime_checkable
class Policy(Protocol):
    """Maps features to weights.  `decide` returns float64[num_servers], finite and > 0,
    at most the data plane's max weight ratio apart; rules that ignore weights get
    ones or the static capacities."""

    name: str
    dispatch: str
    """The rule that applies the weights: one of marllbd.dataplane.dispatch.DISPATCH_NAMES."""
    needs_ground_truth: bool
    """True if `decide` needs a GroundTruth (only the simulator has one)."""

    def reset(self, ctx: PolicyContext) -> None:
        """Start an episode (or a daemon run) on the servers described by ctx."""
        ...

    def decide(
        self,
        features: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        truth: GroundTruth | None,
    ) -> npt.NDArray[np.float64]:
        """Weights for the next interval from the (num_servers, 12) features of this one."""
        ...


WarmCall = Callable[[npt.NDArray[np.float64], npt.NDArray[np.bool_]], object]


def warm_call(policy: object) -> WarmCall | None:
    """The policy's optional `warm(features, active)`, or None.

    `warm` runs what `decide` would on these inputs and leaves no trace: no state
    changes (a recurrent policy keeps its hidden state), its result is ignored.  The
    daemon calls it on a bounded policy just before a frame is due, so the frame's
    decision does not run on cold caches."""
    warm = getattr(policy, "warm", None)
    return warm if callable(warm) else None


def is_bounded(policy: object) -> bool:
    """True if the policy declares `bounded = True`: its `decide` does a fixed amount of
    array arithmetic, with no I/O, locks or unbounded loops.  The daemon then calls it
    on its event loop; any other policy runs in a worker thread whose overrun it can
    survive (a policy that overruns on the loop is moved to the thread)."""
    return getattr(policy, "bounded", False) is True


def weights_within_ratio(
    weights: npt.ArrayLike, max_ratio: float = DEFAULT_MAX_WEIGHT_RATIO
) -> npt.NDArray[np.float64]:
    """A copy of `weights` with every entry raised to at least max / max_ratio.

    The result passes the data plane's check (max <= min * max_ratio); the
    largest weight is kept, smaller ones (zeros and negatives too) are raised.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise PolicyError(f"weights: expected a non-empty 1-D array, got shape {w.shape}")
    finite = np.isfinite(w)
    if not finite.all():
        i = int(np.argmin(finite))
        raise PolicyError(f"weights[{i}]: expected a finite value, got {w[i]}")
    if not max_ratio >= 1.0:
        raise PolicyError(f"max_ratio: expected >= 1, got {max_ratio}")
    hi = float(w.max())
    if not hi > 0.0:
        raise PolicyError(f"weights: expected at least one weight > 0, got max {hi}")
    lo = hi / max_ratio
    while lo * max_ratio < hi:  # division rounded down: nudge until the check passes
        lo = float(np.nextafter(lo, np.inf))
    return np.maximum(w, lo)
