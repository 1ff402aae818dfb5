"""The reward: a fairness metric, shaped, over one per-server feature."""

from __future__ import annotations

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

    @property
    def column(self) -> int:
        return FEATURE_NAMES.index(self.field)

    def __call__(self, features: np.ndarray) -> float:
        # Features are finite and non-negative by construction: skip the input checks
        # of fairness.reward and run the metric's row kernel directly (hot path).
        value = float(fairness.metric(self.metric).kernel(features[None, :, self.column])[0])
        return fairness.shape(value, self.shaping, self.metric)
