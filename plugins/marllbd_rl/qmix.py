"""QMIX (Rashid et al., 2018) for cooperating load-balancer agents, read top to bottom.

Roles as in EPyMARL: one recurrent agent network shared by every agent (its id
one-hot in the input), a monotonic mixer whose weights come from hypernetworks
on the global state `env.state()`, a learner (double-Q targets, masked TD loss
over replayed episode windows with burn-in, gradient-norm clipping, target
networks), and ε-greedy action selection.  Then the parts that use them:
the checkpoints (what a daemon serves is marllbd.policies.learned.QMIXPolicy, numpy
only: one LB's agents, decentralised), the seed's `QMIXAgent` API and
`train(config)` (which evaluates with marllbd.training.evaluate).

Action factorisation: an agent sets one weight level per server of its group,
L**G joint actions (81 for 4 servers x 3 levels).  The agent network has one
head of L utilities per server instead, and an agent's utility is the mean
over its servers of q_i(level_i), so its greedy action is the per-server
argmax.  The mean (not the sum) keeps an agent's utility on the same scale
whatever its group size; rows that only pad a smaller group are left out of it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marllbd.envs.actions import ActionSpec
from marllbd.envs.multi import MultiAgentLoadBalanceEnv
from marllbd.features import NUM_FEATURES
from marllbd.policies.learned import Layout, QMIXPolicy
from marllbd.policies.learned import (  # noqa: F401 - the old names of the one loader
    load_qmix as load_policy,
)
from marllbd.policies.learned import (  # noqa: F401
    qmix_from_checkpoint as policy_from_checkpoint,
)
from marllbd.sim.scenario import load_scenario
from marllbd.training import TrainConfig, TrainingError, TrainResult
from marllbd.training import evaluate as evaluation
from marllbd_rl import checkpoint
from marllbd_rl.curves import MetricsLog, Progress, plot_learning_curve
from marllbd_rl.episode_buffer import Batch, EpisodeBuffer

ALGORITHM = "qmix"


# -- hyperparameters ------------------------------------------------------------


@dataclass(frozen=True)
class QMIXConfig:
    """Every QMIX hyperparameter; `train` takes overrides by name (TrainConfig.hyper)."""

    hidden: int = 64
    """Width of the agent network's input layer and GRU."""
    mixing_embed: int = 32
    """Width of the mixer's hidden layer."""
    hypernet_hidden: int = 64
    """Width of the hypernetworks that produce the mixer's weights."""
    lr: float = 5e-4
    """Adam learning rate for the agent network and the mixer together."""
    gamma: float = 0.5
    """Discount per control interval: the fairness of an interval's flows answers the
    weights within one or two intervals, and a longer horizon mostly adds variance."""
    batch_size: int = 16
    """Windows per update."""
    seq_len: int = 24
    """Transitions per window that count in the loss."""
    burn_in: int = 8
    """Transitions before them that only warm up the GRU (the window starts at zero state)."""
    buffer_episodes: int = 200
    """Episodes the replay buffer keeps (oldest dropped first)."""
    warmup_steps: int = 400
    """Environment steps collected before the first update."""
    train_every: int = 4
    """Environment steps (summed over the rollout envs) per gradient update."""
    eps_start: float = 1.0
    """ε of the ε-greedy exploration at step 0 (per server head)."""
    eps_end: float = 0.05
    """ε after the annealing."""
    eps_anneal_steps: int = 5000
    """Environment steps over which ε falls linearly from eps_start to eps_end."""
    target_every: int = 1
    """Updates between target-network updates."""
    target_tau: float = 0.05
    """Target update: target ← (1 − τ) target + τ online; τ = 1 is a hard copy."""
    grad_clip: float = 10.0
    """Largest gradient norm (over all trained parameters) before the step."""
    norm_clip: float = 10.0
    """Normalised features and states are clipped to ± this many standard deviations."""
    levels: tuple[float, ...] = (1.0, 1.5, 2.0)
    """Weight levels per server (the discrete action of one server head)."""
    weight_base: str = "capacity"
    """Weights are level x static capacity ("capacity") or level alone ("uniform")."""
    reward_field: str = "dur_decayed_mean"
    """The feature whose Jain fairness over the servers is the team reward (MARLLB: durations)."""

    def __post_init__(self) -> None:
        positive = ("hidden", "mixing_embed", "hypernet_hidden", "batch_size", "seq_len")
        for name in (*positive, "buffer_episodes", "train_every", "target_every"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"qmix.{name}: expected an integer >= 1, got {getattr(self, name)}"
                )
        for name in ("burn_in", "warmup_steps", "eps_anneal_steps"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"qmix.{name}: expected an integer >= 0, got {getattr(self, name)}"
                )
        if not (0.0 < self.lr < 1.0 and 0.0 <= self.gamma < 1.0):
            raise ValueError(
                f"qmix.lr, qmix.gamma: expected 0 < lr < 1 and 0 <= gamma < 1, "
                f"got {self.lr}, {self.gamma}"
            )
        if not (0.0 <= self.eps_end <= self.eps_start <= 1.0):
            raise ValueError(
                f"qmix.eps_start, qmix.eps_end: expected 0 <= eps_end <= eps_start <= 1, "
                f"got {self.eps_start}, {self.eps_end}"
            )
        if not (0.0 < self.target_tau <= 1.0 and self.grad_clip > 0 and self.norm_clip > 0):
            raise ValueError(
                f"qmix.target_tau, grad_clip, norm_clip: expected 0 < tau <= 1 and positive "
                f"clips, got {self.target_tau}, {self.grad_clip}, {self.norm_clip}"
            )
        ActionSpec(kind="discrete", levels=self.levels, base=self.weight_base)

    def epsilon(self, step: int) -> float:
        """The exploration rate after `step` environment steps."""
        if self.eps_anneal_steps == 0:
            return self.eps_end
        frac = min(step / self.eps_anneal_steps, 1.0)
        return self.eps_start + frac * (self.eps_end - self.eps_start)

    def with_overrides(self, pairs: Iterable[tuple[str, Any]]) -> QMIXConfig:
        """A copy with fields replaced; strings are parsed to the field's type (CLI values)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in pairs:
            if name not in fields:
                raise TrainingError(
                    f"hyperparameter {name!r}: unknown for qmix; known: {', '.join(fields)}"
                )
            default = getattr(self, name)
            try:
                changes[name] = _parse_like(default, value)
            except ValueError:
                raise TrainingError(
                    f"hyperparameter {name}: expected a value like {default!r}, got {value!r}"
                ) from None
        try:
            return dataclasses.replace(self, **changes)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None


def _parse_like(default: Any, value: Any) -> Any:
    if not isinstance(value, str):
        return tuple(value) if isinstance(default, tuple) else value
    if isinstance(default, tuple):
        return tuple(float(x) for x in value.split(","))
    if isinstance(default, str):
        return value
    return type(default)(value)


# -- networks -------------------------------------------------------------------


class RunningNorm(nn.Module):
    """Per-feature running mean and variance (parallel Welford), saved with the network.

    Statistics change only through `update` (with rollout data), never in forward.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, clip: float) -> None:
        super().__init__()
        self.dim, self.clip = dim, clip
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of rows (..., dim) into the statistics."""
        x = x.reshape(-1, self.dim).to(torch.float64)
        n = float(x.shape[0])
        if n == 0:
            return
        b_mean = x.mean(0)
        b_var = x.var(0, unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_(
            (self.var * self.count + b_var * n + delta**2 * self.count * n / total) / total
        )
        self.count.copy_(total)
        self.shift.copy_(self.mean.float())
        self.scale.copy_(torch.rsqrt(self.var + 1e-8).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.shift) * self.scale).clamp(-self.clip, self.clip)


class AgentNetwork(nn.Module):
    """Shared agent: features of its servers + agent one-hot → GRU → L utilities per server."""

    def __init__(
        self, rows: int, num_features: int, n_agents: int, n_levels: int, hidden: int, clip: float
    ) -> None:
        super().__init__()
        self.rows, self.n_levels, self.hidden = rows, n_levels, hidden
        self.norm = RunningNorm(num_features, clip)
        self.fc = nn.Linear(rows * num_features + n_agents, hidden)
        self.gru = nn.GRUCell(hidden, hidden)
        self.head = nn.Linear(hidden, rows * n_levels)

    def forward(
        self, obs: torch.Tensor, agent_id: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (N, T, rows, F), agent_id one-hot (N, A), h (N, H) → q (N, T, rows, L), h_T."""
        n, t = obs.shape[:2]
        x = self.norm(obs).flatten(2)
        x = F.relu(self.fc(torch.cat([x, agent_id.unsqueeze(1).expand(n, t, -1)], dim=2)))
        # A GRU cell stepped in Python: as fast as nn.GRU on CPU for these sizes, and
        # faster for the daemon's single step.
        out = []
        for step in range(t):
            h = self.gru(x[:, step], h)
            out.append(h)
        q = self.head(torch.stack(out, dim=1))
        return q.view(n, t, self.rows, self.n_levels), h


