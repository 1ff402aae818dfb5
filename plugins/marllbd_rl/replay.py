"""Replay for the recurrent learners: windows of transitions with burn-in, never crossing episodes.

`SequenceReplay` (SAC-GRU) keeps one ring of observation rows per rollout
stream and samples windows of burn_in + seq_len transitions inside one
episode.  `EpisodeBuffer` (QMIX) keeps whole episodes and samples windows
that may run past an episode's end as masked padding.

EpisodeBuffer: an episode of T transitions keeps T + 1 observations and states (the last one is
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
import torch


@dataclass(frozen=True)
class EpisodeBatch:
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

    def sample(self, batch_size: int, burn_in: int, seq_len: int) -> EpisodeBatch:
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
        return EpisodeBatch(
            obs=self.obs[rows, ci_obs] * obs_ok[:, :, None, None, None],
            state=self.state[rows, ci_obs] * obs_ok[:, :, None],
            actions=self.actions[rows, ci_act] * act_ok[:, :, None, None],
            reward=self.reward[rows, ci_act] * act_ok,
            terminated=self.terminated[rows, ci_act] * act_ok,
            mask=(act_ok & counted).astype(np.float32),
        )


class EpisodeBuckets:
    """Episodes of several layouts (QMIX arch 'equivariant' on a family): an EpisodeBuffer
    per (agents, rows, columns, state size, length), created by the first such episode;
    a batch comes from one bucket, drawn in proportion to the episodes each holds.  Up to
    `capacity` episodes in all: past it the oldest bucket goes first (a family's samples
    mostly have layouts of their own, so this is first in, first out by sample)."""

    def __init__(self, capacity: int, seed: int) -> None:
        if capacity < 1:
            raise ValueError(f"EpisodeBuckets: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.buckets: dict[tuple[int, ...], EpisodeBuffer] = {}
        self._seeds = np.random.SeedSequence(seed)
        self._rng = np.random.default_rng(self._seeds.spawn(1)[0])

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def add(
        self,
        obs: np.ndarray,
        state: np.ndarray,
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Store one episode (EpisodeBuffer.add) in its layout's bucket."""
        t = len(actions)
        key = (*obs.shape[1:], state.shape[-1], t)
        if key not in self.buckets:
            child = int(self._seeds.spawn(1)[0].generate_state(1)[0])
            self.buckets[key] = EpisodeBuffer(self.capacity, t, obs.shape[1:], key[3], child)
        self.buckets[key].add(obs, state, actions, reward, terminated)
        while len(self) > self.capacity and len(self.buckets) > 1:
            del self.buckets[next(iter(self.buckets))]

    def sample(self, batch_size: int, burn_in: int, seq_len: int) -> EpisodeBatch:
        """`batch_size` windows of one bucket (EpisodeBuffer.sample)."""
        if not self.buckets:
            raise ValueError("EpisodeBuckets.sample: no episode stored yet")
        buckets = list(self.buckets.values())
        sizes = np.array([len(b) for b in buckets], dtype=np.float64)
        pick = buckets[int(self._rng.choice(len(buckets), p=sizes / sizes.sum()))]
        return pick.sample(batch_size, burn_in, seq_len)


# -- sequence replay ------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceBatch:
    """Windows of W = burn_in + seq_len transitions: W + 1 observations each."""

    obs: torch.Tensor  # (B, W + 1, D) raw features
    action: torch.Tensor  # (B, W, n): float for continuous, int64 for discrete
    reward: torch.Tensor  # (B, W)
    terminated: torch.Tensor  # (B, W): 1.0 where the transition ended in a terminal state
    mask: torch.Tensor  # (B, W): 0 during burn-in, 1 where the loss counts


