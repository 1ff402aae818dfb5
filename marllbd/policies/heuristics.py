"""The built-in heuristic policies, each registered as a `marllbd.policies` entry point.

Static ones return fixed weights (ones, or proportional to the static
capacities, normalised to mean 1) and leave the work to their dispatch rule.
`active-wcmp` re-weights every interval from the simulator's ground truth,
`gsq` names the simulator's global shortest-queue oracle, and `prequal-w`
puts another policy's weights on top of Prequal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from marllbd.policies.interface import (
    GroundTruth,
    Policy,
    PolicyContext,
    PolicyError,
    is_bounded,
    warm_call,
    weights_within_ratio,
)

ACTIVE_WCMP_FLOOR = 0.01
"""active-wcmp never gives a server less than this fraction of its real capacity."""


def _mean_one(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return x / x.mean()


class StaticWeights:
    """Fixed weights for a dispatch rule: ones, or proportional to the static capacities."""

    def __init__(
        self, name: str, dispatch: str, *, by_capacity: bool, needs_ground_truth: bool = False
    ):
        self.name = name
        self.dispatch = dispatch
        self.needs_ground_truth = needs_ground_truth
        self.bounded = True
        self._by_capacity = by_capacity
        self._weights: npt.NDArray[np.float64] | None = None

    def reset(self, ctx: PolicyContext) -> None:
        if self._by_capacity:
            self._weights = weights_within_ratio(_mean_one(ctx.capacities))
        else:
            self._weights = np.ones(ctx.num_servers)

    def decide(
        self,
        features: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        truth: GroundTruth | None,
    ) -> npt.NDArray[np.float64]:
        if self._weights is None:
            raise PolicyError(f"policy {self.name!r}: call reset(ctx) before decide()")
        return self._weights.copy()

    def warm(self, features: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]) -> object:
        """`decide` keeps no state, so warming is deciding."""
        return self.decide(features, active, None)


class ActiveWcmp:
    """WCMP re-weighted each interval from ground truth: real capacity × idle fraction.

    w_i ∝ capacity_i × max(1 − utilization_i, ACTIVE_WCMP_FLOOR) with the
    current real capacities, so weights stay > 0; then clipped to the data
    plane's max weight ratio (100), since real capacities may differ more.
    """

    name = "active-wcmp"
    dispatch = "wcmp"
    needs_ground_truth = True
    bounded = True

    def __init__(self) -> None:
        self._n: int | None = None

    def reset(self, ctx: PolicyContext) -> None:
        self._n = ctx.num_servers

    def decide(
        self,
        features: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        truth: GroundTruth | None,
    ) -> npt.NDArray[np.float64]:
        if self._n is None:
            raise PolicyError(f"policy {self.name!r}: call reset(ctx) before decide()")
        if truth is None:
            raise PolicyError(
                f"policy {self.name!r} needs ground truth (GroundTruth), got None: "
                "it runs only in the simulator"
            )
        if truth.utilization.shape != (self._n,):
            raise PolicyError(
                f"GroundTruth.utilization: expected shape ({self._n},), "
                f"got {truth.utilization.shape}"
            )
        idle = np.maximum(1.0 - np.clip(truth.utilization, 0.0, 1.0), ACTIVE_WCMP_FLOOR)
        w = np.maximum(truth.capacities, 0.0) * idle
        return weights_within_ratio(w)


def _no_arg(name: str, arg: str | None) -> None:
    if arg is not None:
        raise PolicyError(f"policy {name!r} takes no argument, got {name}:{arg}")


def _static(
    name: str, by_capacity: bool, doc: str, needs_ground_truth: bool = False
) -> Callable[[str | None], Policy]:
    """The entry-point factory of a StaticWeights policy (no argument)."""

    def factory(arg: str | None = None) -> Policy:
        _no_arg(name, arg)
        return StaticWeights(
            name, name, by_capacity=by_capacity, needs_ground_truth=needs_ground_truth
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return factory


ecmp = _static("ecmp", False, "Maglev consistent hashing; weights ignored (ones).")
wcmp = _static("wcmp", True, "Weighted random over static capacity weights.")
lsq = _static("lsq", False, "Least active flows; weights ignored (ones).")
sed = _static(
    "sed", True, "Shortest expected delay over static capacity weights (the default fallback)."
)
lsq2 = _static("lsq2", False, "Power of two choices by active flows; weights ignored (ones).")
sed2 = _static("sed2", True, "Power of two choices by SED score over static capacity weights.")
peak_ewma = _static(
    "peak-ewma",
    True,
    "Power of two choices by (active flows + 1) × a peak-sensitive EWMA of each server's "
    "recent flow completion times, over static capacity weights: the P2C least-loaded "
    "balancer of Twitter's Finagle and Linkerd (Finagle's PeakEwma; marllbd.dataplane."
    "dispatch.peak_ewma_pick).",
)
prequal = _static(
    "prequal",
    True,
    "Prequal's hot-cold lexicographic rule (Wydrowski et al., \"Load is not what you "
    'should balance: Introducing Prequal", NSDI 2024, Google / YouTube): each LB node '
    "picks from a pool of stale probes of the servers' requests in flight and latency "
    "(marllbd.dataplane.dispatch.prequal_pick); the weights (static capacities) play no part.",
)
gsq = _static(
    "gsq",
    True,
    "The simulator's global shortest-queue oracle; returns static capacity weights.",
    needs_ground_truth=True,
)


def active_wcmp(arg: str | None = None) -> Policy:
    """WCMP with weights from the simulator's ground truth each interval."""
    _no_arg("active-wcmp", arg)
    return ActiveWcmp()