class Mixer(nn.Module):
    """Monotonic mixing: Q_tot = elu(q · |W1(s)| + b1(s)) · |W2(s)| + V(s).

    abs() keeps every mixing weight non-negative, so ∂Q_tot/∂q_a ≥ 0 and each
    agent's greedy action is also greedy for the team (the QMIX condition).
    """

    def __init__(self, n_agents: int, state_dim: int, embed: int, hyper: int, clip: float):
        super().__init__()
        self.n_agents, self.embed = n_agents, embed
        self.norm = RunningNorm(state_dim, clip)
        self.w1 = nn.Sequential(
            nn.Linear(state_dim, hyper), nn.ReLU(), nn.Linear(hyper, embed * n_agents)
        )
        self.b1 = nn.Linear(state_dim, embed)
        self.w2 = nn.Sequential(nn.Linear(state_dim, hyper), nn.ReLU(), nn.Linear(hyper, embed))
        self.v = nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """q (..., A) chosen agent utilities, state (..., S) → Q_tot (...)."""
        lead = q.shape[:-1]
        s = self.norm(state.reshape(-1, state.shape[-1]))
        w1 = self.w1(s).abs().view(-1, self.n_agents, self.embed)
        hidden = F.elu(torch.bmm(q.reshape(-1, 1, self.n_agents), w1) + self.b1(s).unsqueeze(1))
        w2 = self.w2(s).abs().view(-1, self.embed, 1)
        return (torch.bmm(hidden, w2).view(-1) + self.v(s).view(-1)).view(lead)


