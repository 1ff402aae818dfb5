"""The original description's per-transition agent APIs over the learners of this package.

    agent = SAC_GRU_Agent(obs_dim=16 * 12, action_dim=16)
    a = agent.select_action(obs); agent.update(obs, a, r, next_obs, done)
    agent.save("checkpoints/sac_gru_best.pt")      # a checkpoint *directory* of that name

    agents = QMIXAgent(num_agents=4, obs_dim=48, action_dim=3)

They drive `sac_gru.Learner` and `qmix.Learner` directly, without an env;
`marllbd.training.Trainer` is the API that trains on the simulator.
Checkpoints are marllbd checkpoints (safetensors + manifest, never a pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from marllbd import checkpoint
from marllbd_rl import qmix as Q
from marllbd_rl import sac_gru as S
from marllbd_rl.replay import EpisodeBuffer, SequenceReplay


def _save(
    path: str | Path,
    algorithm: str,
    seed: int,
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray],
    steps: int,
    updates: int,
) -> Path:
    return checkpoint.save(
        Path(path),
        {
            "algorithm": algorithm,
            "seed": seed,
            "scenario": "",
            **manifest,
            "progress": {"steps": steps, "episodes": 0, "updates": updates, "best_fct": None},
        },
        arrays,
    )


class SAC_GRU_Agent:
    """The seed's interface: select_action / update per transition / save / load.

    `obs` may have any shape with `obs_dim` elements (e.g. the env's (n, 12)
    matrix).  `save("checkpoints/sac_gru_best.pt")` writes a checkpoint
    *directory* of that name (safetensors + manifest, never a pickle).
    """

    def __init__(self, obs_dim: int, action_dim: int, *, seed: int = 0, **hyper: Any) -> None:
        # One env feeds this agent, a transition at a time: training's default of one
        # update per 64 transitions assumes 32 envs' worth of data, so learn 16x more
        # often from each transition unless told otherwise.
        hyper = {"updates_per_step": 0.25, **hyper}
        self.config = S.SacGruConfig.from_pairs(hyper.items())
        self.seed = seed
        self.core = S.Learner(self.config, obs_dim, action_dim, seed)
        self.replay = SequenceReplay(
            1, max(self.config.buffer_steps, self.config.window + 1), obs_dim, action_dim,
            self.config.window, seed,
        )  # fmt: skip
        self.hidden = self.core.initial_state(1)[0]
        self.steps = 0
        self._credit = 0.0
        self._pending: np.ndarray | None = None

    def select_action(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The next action, advancing the recurrent state (reset when an episode ends)."""
        row = np.asarray(obs, dtype=np.float32).reshape(1, -1)
        a, self.hidden = self.core.act(row, self.hidden, deterministic)
        return a[0]

    def update(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        done: bool,
        truncated: bool = False,
    ) -> dict[str, float] | None:
        """Store one transition; train once enough data is stored.  Returns the last losses.

        `done` ends the episode (the GRU state resets); it is a terminal state
        (no bootstrap) unless `truncated` says time ran out.
        """
        row = np.asarray(obs, dtype=np.float32).reshape(-1)
        nxt = np.asarray(next_obs, dtype=np.float32).reshape(-1)
        if self._pending is None or not np.array_equal(self._pending, row):
            self.core.norm.update(row[None])
            self.replay.start(0, row)
        self.replay.add(
            0, np.asarray(action, dtype=np.float32), reward, done and not truncated, nxt
        )
        self.core.norm.update(nxt[None])
        self.core.reward_norm.update(np.array([reward]))
        self._pending = None if done else nxt
        if done:
            self.hidden = self.core.initial_state(1)[0]
        self.steps += 1
        losses = None
        if self.steps >= self.config.learning_starts and self.replay.can_sample:
            self._credit += self.config.updates_per_step
            while self._credit >= 1.0:
                self._credit -= 1.0
                losses = self.core.update(
                    self.replay.sample(
                        self.config.batch_size, self.config.burn_in, bool(self.config.num_levels)
                    )
                )
        return losses

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint directory at `path` (a '.pt' suffix is kept as part of the name)."""
        return _save(
            path,
            S.ALGORITHM,
            self.seed,
            self._manifest(),
            self.core.arrays(),
            self.steps,
            self.core.updates,
        )

    def load(self, path: str | Path) -> None:
        """Restore networks, optimisers, α and normaliser from a checkpoint directory."""
        ckpt = checkpoint.load(path, algorithm=S.ALGORITHM, dims=self._manifest()["dims"])
        self.core.load_arrays(ckpt.arrays, ckpt.path)
        self.steps = int((ckpt.manifest.get("progress") or {}).get("steps", 0))
        self.hidden = self.core.initial_state(1)[0]

    def _manifest(self) -> dict[str, Any]:
        return S.manifest(self.config, self.core.obs_dim, self.core.n)


class QMIXAgent:
    """The seed's QMIX over plain arrays: obs (num_agents, obs_dim) → one action per agent.

    The mixer's state is all agents' observations concatenated (the seed API has
    no env.state()).  `update` gathers the episode; when `done` it stores it and
    runs len(episode) // train_every updates.  `done` means terminated (no
    bootstrap from next_obs) unless `truncated=True` (a time limit: bootstrapped).
    save/load take a checkpoint directory; a '.pt' path (the seed's habit) is
    used as the directory's name, e.g. checkpoints/qmix_best.pt/manifest.json.
    """

    def __init__(
        self,
        num_agents: int,
        obs_dim: int,
        action_dim: int,
        *,
        config: Q.QMIXConfig | None = None,
        seed: int = 0,
        max_episode_len: int = 500,
    ) -> None:
        # One env feeds this agent: training's defaults (one update per 32 env steps, ε
        # annealed over 80 000) assume 32 envs' worth of data, so by default it updates 8x
        # more often per transition and anneals 16x sooner.
        self.config = config or Q.QMIXConfig(train_every=4, eps_anneal_steps=5000)
        self.seed = seed
        self.dims = Q.Dims(
            n_agents=num_agents,
            rows=1,
            features=obs_dim,
            levels=action_dim,
            state_dim=num_agents * obs_dim,
            hidden=self.config.hidden,
            mixing_embed=self.config.mixing_embed,
            hypernet_hidden=self.config.hypernet_hidden,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.learner = Q.Learner(
                self.dims, self.config, np.ones((num_agents, 1), dtype=np.float32)
            )
        streams = np.random.SeedSequence(seed).spawn(2)
        self.buffer = EpisodeBuffer(
            self.config.buffer_episodes,
            max_episode_len,
            (num_agents, 1, obs_dim),
            num_agents * obs_dim,
            seed=int(streams[0].generate_state(1)[0]),
        )
        self._rng = np.random.default_rng(streams[1])
        self._h = torch.zeros(num_agents, self.config.hidden)
        self._episode: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.steps = 0

    def reset(self) -> None:
        """Start a new episode: drop the unfinished one and zero the hidden states."""
        self._episode.clear()
        self._h = torch.zeros_like(self._h)

    def select_actions(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """ε-greedy (greedy with explore=False) action of every agent, int64 (num_agents,)."""
        x = self._obs_tensor(obs)
        with torch.no_grad():
            q, self._h = self.learner.agent(x, self.learner.ids, self._h)
        eps = self.config.epsilon(self.steps) if explore else 0.0
        return Q.epsilon_greedy(q[:, 0], eps, self._rng)[:, 0]

    def update(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        done: bool,
        truncated: bool = False,
    ) -> dict[str, float]:
        """Record a step; at the episode's end store it and train (returns the update's stats)."""
        if len(self._episode) >= self.buffer.max_len:
            raise ValueError(
                f"QMIXAgent: episode longer than max_episode_len={self.buffer.max_len}; "
                "pass a larger max_episode_len"
            )
        a = np.asarray(actions, dtype=np.int64).reshape(self.dims.n_agents)
        self._episode.append((self._obs_array(obs), a, float(reward)))
        self.steps += 1
        if not done:
            return {}
        obs_seq = np.stack([o for o, _, _ in self._episode] + [self._obs_array(next_obs)])
        t = len(self._episode)
        obs_seq = obs_seq.reshape(t + 1, self.dims.n_agents, 1, self.dims.features)
        state = obs_seq.reshape(t + 1, -1)
        terminated = np.zeros(t, dtype=np.float32)
        terminated[-1] = 0.0 if truncated else 1.0
        self.learner.observe(obs_seq, state)
        self.buffer.add(
            obs_seq,
            state,
            np.stack([x for _, x, _ in self._episode])[:, :, None],
            np.array([r for _, _, r in self._episode], dtype=np.float32),
            terminated,
        )
        self.reset()
        stats: dict[str, float] = {}
        if self.steps >= self.config.warmup_steps:
            for _ in range(max(1, t // self.config.train_every)):
                batch = self.buffer.sample(
                    self.config.batch_size, self.config.burn_in, self.config.seq_len
                )
                stats = self.learner.update(batch)
        return stats

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint directory at `path` (a '.pt' suffix is kept as part of the name)."""
        manifest = Q.manifest(self.config, self.dims, None)
        return _save(
            path, Q.ALGORITHM, self.seed, manifest, self.learner.arrays(), self.steps,
            self.learner.updates,
        )  # fmt: skip

    def load(self, path: str | Path) -> None:
        """Restore networks, optimiser and counters; refuses other algorithms or dimensions."""
        ckpt = checkpoint.load(path, algorithm=Q.ALGORITHM, dims=self.dims.as_dict())
        self.learner.load_arrays(ckpt.arrays, ckpt.path)
        progress = ckpt.manifest.get("progress") or {}
        self.steps = int(progress.get("steps", 0))
        self.learner.updates = int(progress.get("updates", 0))
        self.reset()

    def _obs_array(self, obs: np.ndarray) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float32)
        if o.shape != (self.dims.n_agents, self.dims.features):
            raise ValueError(
                f"obs: expected shape ({self.dims.n_agents}, {self.dims.features}), got {o.shape}"
            )
        return o

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._obs_array(obs)).view(
            self.dims.n_agents, 1, 1, self.dims.features
        )
