"""What every algorithm of this package shares towards marllbd.training.Trainer: the
learner's update counter and arrays, and a manifest that says when the reward was the
user's (`Hooks.reward_fn`: a callable cannot be saved, so the manifest names it "custom")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

_side: ThreadPoolExecutor | None = None


def side_thread() -> ThreadPoolExecutor:
    """The process's one worker thread on which a learner's update runs a pass that does
    not depend on the one it runs itself (torch releases the GIL inside its ops and the
    backward pass, so the two use both cores), for callers whose torch runs one thread.
    Created on first use; a forked child makes its own.

    The worker sets one torch thread for itself: OpenMP's thread count is per thread, and
    a new thread's default (the core count) would let MKL split a matrix product
    differently from the caller's, changing the last bits of the result."""
    global _side
    if _side is None:
        import torch

        _side = ThreadPoolExecutor(
            1, thread_name_prefix="marllbd-update", initializer=torch.set_num_threads,
            initargs=(1,),
        )  # fmt: skip
    return _side


def splits_updates(update_threads: int, torch_threads: int) -> bool:
    """Whether a learner's update runs passes on `side_thread`: asked for two threads,
    with one torch thread (several torch threads have the cores already in their
    intra-op pool, and a matrix product split over them could differ between the two
    threads' calls).  Its rollout envs then step on one thread: numba's OpenMP workers
    would spin on the second core into the update."""
    return update_threads > 1 and torch_threads == 1


def update_side_thread(update_threads: int, torch_threads: int) -> ThreadPoolExecutor | None:
    """`side_thread` for an update that splits (splits_updates, and torch runs one thread
    now), else None: the update then runs its passes in turn."""
    import torch

    if splits_updates(update_threads, torch_threads) and torch.get_num_threads() == 1:
        return side_thread()
    return None


def _forget_side_thread() -> None:
    global _side
    _side = None


os.register_at_fork(after_in_child=_forget_side_thread)


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
