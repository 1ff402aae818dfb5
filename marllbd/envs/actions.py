"""The gymnasium side of actions: observation bounds and action spaces.

The action → weights mapping itself is marllbd.policies.actions.ActionSpec,
shared with the learned policies the daemon serves (which must not need gymnasium).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from marllbd import features
from marllbd.policies.actions import ACTION_TYPES, BASES, ActionSpec
from marllbd.sim.scenario import Scenario

__all__ = [
    "ACTION_TYPES",
    "BASES",
    "ActionSpec",
    "feature_bounds",
    "gym_action_space",
    "queue_per_worker_high",
]

_NAMES = features.FEATURE_NAMES
_ACTIVE, _PREV = _NAMES.index("active_flows"), _NAMES.index("prev_weight")
_DUR = [i for i, name in enumerate(_NAMES) if name.startswith("dur_")]  # its 5 statistics
_FCT = [i for i, name in enumerate(_NAMES) if name.startswith("fct_")]


def _max_in_system(sc: Scenario) -> np.ndarray:
    """Per server, the most flows it can hold at once: its largest slot count over the
    run (capacity faults may raise its workers) plus its backlog."""
    workers = np.array([s.workers for s in sc.servers], dtype=np.int64)
    for f in sc.faults:
        if f.kind == "capacity" and f.workers is not None:
            workers[f.server] = max(workers[f.server], f.workers)
    mp = np.array([s.mp_level for s in sc.servers], dtype=np.int64)
    return workers * mp + np.array([s.backlog for s in sc.servers], dtype=np.int64)


def feature_bounds(sc: Scenario, spec: ActionSpec) -> tuple[np.ndarray, np.ndarray]:
    """float32 (low, high) of each of the 12 features (marllbd.features) over an episode
    of scenario sc driven with spec's actions: every feature is >= 0; active flows are at
    most a server's slots plus backlog; a duration sample is a flow's age, at most the
    run's time (duration plus one interval: the last interval may end past it); an FCT
    sample is at most that plus the rtt (a rejected flow's penalty is charged, never
    sampled); the previous weight is the initial one (the static capacity) or one an
    action maps to (spec).  Their statistics (means, quantiles, std) stay within the same
    range.  Each bound is one a run can reach, not a catch-all."""
    low = np.zeros(features.NUM_FEATURES, dtype=np.float32)
    high = np.empty(features.NUM_FEATURES)
    t_max = sc.duration + sc.control_interval
    high[_ACTIVE] = _max_in_system(sc).max()
    high[_DUR] = t_max
    high[_FCT] = t_max + sc.rtt
    capacity = max(s.workers for s in sc.servers)
    level = spec.spread if spec.kind == "continuous" else max(spec.levels)
    high[_PREV] = max(capacity, level * (capacity if spec.base == "capacity" else 1.0))
    # (Rounding to nearest keeps order: a value <= high stays <= high in float32.)
    return low, high.astype(np.float32)


def queue_per_worker_high(sc: Scenario) -> float:
    """The largest flows-in-system per unit of real capacity (workers x speed) a server of
    sc can report: its most flows over the least capacity any fault gives it."""
    least = np.array([float(s.workers) for s in sc.servers])
    slowest = np.ones(len(sc.servers))
    for f in sc.faults:
        if f.kind == "capacity" and f.workers is not None:
            least[f.server] = min(least[f.server], f.workers)
        elif f.kind == "speed" and f.speed is not None:
            slowest[f.server] = min(slowest[f.server], f.speed)
    return float((_max_in_system(sc) / (least * slowest)).max())


def gym_action_space(spec: ActionSpec, n: int) -> spaces.Space:
    """One agent's action space over `n` servers: a box in [-1, 1] or one level per server."""
    if spec.kind == "continuous":
        return spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
    return spaces.MultiDiscrete([len(spec.levels)] * n)
