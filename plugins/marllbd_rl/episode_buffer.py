"""Episode replay for recurrent QMIX: whole episodes stored, fixed-length windows sampled.

An episode of T transitions keeps T + 1 observations and states (the last one is
the observation after the final step, which a time-limit truncation still
bootstraps from), T joint actions, team rewards and `terminated` flags.  A
sampled window starts at a uniform step s of a uniform stored episode and spans
burn_in + seq_len transitions; the recurrent state is zero at s, so the first
burn_in steps only warm it up and are left out of the loss, except when s = 0
(zero is then the true initial state).  Steps past the episode's end are
padding: zero-filled and masked out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """B windows of W = burn_in + seq_len transitions (numpy; the learner makes tensors)."""

    obs: np.ndarray  # float32 (B, W + 1, agents, rows, features)
    state: np.ndarray  # float32 (B, W + 1, state_dim)
    actions: np.ndarray  # int64 (B, W, agents, rows)
    reward: np.ndarray  # float32 (B, W)
    terminated: np.ndarray  # float32 (B, W): 1 where the episode really ended (no bootstrap)
    mask: np.ndarray  # float32 (B, W): 1 for real transitions that count in the loss


class EpisodeBuffer:
    """A FIFO of up to `capacity` episodes of at most `max_len` transitions each."""

    def __init__(
        self,
        capacity: int,
        max_len: int,
        obs_shape: tuple[int, int, int],
        state_dim: int,
        seed: int,
    ) -> None:
        if capacity < 1 or max_len < 1:
            raise ValueError(
                f"EpisodeBuffer: capacity and max_len must be >= 1, got {capacity}, {max_len}"
            )
        self.capacity = capacity
        self.max_len = max_len
        self.obs_shape = obs_shape
        self.obs = np.zeros((capacity, max_len + 1, *obs_shape), dtype=np.float32)
        self.state = np.zeros((capacity, max_len + 1, state_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, max_len, *obs_shape[:2]), dtype=np.int64)
        self.reward = np.zeros((capacity, max_len), dtype=np.float32)
        self.terminated = np.zeros((capacity, max_len), dtype=np.float32)
        self.length = np.zeros(capacity, dtype=np.int64)
        self.size = 0
        self._next = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        state: np.ndarray,
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Store one episode: obs and state hold T + 1 entries, the others T."""
        t = len(actions)
        if not 1 <= t <= self.max_len:
            raise ValueError(f"episode: expected 1..{self.max_len} transitions, got {t}")
        if len(obs) != t + 1 or len(state) != t + 1 or len(reward) != t or len(terminated) != t:
            raise ValueError(
                f"episode: expected {t + 1} observations and states and {t} rewards and "
                f"terminated flags for {t} actions, got {len(obs)}, {len(state)}, "
                f"{len(reward)}, {len(terminated)}"
            )
        i = self._next
        self.obs[i] = 0.0
        self.state[i] = 0.0
        self.actions[i] = 0
        self.reward[i] = 0.0
        self.terminated[i] = 0.0
        self.obs[i, : t + 1] = obs
        self.state[i, : t + 1] = state
        self.actions[i, :t] = actions
        self.reward[i, :t] = reward
        self.terminated[i, :t] = terminated
        self.length[i] = t
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, burn_in: int, seq_len: int) -> Batch:
        """`batch_size` windows (see the module docstring) drawn with the buffer's own RNG."""
        if self.size == 0:
            raise ValueError("EpisodeBuffer.sample: the buffer holds no episode yet")
        w = burn_in + seq_len
        ep = self._rng.integers(0, self.size, size=batch_size)
        length = self.length[ep]
        start = (self._rng.random(batch_size) * length).astype(np.int64)
        t_obs = start[:, None] + np.arange(w + 1)
        t_act = t_obs[:, :w]
        obs_ok = t_obs <= length[:, None]
        act_ok = t_act < length[:, None]
        # Indices past the stored array are clipped, then zeroed through the validity masks.
        ci_obs = np.minimum(t_obs, self.max_len)
        ci_act = np.minimum(t_act, self.max_len - 1)
        rows = ep[:, None]
        counted = (np.arange(w) >= burn_in)[None, :] | (start == 0)[:, None]
        return Batch(
            obs=self.obs[rows, ci_obs] * obs_ok[:, :, None, None, None],
            state=self.state[rows, ci_obs] * obs_ok[:, :, None],
            actions=self.actions[rows, ci_act] * act_ok[:, :, None, None],
            reward=self.reward[rows, ci_act] * act_ok,
            terminated=self.terminated[rows, ci_act] * act_ok,
            mask=(act_ok & counted).astype(np.float32),
        )