def agent_utility(q: torch.Tensor, actions: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """Each agent's utility at its own actions: the mean of q_i(actions_i) over its real rows.

    q (..., A, rows, L), actions (..., A, rows) int64, head_mask (A, rows) → (..., A).
    """
    chosen = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return (chosen * head_mask).sum(-1) / head_mask.sum(-1)


def epsilon_greedy(q: torch.Tensor, eps: float, rng: np.random.Generator) -> np.ndarray:
    """Per server head the argmax level, replaced by a uniform level with probability eps."""
    greedy = q.argmax(-1).numpy()
    explore = rng.random(greedy.shape) < eps
    random = rng.integers(0, q.shape[-1], size=greedy.shape)
    return np.where(explore, random, greedy)


# -- learner --------------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    """Network dimensions: recorded in checkpoints and checked on load."""

    n_agents: int
    rows: int
    """Server heads per agent (the largest group)."""
    features: int
    levels: int
    state_dim: int
    hidden: int
    mixing_embed: int
    hypernet_hidden: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class Learner:
    """Online and target agent network and mixer, their optimiser, and the QMIX update."""

    def __init__(self, dims: Dims, config: QMIXConfig, head_mask: np.ndarray) -> None:
        self.dims, self.config = dims, config
        self.agent = AgentNetwork(
            dims.rows, dims.features, dims.n_agents, dims.levels, dims.hidden, config.norm_clip
        )
        self.mixer = Mixer(
            dims.n_agents, dims.state_dim, dims.mixing_embed, dims.hypernet_hidden, config.norm_clip
        )
        self.target_agent = copy.deepcopy(self.agent)
        self.target_mixer = copy.deepcopy(self.mixer)
        for p in (*self.target_agent.parameters(), *self.target_mixer.parameters()):
            p.requires_grad_(False)
        self.params = [*self.agent.parameters(), *self.mixer.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, fused=True)
        self.head_mask = torch.as_tensor(head_mask, dtype=torch.float32)
        self.ids = torch.eye(dims.n_agents)
        self.updates = 0

    def observe(self, obs: np.ndarray, state: np.ndarray) -> None:
        """Update the feature and state statistics with rollout data (…, rows, F) and (…, S)."""
        self.agent.norm.update(torch.from_numpy(obs))
        self.mixer.norm.update(torch.from_numpy(state))

    def _unroll(self, net: AgentNetwork, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, T, A, rows, F) from zero hidden state → q (B, T, A, rows, L)."""
        b, t, a = obs.shape[:3]
        flat = obs.transpose(1, 2).reshape(b * a, t, *obs.shape[3:])
        q, _ = net(flat, self.ids.repeat(b, 1), torch.zeros(b * a, self.dims.hidden))
        return q.view(b, a, t, *q.shape[2:]).transpose(1, 2)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked mean squared TD error of Q_tot against double-Q targets."""
        obs = torch.from_numpy(batch.obs)
        state = torch.from_numpy(batch.state)
        actions = torch.from_numpy(batch.actions)
        reward = torch.from_numpy(batch.reward)
        mask = torch.from_numpy(batch.mask)
        q = self._unroll(self.agent, obs)
        q_tot = self.mixer(agent_utility(q[:, :-1], actions, self.head_mask), state[:, :-1])
        with torch.no_grad():
            # Double Q: the online network picks the next actions, the target network rates them.
            best = q[:, 1:].argmax(-1)
            q_next = agent_utility(
                self._unroll(self.target_agent, obs)[:, 1:], best, self.head_mask
            )
            # Only a real termination stops the bootstrap; a time-limit truncation does not.
            bootstrap = 1.0 - torch.from_numpy(batch.terminated)
            target = reward + self.config.gamma * bootstrap * self.target_mixer(
                q_next, state[:, 1:]
            )
        td = (q_tot - target) * mask
        count = mask.sum().clamp_min(1.0)
        loss = (td**2).sum() / count
        with torch.no_grad():
            stats = {
                "q_tot": float((q_tot * mask).sum() / count),
                "td_abs": float(td.abs().sum() / count),
            }
        return loss, stats

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step (clipped), then the target update when it is due."""
        loss, stats = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.config.target_every == 0:
            self.update_targets()
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), **stats}

    @torch.no_grad()
    def update_targets(self) -> None:
        """Move the targets τ of the way to the online networks; statistics are copied."""
        tau = self.config.target_tau
        for online, target in ((self.agent, self.target_agent), (self.mixer, self.target_mixer)):
            for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                tp.lerp_(p, tau)
            for b, tb in zip(online.buffers(), target.buffers(), strict=True):
                tb.copy_(b)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything a resumed run needs, flat and named for safetensors."""
        out: dict[str, torch.Tensor] = {}
        for prefix, module in self._modules().items():
            out.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        for index, slot in self.optimizer.state_dict()["state"].items():
            out.update({f"optim.{index}.{k}": v for k, v in slot.items()})
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor], where: Path) -> None:
        """Restore from `tensors()` output; a missing or misshapen tensor is a CheckpointError."""
        for prefix, module in self._modules().items():
            _load_module(module, tensors, prefix, where)
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value
        saved = self.optimizer.state_dict()
        self.optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})

    def _modules(self) -> dict[str, nn.Module]:
        return {
            "agent": self.agent,
            "mixer": self.mixer,
            "target_agent": self.target_agent,
            "target_mixer": self.target_mixer,
        }


