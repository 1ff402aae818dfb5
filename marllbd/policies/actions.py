"""Actions → per-server weights: the one mapping the environments train with and the
learned policies serve with (numpy and numba only; the gymnasium spaces are in
marllbd.envs.actions).

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

ACTION_TYPES = ("continuous", "discrete")
BASES = ("capacity", "uniform")
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


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

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint manifest's "action" table."""
        return {
            "type": self.kind,
            "levels": list(self.levels),
            "base": self.base,
            "spread": self.spread,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionSpec:
        """From a manifest's "action" table; KeyError, TypeError or ValueError if it is bad."""
        return cls(
            kind=data["type"],
            levels=tuple(float(x) for x in data["levels"]),
            base=data["base"],
            spread=float(data["spread"]),
        )

    def weights(self, action: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Weights (float64, finite, > 0) for `action` over servers with static capacity `base`."""
        a = np.asarray(action)
        if a.shape != base.shape:
            raise ValueError(f"action: expected shape {base.shape}, got {a.shape}")
        scale = base if self.base == "capacity" else self._ones(base.shape[0])
        if self.kind == "continuous":
            # Hot path (once per environment step): one compiled call checks, clips and
            # raises the spread to the action (libm's pow, within an ulp of numpy's).
            if a.dtype is not _F32 and a.dtype is not _F64:
                a = a.astype(np.float64)  # (two compiled specializations only)
            w = np.empty(a.shape[0])
            if not _unit_levels(a, self.spread, scale, w):
                raise ValueError(f"action: expected finite values in [-1, 1], got {a}")
            return w
        idx = np.ascontiguousarray(a, dtype=np.int64)  # one compiled specialization
        w = np.empty(idx.shape[0])
        if not _pick_levels(idx, self._levels, scale, w):
            raise ValueError(f"action: expected levels in 0..{len(self.levels) - 1}, got {a}")
        return w

    @functools.cache  # noqa: B019 - a few sizes per spec
    def _ones(self, n: int) -> np.ndarray:
        return np.ones(n)

    @functools.cached_property
    def _levels(self) -> np.ndarray:
        return np.asarray(self.levels, dtype=np.float64)


@numba.njit(cache=True)
def _unit_levels(
    a: np.ndarray, spread: float, scale: np.ndarray, out: np.ndarray
) -> bool:  # pragma: no cover - compiled
    """out[i] = spread ** clip(a[i], -1, 1) * scale[i]; False if a value is not finite."""
    for i in range(a.shape[0]):
        x = np.float64(a[i])
        if not math.isfinite(x):
            return False
        out[i] = spread ** min(max(x, -1.0), 1.0) * scale[i]
    return True


@numba.njit(cache=True)
def _pick_levels(
    idx: np.ndarray, levels: np.ndarray, scale: np.ndarray, out: np.ndarray
) -> bool:  # pragma: no cover - compiled
    """out[i] = levels[idx[i]] * scale[i]; False if an index is out of range."""
    for i in range(idx.shape[0]):
        j = idx[i]
        if j < 0 or j >= levels.shape[0]:
            return False
        out[i] = levels[j] * scale[i]
    return True
