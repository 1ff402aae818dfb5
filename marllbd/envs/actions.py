"""The gymnasium side of actions: observation bound and action spaces.

The action → weights mapping itself is marllbd.policies.actions.ActionSpec,
shared with the learned policies the daemon serves (which must not need gymnasium).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from marllbd.policies.actions import ACTION_TYPES, BASES, ActionSpec

__all__ = ["ACTION_TYPES", "BASES", "FEATURE_HIGH", "ActionSpec", "gym_action_space"]

FEATURE_HIGH = 1e6
"""Upper bound of the observation spaces (counts and seconds stay far below it)."""


def gym_action_space(spec: ActionSpec, n: int) -> spaces.Space:
    """One agent's action space over `n` servers: a box in [-1, 1] or one level per server."""
    if spec.kind == "continuous":
        return spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
    return spaces.MultiDiscrete([len(spec.levels)] * n)