def _load_module(
    module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, where: Path
) -> None:
    own = module.state_dict()
    for key, value in own.items():
        saved = tensors.get(f"{prefix}.{key}")
        if saved is None or saved.shape != value.shape or saved.dtype != value.dtype:
            got = "missing" if saved is None else f"{saved.dtype} {tuple(saved.shape)}"
            raise checkpoint.CheckpointError(
                f"{where}: tensor {prefix}.{key}: expected {value.dtype} "
                f"{tuple(value.shape)}, got {got}"
            )
    module.load_state_dict({k: tensors[f"{prefix}.{k}"] for k in own})


# -- checkpoints -----------------------------------------------------------------


def save_checkpoint(
    path: Path,
    learner: Learner,
    config: QMIXConfig,
    *,
    seed: int,
    layout: Layout | None,
    scenario: str,
    reward: dict[str, Any],
    progress: dict[str, Any],
) -> Path:
    """A checkpoint (schema format 2) a run resumes from and a daemon serves.

    `reward` and `progress` may leave keys out: reward defaults to Jain of
    config.reward_field, unshaped, scale 1; progress counters to 0, best_fct to null.
    """
    progress = {"steps": 0, "episodes": 0, "updates": learner.updates, **progress}
    best = progress.get("best_fct")
    progress["best_fct"] = best if best is not None and math.isfinite(best) else None
    manifest = {
        **serving_manifest(learner, config, layout),
        "seed": seed,
        "scenario": scenario,
        "reward": {
            "metric": "jain",
            "field": config.reward_field,
            "shaping": "identity",
            "scale": 1.0,
            **reward,
        },
        "progress": progress,
    }
    return checkpoint.save(path, manifest, learner.tensors())


