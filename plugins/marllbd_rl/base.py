"""What every algorithm of this package shares towards marllbd.training.Trainer: the
learner's update counter and arrays, and a manifest that says when the reward was the
user's (`Hooks.reward_fn`: a callable cannot be saved, so the manifest names it "custom")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np


class Learner(Protocol):
    updates: int

    def arrays(self) -> dict[str, np.ndarray]: ...

    def load_arrays(self, arrays: Mapping[str, np.ndarray], where: Path) -> None: ...


L = TypeVar("L", bound=Learner)


class LearnerAlgorithm(Generic[L]):
    """Subclasses set `learner` and `custom_reward` and define `networks_manifest`."""

    learner: L
    custom_reward: bool

    @property
    def updates(self) -> int:
        return self.learner.updates

    @updates.setter
    def updates(self, value: int) -> None:
        self.learner.updates = value

    def arrays(self) -> dict[str, np.ndarray]:
        return self.learner.arrays()

    def load_arrays(self, arrays: Mapping[str, np.ndarray], where: Path) -> None:
        self.learner.load_arrays(arrays, where)

    def networks_manifest(self) -> dict[str, Any]:
        raise NotImplementedError

    def manifest(self) -> dict[str, Any]:
        m = self.networks_manifest()
        if self.custom_reward:
            m["reward"]["metric"] = "custom"
        return m