class PrequalScaled:
    """Prequal with another policy's weights scaling its scores (the `prequal-w` rule).

    Each interval the inner policy decides as it would for SED; the weights written are
    its weights over the configured capacities, normalised to mean 1 (the inner policy's
    correction of the static capacities), and the prequal-w rule divides each probe's
    latency by its server's weight.  Without an inner policy the weights are ones, which
    picks exactly as `prequal` does; `prequal-w:sed` is the same.  Prequal's probes
    already carry each server's latency, so an inner policy that tracks capacity counts
    a capacity change twice; what it can add is what its own features see and the
    probes do not (their staleness, the other LBs' recent picks)."""

    dispatch = "prequal-w"

    def __init__(self, inner: Policy | None) -> None:
        self._inner = inner
        self.name = "prequal-w" if inner is None else f"prequal-w:{inner.name}"
        self.needs_ground_truth = inner is not None and inner.needs_ground_truth
        self.bounded = inner is None or is_bounded(inner)
        self._caps: npt.NDArray[np.float64] | None = None

    def reset(self, ctx: PolicyContext) -> None:
        self._caps = np.asarray(ctx.capacities, dtype=np.float64).copy()
        if self._inner is not None:
            self._inner.reset(ctx)

    def _scale(self, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        assert self._caps is not None
        return weights_within_ratio(_mean_one(np.asarray(weights, dtype=np.float64) / self._caps))

    def decide(
        self,
        features: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        truth: GroundTruth | None,
    ) -> npt.NDArray[np.float64]:
        if self._caps is None:
            raise PolicyError(f"policy {self.name!r}: call reset(ctx) before decide()")
        if self._inner is None:
            return np.ones(len(self._caps))
        return self._scale(self._inner.decide(features, active, truth))

    def warm(self, features: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]) -> object:
        """The inner policy's warm (no state changes), or deciding when it keeps none."""
        if self._inner is None:
            return self.decide(features, active, None)
        warm = warm_call(self._inner)
        return None if warm is None else warm(features, active)


def prequal_w(arg: str | None = None, lb: int | None = None) -> Policy:
    """Prequal whose scores another policy's weights scale: `prequal-w:POLICY` (e.g.
    `prequal-w:sac-gru:PATH`); bare `prequal-w` is Prequal (weights all ones)."""
    if arg is None:
        return PrequalScaled(None)
    from marllbd.policies import registry

    if arg.partition(":")[0] == "prequal-w":
        raise PolicyError("policy 'prequal-w': its inner policy cannot be prequal-w")
    inner = registry.load(arg, lb=lb)
    if inner.dispatch != "sed":
        raise PolicyError(
            f"policy 'prequal-w': inner policy {arg!r} applies its weights with "
            f"{inner.dispatch!r}; expected a policy whose weights are for sed"
        )
    return PrequalScaled(inner)
