"""Actions → per-server weights, shared by the single- and multi-agent environments.

Weights are level × base, where base is the server's static capacity
("capacity", default) or 1 ("uniform", MARLLB's original), and level is:
- continuous: a ∈ [-1, 1] per server, level = spread ** a (default spread 3,
  so levels 1/3..3: with capacities up to 4x apart the weights stay well
  inside the data plane's max weight ratio of 100);
- discrete: one of `levels` per server (default 1.0, 1.5, 2.0, as in MARLLB).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

ACTION_TYPES = ("continuous", "discrete")
FEATURE_HIGH = 1e6
"""Upper bound of the observation spaces (counts and seconds stay far below it)."""
BASES = ("capacity", "uniform")


@dataclass(frozen=True)
class ActionSpec:
    """How an agent's action maps to weights for its servers."""

    kind: str = "continuous"
    levels: tuple[float, ...] = (1.0, 1.5, 2.0)
    spread: float = 3.0
    base: str = "capacity"

    def __post_init__(self) -> None:
        if self.kind not in ACTION_TYPES:
            raise ValueError(
                f"action_type: expected one of {', '.join(ACTION_TYPES)}, got {self.kind!r}"
            )
        if self.base not in BASES:
            raise ValueError(f"weight_base: expected one of {', '.join(BASES)}, got {self.base!r}")
        if not self.levels or not all(np.isfinite(x) and x > 0 for x in self.levels):
            raise ValueError(f"levels: expected positive finite values, got {self.levels}")
        if not (1.0 < self.spread < 10.0):
            raise ValueError(f"spread: expected a value in (1, 10), got {self.spread}")

    def space(self, n: int) -> spaces.Space:
        if self.kind == "continuous":
            return spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        return spaces.MultiDiscrete([len(self.levels)] * n)

    def weights(self, action: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Weights (float64, finite, > 0) for `action` over servers with static capacity `base`."""
        a = np.asarray(action)
        if a.shape != base.shape:
            raise ValueError(f"action: expected shape {base.shape}, got {a.shape}")
        if self.kind == "continuous":
            # Hot path (once per environment step): a few ufunc calls on one fresh array.
            w = a.astype(np.float64)
            # A finite sum means finite values; only an infinite one needs the full check.
            if not math.isfinite(np.add.reduce(w)) and not np.isfinite(w).all():
                raise ValueError(f"action: expected finite values in [-1, 1], got {a}")
            np.minimum(np.maximum(w, -1.0, out=w), 1.0, out=w)  # clip to [-1, 1]
            np.power(self.spread, w, out=w)
        else:
            idx = a if a.dtype.kind in "iu" else a.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(self.levels)):
                raise ValueError(f"action: expected levels in 0..{len(self.levels) - 1}, got {a}")
            w = self._levels[idx]
        if self.base == "capacity":
            w *= base
        return w

    @functools.cached_property
    def _levels(self) -> np.ndarray:
        return np.asarray(self.levels, dtype=np.float64)
