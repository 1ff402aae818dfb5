"""The reward: a fairness metric, shaped, over one per-server feature."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from marllbd import fairness
from marllbd.features import FEATURE_NAMES


@dataclass(frozen=True)
class RewardSpec:
    """reward = shape(metric(features[:, field])); default Jain of the decayed mean duration."""

    metric: str = "jain"
    field: str = "dur_decayed_mean"
    shaping: str = "identity"

    def __post_init__(self) -> None:
        fairness.metric(self.metric)  # raises naming the valid metrics
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
    def _higher_is_better(self) -> bool:
        return fairness.metric(self.metric).higher_is_better

    def __call__(self, features: np.ndarray) -> float:
        # Features are finite and non-negative by construction: skip the input checks
        # of fairness.reward (hot path).  Jain, the default, in closed form: (Σx)² / (n Σx²),
        # 1 for an all-zero vector as in marllbd.fairness.
        x = features[:, self.column]
        if self.metric == "jain":
            sq = float(x.dot(x))  # the same BLAS dot as x @ x, with less call overhead
            value = 1.0 if sq == 0.0 else float(np.add.reduce(x)) ** 2 / (x.shape[0] * sq)
        else:
            value = float(fairness.metric(self.metric).kernel(x[None, :])[0])
        if self.shaping == "identity" and math.isfinite(value):
            # fairness.shape's identity, without its checks
            return value if self._higher_is_better else -value
        return fairness.shape(value, self.shaping, self.metric)
