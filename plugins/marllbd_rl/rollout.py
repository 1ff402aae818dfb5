"""Rollouts: several LoadBalanceEnv instances stepped in lockstep.

`EnvVector` lets a trainer batch one network call over all its simulators.
Measurement is not here: marllbd.training.evaluate is the one evaluation loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from marllbd.envs import LoadBalanceEnv


@dataclass(frozen=True)
class VectorStep:
    """One lockstep step of every env; `obs` is each env's observation before any reset."""

    obs: np.ndarray  # float32 (E, n, 12)
    reward: np.ndarray  # float64 (E,)
    terminated: np.ndarray  # bool (E,)
    truncated: np.ndarray  # bool (E,)
    infos: tuple[dict[str, Any], ...]

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class EnvVector:
    """`count` envs from `make`, seeded once from `seed`; later episodes continue each env's RNG."""

    def __init__(self, make: Callable[[], LoadBalanceEnv], count: int, seed: int) -> None:
        if count < 1:
            raise ValueError(f"envs: expected at least one simulator instance, got {count}")
        self.envs = [make() for _ in range(count)]
        self.seeds = [
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(count)
        ]

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        """First observations of every env, (E, n, 12) float32."""
        return np.stack(
            [env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds, strict=True)]
        )

    def reset_one(self, i: int) -> np.ndarray:
        """Start env i's next episode (its RNG carries on from the last one)."""
        return self.envs[i].reset()[0]

    def step(self, actions: np.ndarray, count: int | None = None) -> VectorStep:
        """Step the first `count` envs (all by default) with `actions` (count, ...)."""
        envs = self.envs if count is None else self.envs[:count]
        results = [env.step(a) for env, a in zip(envs, actions, strict=True)]
        return VectorStep(
            obs=np.stack([r[0] for r in results]),
            reward=np.array([r[1] for r in results]),
            terminated=np.array([r[2] for r in results]),
            truncated=np.array([r[3] for r in results]),
            infos=tuple(r[4] for r in results),
        )