class SequenceReplay:
    """One ring buffer of observation rows per simulator; windows never cross episodes.

    A row holds an observation and, once the next step is known, the action
    taken there and its reward.  A window of W transitions is valid iff its
    first W rows all have an action, and that alone keeps it inside one
    episode and in stream order: a row gets an action only when its successor
    in the same episode is written to the next slot; an episode's last row
    (and a stream's newest) never has one; and the ring overwrites slots in
    order, so a slot whose row still has its action still precedes its successor.
    """

    def __init__(
        self, streams: int, capacity: int, obs_dim: int, action_dim: int, window: int, seed: int
    ) -> None:
        if capacity < window + 1:
            raise ValueError(
                f"buffer_steps: each of the {streams} streams needs at least {window + 1} rows, "
                f"got {capacity}"
            )
        self.window, self.capacity = window, capacity
        self.obs = np.zeros((streams, capacity, obs_dim), dtype=np.float32)
        self.action = np.zeros((streams, capacity, action_dim), dtype=np.float32)
        self.reward = np.zeros((streams, capacity), dtype=np.float32)
        self.terminated = np.zeros((streams, capacity), dtype=bool)
        self.has_action = np.zeros((streams, capacity), dtype=bool)
        self.rows = np.zeros(streams, dtype=np.int64)
        self.episode_rows = np.zeros(streams, dtype=np.int64)
        self.longest = 0
        self.rng = np.random.default_rng(seed)

    def start(self, s: int, obs: np.ndarray) -> None:
        """Begin a new episode in stream s with its first observation."""
        self.episode_rows[s] = 0
        self._write(s, obs)

    def add(
        self, s: int, action: np.ndarray, reward: float, terminated: bool, next_obs: np.ndarray
    ) -> None:
        """Attach the transition to stream s's newest row and append the next observation."""
        if self.rows[s] == 0:
            raise RuntimeError(f"replay stream {s}: call start() before add()")
        j = (self.rows[s] - 1) % self.capacity
        self.action[s, j] = action
        self.reward[s, j] = reward
        self.terminated[s, j] = terminated
        self.has_action[s, j] = True
        self._write(s, next_obs)

    def _write(self, s: int, obs: np.ndarray) -> None:
        j = self.rows[s] % self.capacity
        self.obs[s, j] = np.asarray(obs, dtype=np.float32).reshape(-1)
        self.has_action[s, j] = False
        self.rows[s] += 1
        self.episode_rows[s] += 1
        self.longest = max(self.longest, int(self.episode_rows[s]))

    @property
    def can_sample(self) -> bool:
        """Some stored episode is long enough for one window."""
        return self.longest >= self.window + 1

    def sample(self, batch_size: int, burn_in: int, discrete: bool) -> SequenceBatch:
        """`batch_size` uniformly drawn valid windows (rejection sampling over start rows)."""
        if not self.can_sample:
            raise RuntimeError(
                f"replay: no episode has {self.window + 1} observations yet; "
                "episodes must be longer than burn_in + seq_len steps"
            )
        w = self.window
        offsets = np.arange(w + 1)
        chosen_s: list[np.ndarray] = []
        chosen_j: list[np.ndarray] = []
        got = 0
        for _ in range(1000):
            s = self.rng.integers(0, self.obs.shape[0], size=4 * batch_size)
            filled = np.minimum(self.rows[s], self.capacity)
            j0 = (self.rng.random(4 * batch_size) * filled).astype(np.int64)
            idx = (j0[:, None] + offsets) % self.capacity
            ok = self.has_action[s[:, None], idx[:, :w]].all(1)
            chosen_s.append(s[ok])
            chosen_j.append(idx[ok])
            got += int(ok.sum())
            if got >= batch_size:
                break
        else:
            raise RuntimeError("replay: could not find valid windows; is the buffer too small?")
        ss = np.concatenate(chosen_s)[:batch_size]
        jj = np.concatenate(chosen_j)[:batch_size]
        act = torch.from_numpy(self.action[ss[:, None], jj[:, :w]])
        mask = torch.ones(batch_size, w)
        mask[:, :burn_in] = 0.0
        return SequenceBatch(
            obs=torch.from_numpy(self.obs[ss[:, None], jj]),
            action=act.long() if discrete else act,
            reward=torch.from_numpy(self.reward[ss[:, None], jj[:, :w]]),
            terminated=torch.from_numpy(self.terminated[ss[:, None], jj[:, :w]]).float(),
            mask=mask,
        )