def serving_manifest(learner: Learner, config: QMIXConfig, layout: Layout | None) -> dict[str, Any]:
    """The manifest keys the served policy is built from (and the algorithm's identity)."""
    return {
        "algorithm": ALGORITHM,
        "dims": learner.dims.as_dict(),
        "hyper": dataclasses.asdict(config),
        "action": ActionSpec(
            kind="discrete", levels=config.levels, base=config.weight_base
        ).as_dict(),
        "layout": None if layout is None else layout.to_dict(),
    }


def serving_policy(learner: Learner, config: QMIXConfig, layout: Layout, lb: int) -> QMIXPolicy:
    """LB `lb`'s policy as a checkpoint of `learner` would serve it, from the live network."""
    tensors = {f"agent.{k}": v for k, v in learner.agent.state_dict().items()}
    return QMIXPolicy.from_arrays(
        checkpoint.to_arrays(tensors),
        serving_manifest(learner, config, layout),
        lb,
    )


# -- the seed's API ----------------------------------------------------------------


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
        config: QMIXConfig | None = None,
        seed: int = 0,
        max_episode_len: int = 500,
    ) -> None:
        self.config = config or QMIXConfig()
        self.seed = seed
        self.dims = Dims(
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
            self.learner = Learner(
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
        return epsilon_greedy(q[:, 0], eps, self._rng)[:, 0]

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
        return save_checkpoint(
            Path(path),
            self.learner,
            self.config,
            seed=self.seed,
            layout=None,
            scenario="seed-api",
            reward={},
            progress={"steps": self.steps, "updates": self.learner.updates},
        )

    def load(self, path: str | Path) -> None:
        """Restore networks, optimiser and counters; refuses other algorithms or dimensions."""
        ckpt = checkpoint.load(path, algorithm=ALGORITHM, dims=self.dims.as_dict())
        self.learner.load_tensors(ckpt.tensors, ckpt.path)
        progress = ckpt.manifest.get("progress", {})
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


# -- training ---------------------------------------------------------------------

FIELDS = (
    "step",
    "episode",
    "epsilon",
    "episode_return",
    "fairness",
    "fct_mean",
    "loss",
    "q_tot",
    "grad_norm",
    "eval_fct_mean",
    "eval_fct_p90",
    "steps_per_second",
)
CURVES = ("episode_return", "fairness", "fct_mean", "loss", "eval_fct_mean")


class Rollout:
    """`n` environments stepped in lockstep; one batched agent-network call for all their agents."""

    def __init__(
        self, envs: list[MultiAgentLoadBalanceEnv], learner: Learner, layout: Layout
    ) -> None:
        self.envs, self.learner, self.layout = envs, learner, layout
        n, a = len(envs), len(layout.agents)
        self.ids = learner.ids.repeat(n, 1)
        self.h = torch.zeros(n * a, learner.dims.hidden)

    def reset(self, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """New episodes in every env; zeroes the hidden states. Returns (obs, state)."""
        self.h = torch.zeros_like(self.h)
        obs = [env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)]
        return self._stack(obs), np.stack([env.state() for env in self.envs])

    def act(self, obs: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
        """ε-greedy levels (envs, agents, rows) for obs (envs, agents, rows, F)."""
        n, a, rows, f = obs.shape
        with torch.no_grad():
            q, self.h = self.learner.agent(
                torch.from_numpy(obs).view(n * a, 1, rows, f), self.ids, self.h
            )
        return epsilon_greedy(q[:, 0], eps, rng).reshape(n, a, rows)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, float]:
        """(obs, state, reward, terminated, episode over, mean interval FCT) after `actions`."""
        obs: list[dict[str, np.ndarray]] = []
        rewards: list[float] = []
        terminated: list[bool] = []
        over: list[bool] = []
        fct: list[float] = []
        for env, act in zip(self.envs, actions, strict=True):
            o, r, term, trunc, info = env.step(dict(zip(self.layout.agents, act, strict=True)))
            first = self.layout.agents[0]
            obs.append(o)
            rewards.append(r[first])
            terminated.append(any(term.values()))
            over.append(any(term.values()) or any(trunc.values()))
            fct.extend(i["fct_mean"] for i in info.values())
        if len(set(over)) != 1:
            raise RuntimeError(
                "rollout: environments in lockstep ended their episodes at different steps"
            )
        state = np.stack([env.state() for env in self.envs])
        mean_fct = float(np.nanmean(fct)) if not np.isnan(fct).all() else math.nan
        return (
            self._stack(obs),
            state,
            np.array(rewards, dtype=np.float32),
            np.array(terminated, dtype=np.float32),
            over[0],
            mean_fct,
        )

    def _stack(self, obs: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.stack([np.stack([o[name] for name in self.layout.agents]) for o in obs])


def train(config: TrainConfig) -> TrainResult:
    """Train QMIX on `config.scenario`; writes metrics, a learning curve and checkpoints to out/.

    Episodes run to their end, so a run stops at the first episode end at or past
    config.steps.  A resumed run restores networks, optimiser and counters; its
    replay buffer starts empty.
    """
    cfg = QMIXConfig().with_overrides(config.hyper)
    if config.envs < 1:
        raise TrainingError(f"envs: expected at least one rollout environment, got {config.envs}")
    if not config.eval_seeds or config.eval_every < 1:
        raise TrainingError(
            f"eval_seeds, eval_every: expected at least one held-out seed and a positive "
            f"interval (best checkpoints are chosen by evaluation), got {config.eval_seeds}, "
            f"{config.eval_every}"
        )
    scenario = load_scenario(config.scenario)
    if config.episode_seconds is not None:
        scenario = scenario.replace(duration=config.episode_seconds)
    envs = [
        MultiAgentLoadBalanceEnv(
            scenario,
            action_type="discrete",
            levels=cfg.levels,
            weight_base=cfg.weight_base,
            reward_field=cfg.reward_field,
        )
        for _ in range(config.envs)
    ]
    layout = Layout.of(envs[0])
    rows = envs[0].group_size
    dims = Dims(
        n_agents=len(layout.agents),
        rows=rows,
        features=NUM_FEATURES,
        levels=len(cfg.levels),
        state_dim=int(envs[0].state_space.shape[0]),
        hidden=cfg.hidden,
        mixing_embed=cfg.mixing_embed,
        hypernet_hidden=cfg.hypernet_hidden,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        learner = Learner(dims, cfg, layout.head_mask(rows))
    progress_state: dict[str, Any] = {"steps": 0, "episodes": 0, "updates": 0, "best_fct": math.inf}
    if config.resume is not None:
        ckpt = checkpoint.load(config.resume, algorithm=ALGORITHM, dims=dims.as_dict())
        learner.load_tensors(ckpt.tensors, ckpt.path)
        progress_state.update(ckpt.manifest["progress"])
        if progress_state["best_fct"] is None:  # no evaluation had finished
            progress_state["best_fct"] = math.inf
        learner.updates = int(progress_state["updates"])
    steps, episodes = int(progress_state["steps"]), int(progress_state["episodes"])
    best_fct = float(progress_state["best_fct"])

    out = Path(config.out)
    best_dir, last_dir = out / "checkpoints" / "best", out / "checkpoints" / "last"
    metrics = MetricsLog(out / "metrics.csv", FIELDS)
    rspec = envs[0].reward_spec
    reward = {"metric": rspec.metric, "field": rspec.field, "shaping": rspec.shaping}

    def save(path: Path) -> None:
        progress_state.update(
            steps=steps, episodes=episodes, updates=learner.updates, best_fct=best_fct
        )
        save_checkpoint(
            path,
            learner,
            cfg,
            seed=config.seed,
            layout=layout,
            scenario=scenario.name,
            reward=reward,
            progress=dict(progress_state),
        )

    # Streams depend on the episodes done so far, so a resumed run stays deterministic.
    streams = np.random.SeedSequence([config.seed, episodes]).spawn(3)
    act_rng, env_rng = np.random.default_rng(streams[0]), np.random.default_rng(streams[1])
    max_len = math.ceil(scenario.duration / scenario.control_interval) + 1
    buffer = EpisodeBuffer(
        cfg.buffer_episodes,
        max_len,
        (dims.n_agents, rows, dims.features),
        dims.state_dim,
        seed=int(streams[2].generate_state(1)[0]),
    )
    rollout = Rollout(envs, learner, layout)
    progress = Progress(config.steps, config.progress)
    next_eval = (steps // config.eval_every + 1) * config.eval_every
    start = time.perf_counter()
    stats: dict[str, float] = {}
    eval_fct = (math.nan, math.nan)
    while steps < config.steps:
        obs, state = rollout.reset([int(s) for s in env_rng.integers(0, 2**31 - 1, size=len(envs))])
        ep_obs, ep_state = [obs], [state]
        ep_act: list[np.ndarray] = []
        ep_rew: list[np.ndarray] = []
        ep_term: list[np.ndarray] = []
        fcts: list[float] = []
        over = False
        while not over:
            eps = cfg.epsilon(steps)
            actions = rollout.act(obs, eps, act_rng)
            obs, state, rew, term, over, fct = rollout.step(actions)
            for lst, x in (
                (ep_obs, obs),
                (ep_state, state),
                (ep_act, actions),
                (ep_rew, rew),
                (ep_term, term),
            ):
                lst.append(x)
            fcts.append(fct)
            steps += len(envs)
            due = (steps - cfg.warmup_steps) // cfg.train_every
            while len(buffer) and learner.updates < due:
                stats = learner.update(buffer.sample(cfg.batch_size, cfg.burn_in, cfg.seq_len))
            progress.update(
                steps, ret=float(np.sum(ep_rew) / len(envs)), jain=float(rew.mean()), eps=eps
            )
        all_obs, all_state = np.stack(ep_obs, 1), np.stack(ep_state, 1)
        learner.observe(all_obs, all_state)
        acts, rews, terms = np.stack(ep_act, 1), np.stack(ep_rew, 1), np.stack(ep_term, 1)
        for e in range(len(envs)):
            buffer.add(all_obs[e], all_state[e], acts[e], rews[e], terms[e])
        episodes += len(envs)
        row: dict[str, Any] = {
            "step": steps,
            "episode": episodes,
            "epsilon": cfg.epsilon(steps),
            "episode_return": float(rews.sum(1).mean()),
            "fairness": float(rews.mean()),
            "fct_mean": float(np.nanmean(fcts)) if not np.isnan(fcts).all() else math.nan,
            "steps_per_second": steps / max(time.perf_counter() - start, 1e-9),
            **{k: stats.get(k) for k in ("loss", "q_tot", "grad_norm")},
        }
        if steps >= next_eval or steps >= config.steps:
            next_eval = (steps // config.eval_every + 1) * config.eval_every
            policy = evaluation.PolicySource(  # each LB's agents on the live network
                f"{ALGORITHM} step {steps}",
                lambda lb: serving_policy(learner, cfg, layout, lb),
            )
            (ev,) = evaluation.summary(evaluation.evaluate(scenario, [policy], config.eval_seeds))
            eval_fct = (ev.mean_fct, ev.p90_fct)
            row.update(eval_fct_mean=eval_fct[0], eval_fct_p90=eval_fct[1])
            if eval_fct[0] < best_fct:
                best_fct = eval_fct[0]
                save(best_dir)
            save(last_dir)
        metrics.write(row)
    wall = time.perf_counter() - start
    if not (best_dir / checkpoint.MANIFEST).exists():
        save(best_dir)
    save(last_dir)
    plot_learning_curve(metrics.path, out / "learning_curve.png", "step", CURVES)
    progress.close(
        f"qmix: {steps} steps, {episodes} episodes, {learner.updates} updates in {wall:.0f} s; "
        f"eval FCT mean {eval_fct[0]:.4f} s p90 {eval_fct[1]:.4f} s; best {best_fct:.4f} s"
    )
    return TrainResult(
        best=best_dir, last=last_dir, steps=steps, wall_seconds=wall, metrics_csv=metrics.path
    )
