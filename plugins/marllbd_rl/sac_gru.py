"""SAC-GRU: soft actor-critic with recurrent networks for one load balancer (LoadBalanceEnv).

Reads top to bottom: hyperparameters, feature normalisation, networks,
sequence replay, losses and update, checkpoints, the training loop and the
seed's `SAC_GRU_Agent` API.  The served policy (numpy only) is
marllbd.policies.learned.SacGruPolicy, built from these networks' arrays.

Design, briefly:
- Input per step: the (num_servers, 12) feature matrix, flattened, passed
  through log1p and standardised with running statistics kept in the
  networks' checkpoint (features are raw seconds and counts).  Rewards are
  standardised the same way (without log1p) before the TD targets.
- Actor and twin critics each run their own GRU over the observations.
  Continuous actions are a tanh-squashed Gaussian per server; discrete
  actions a categorical per server over the levels, with per-server Q heads
  factorised as Q(s, a) = mean_i q_i(s, a_i).
- The entropy term weighs the *mean per-server* entropy (α is tuned so that
  it tracks `target_entropy` per server), so α means the same for any n.
- Training samples windows of burn_in + seq_len transitions inside one
  episode; the GRU state starts at zero at the window start, the first
  `burn_in` steps only warm it (no loss).  Rollouts zero an env's state when
  its episode ends.
- The actor starts with its mode at the neutral action (a = 0, or level 1.0):
  with weight_base "capacity" that is SED with capacity weights, so the
  policy only has to learn deviations from a strong heuristic.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from marllbd import fairness
from marllbd.envs import LoadBalanceEnv
from marllbd.envs.actions import ActionSpec
from marllbd.features import FEATURE_NAMES, NUM_FEATURES
from marllbd.policies.learned import SacGruPolicy
from marllbd.policies.learned import (  # noqa: F401 - the old name of the one loader
    load_sac_gru as load_policy,
)
from marllbd.sim.scenario import Scenario, load_scenario
from marllbd.training import TrainConfig, TrainingError, TrainResult
from marllbd.training import evaluate as evaluation
from marllbd_rl import checkpoint
from marllbd_rl.curves import MetricsLog, Progress, plot_learning_curve
from marllbd_rl.rollout import EnvVector

ALGORITHM = "sac-gru"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0


# -- hyperparameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class SacGruConfig:
    """Every SAC-GRU hyperparameter; `TrainConfig.hyper` overrides them by name."""

    action_type: str = "continuous"
    """'continuous' (a ∈ [-1, 1] per server, level 3**a) or 'discrete' (one of `levels`)."""
    levels: tuple[float, ...] = (1.0, 1.5, 2.0)
    """Discrete weight levels per server."""
    weight_base: str = "capacity"
    """Weights are level × capacity ('capacity') or just the level ('uniform', MARLLB's)."""
    reward_metric: str = "jain"
    """Fairness metric of the reward (marllbd.fairness)."""
    reward_field: str = "fct_decayed_mean"
    """The per-server feature the reward's metric is computed over.  Completion times, not
    MARLLB's durations: on seed-16 Jain of the duration feature scores random weights above
    SED, Jain of the completion times scores SED first."""
    reward_shaping: str = "identity"
    """'identity', 'exp' or 'log' shaping of the metric."""
    reward_scale: float = 1.0
    """Rewards are standardised with running statistics, then multiplied by this: TD
    targets start near the critics' initial zero whatever the reward metric's range."""
    hidden: int = 64
    """Width of every layer and of the GRU state."""
    gamma: float = 0.9
    """Discount per control interval (0.25 s by default: a horizon of a few seconds)."""
    polyak: float = 0.005
    """Target critics move this fraction towards the online critics after each update."""
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    """Critics learn faster than the actor, which follows them."""
    alpha_lr: float = 1e-3
    init_alpha: float = 0.05
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """Target mean per-server entropy; default -1 (continuous, SAC's -dim A) or 0.3·log K."""
    init_log_std: float = -1.5
    """Initial log std of the continuous actor's pre-tanh Gaussian (exploration width)."""
    batch_size: int = 32
    """Sequences per update."""
    seq_len: int = 16
    """Transitions per sequence that carry a loss."""
    burn_in: int = 8
    """Transitions before them that only warm the GRU state."""
    buffer_steps: int = 100_000
    """Replay capacity in transitions (split evenly over the simulators)."""
    learning_starts: int = 1_000
    """Environment steps collected before the first update."""
    updates_per_step: float = 0.25
    """Gradient updates per environment step (transition)."""
    prior_weight: float | None = None
    """Weight of the actor's distance from the neutral action (Actor.distance_from_neutral)
    in its loss: the policy leaves the heuristic it starts as (SED with capacity weights)
    only where the critics see a consistent gain, instead of drifting wherever their errors
    point.  Default: 10 (continuous) or 1 (discrete) with weight_base 'capacity', 0 with
    'uniform', whose neutral action is no heuristic worth staying near.  (Measured on
    seed-16: without it the evaluated mean FCT rose 23 % (discrete) and 190 % (continuous)
    above SED's within 4000 steps; with it, it stays within 1 %.)"""
    max_grad_norm: float = 10.0
    feature_clip: float = 5.0
    """Standardised features are clipped to ±this."""
    torch_threads: int = 1
    """CPU threads torch may use (small networks run fastest on one)."""

    def __post_init__(self) -> None:
        ActionSpec(kind=self.action_type, levels=tuple(self.levels), base=self.weight_base)
        positive = ("reward_scale", "hidden", "actor_lr", "critic_lr", "alpha_lr", "init_alpha")
        for name in (*positive, "batch_size", "seq_len", "buffer_steps", "torch_threads"):
            if not getattr(self, name) > 0:
                raise ValueError(f"hyper.{name}: expected a value > 0, got {getattr(self, name)}")
        if not 0.0 <= self.gamma < 1.0 or not 0.0 < self.polyak <= 1.0:
            raise ValueError(
                f"hyper.gamma must be in [0, 1) and hyper.polyak in (0, 1], "
                f"got {self.gamma} and {self.polyak}"
            )
        for name in ("burn_in", "learning_starts", "updates_per_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"hyper.{name}: expected a value >= 0, got {getattr(self, name)}")
        if self.prior() < 0:
            raise ValueError(f"hyper.prior_weight: expected a value >= 0, got {self.prior_weight}")

    @property
    def window(self) -> int:
        """Transitions per stored sequence."""
        return self.burn_in + self.seq_len

    @property
    def num_levels(self) -> int:
        """Categories per server (0 for continuous actions)."""
        return len(self.levels) if self.action_type == "discrete" else 0

    def action_spec(self) -> ActionSpec:
        return ActionSpec(kind=self.action_type, levels=tuple(self.levels), base=self.weight_base)

    def prior(self) -> float:
        """The effective prior_weight."""
        if self.prior_weight is not None:
            return self.prior_weight
        if self.weight_base == "uniform":
            return 0.0
        return 10.0 if self.action_type == "continuous" else 1.0

    def entropy_target(self) -> float:
        if self.target_entropy is not None:
            return self.target_entropy
        return -1.0 if self.action_type == "continuous" else 0.3 * math.log(len(self.levels))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, Any]]) -> SacGruConfig:
        """From (name, value) overrides; unknown names fail naming the known ones."""
        known = {f.name for f in fields(cls)}
        given = dict(pairs)
        unknown = sorted(set(given) - known)
        if unknown:
            raise TrainingError(
                f"hyper: unknown SAC-GRU hyperparameters {unknown}; known: {sorted(known)}"
            )
        if "levels" in given:
            given["levels"] = tuple(float(x) for x in given["levels"])
        try:
            return cls(**given)
        except (TypeError, ValueError) as exc:
            raise TrainingError(str(exc)) from None


# -- feature normalisation ------------------------------------------------------------------


class RunningNorm(nn.Module):
    """Standardise with a running mean/variance (Chan et al.'s parallel update), after log1p
    if asked (features are non-negative seconds and counts with long tails).

    The statistics are buffers, so they travel in the checkpoint with the weights.
    """

    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, clip: float, log1p: bool = True) -> None:
        super().__init__()
        self.clip, self.log1p = clip, log1p
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(dim), persistent=False)
        self.register_buffer("scale", torch.ones(dim), persistent=False)

    def update(self, x: np.ndarray) -> None:
        """Fold a batch of raw rows (N, dim) into the statistics."""
        y = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1, self.dim))
        if self.log1p:
            y = torch.log1p(y)
        n_b = float(y.shape[0])
        mean_b = y.mean(0)
        m2_b = ((y - mean_b) ** 2).sum(0)
        n_a = float(self.count)
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / total)
        self.m2 += m2_b + delta**2 * (n_a * n_b / total)
        self.count.fill_(total)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the float32 shift and scale the forward pass uses."""
        if float(self.count) < 2.0:
            return
        var = self.m2 / self.count
        self.shift.copy_(self.mean.float())
        self.scale.copy_(torch.rsqrt(var + 1e-6).float())

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.log1p(x) if self.log1p else x
        return ((y - self.shift) * self.scale).clamp(-self.clip, self.clip)


# -- networks -------------------------------------------------------------------------------


class Actor(nn.Module):
    """Normalised observations (B, T, D) → per-step action parameters, carrying a GRU state."""

    def __init__(self, obs_dim: int, num_servers: int, cfg: SacGruConfig) -> None:
        super().__init__()
        self.n, self.k = num_servers, cfg.num_levels
        self.neutral = int(np.argmin(np.abs(np.asarray(cfg.levels) - 1.0)))
        """The discrete level closest to 1.0."""
        self.encode = nn.Linear(obs_dim, cfg.hidden)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden, num_servers * (self.k or 2))
        # Start with the mode at the neutral action and a chosen exploration width.
        nn.init.uniform_(self.head.weight, -1e-3, 1e-3)
        with torch.no_grad():
            bias = self.head.bias.view(num_servers, -1) if self.k else self.head.bias
            bias.zero_()
            if self.k:
                bias[:, self.neutral] = 1.0
            else:
                frac = (cfg.init_log_std - LOG_STD_MIN) / (LOG_STD_MAX - LOG_STD_MIN)
                bias[num_servers:] = math.atanh(2.0 * min(max(frac, 0.01), 0.99) - 1.0)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole sequence (B, T, D) from state h (1, B, H): (B, T, out) and the last state."""
        z, h = self.gru(F.relu(self.encode(x)), h)
        return self.head(z), h

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step (B, D) from state h (B, H): the GRU equations written out in few ops,
        the same numbers as `forward` at a fraction of nn.GRU's per-call overhead."""
        w_ih, w_hh, b_ih, b_hh = (cast(torch.Tensor, p) for p in self.gru.all_weights[0])
        gi = F.linear(F.relu(self.encode(x)), w_ih, b_ih)
        gh = F.linear(h, w_hh, b_hh)
        k = h.shape[-1]
        rz = torch.sigmoid(gi[..., : 2 * k] + gh[..., : 2 * k])
        n = torch.tanh(torch.addcmul(gi[..., 2 * k :], rz[..., :k], gh[..., 2 * k :]))
        h = torch.lerp(n, h, rz[..., k:])  # (1 - z) * n + z * h
        return self.head(h), h

    def mode(self, raw: torch.Tensor) -> torch.Tensor:
        """The deterministic action: tanh(mean), or the most likely level per server."""
        if self.k:
            return raw.view(*raw.shape[:-1], self.n, self.k).argmax(-1)
        return torch.tanh(raw[..., : self.n])

    def sample(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A sampled action and its mean per-server log-probability (reparameterised)."""
        if self.k:
            logits = raw.view(*raw.shape[:-1], self.n, self.k)
            a = torch.distributions.Categorical(logits=logits).sample()
            logp = torch.log_softmax(logits, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)
            return a, logp.mean(-1)
        mean, log_std = raw[..., : self.n], squash_log_std(raw[..., self.n :])
        u = mean + log_std.exp() * torch.randn_like(mean)
        logp = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
        logp = logp - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return torch.tanh(u), logp.mean(-1)

    def log_probs(self, raw: torch.Tensor) -> torch.Tensor:
        """Discrete only: log π_i(a) for every server and level, (..., n, K)."""
        return torch.log_softmax(raw.view(*raw.shape[:-1], self.n, self.k), -1)

    def distance_from_neutral(self, raw: torch.Tensor) -> torch.Tensor:
        """Mean per server of the squared pre-tanh mean, or of −log π(neutral level)."""
        if self.k:
            return -self.log_probs(raw)[..., self.neutral].mean(-1)
        return raw[..., : self.n].pow(2).mean(-1)


def squash_log_std(raw: torch.Tensor) -> torch.Tensor:
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1.0)


class Critic(nn.Module):
    """A recurrent Q network: GRU features of the observations, then a Q head.

    Continuous: Q(h_t, a_t) → (B, T).  Discrete: per-server q_i(h_t, ·) → (B, T, n, K).
    """

    def __init__(self, obs_dim: int, num_servers: int, cfg: SacGruConfig) -> None:
        super().__init__()
        self.n, self.k = num_servers, cfg.num_levels
        self.encode = nn.Linear(obs_dim, cfg.hidden)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)
        extra = 0 if self.k else num_servers
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden + extra, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, num_servers * self.k if self.k else 1),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """GRU outputs (B, T, H) from a zero state at the window start."""
        return self.gru(F.relu(self.encode(x)))[0]

    def q(self, h: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        if self.k:
            return self.head(h).view(*h.shape[:-1], self.n, self.k)
        if a is None:
            raise ValueError("a continuous critic needs the action")
        return self.head(torch.cat([h, a], -1)).squeeze(-1)


# -- sequence replay ------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
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

    def sample(self, batch_size: int, burn_in: int, discrete: bool) -> Batch:
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
        return Batch(
            obs=torch.from_numpy(self.obs[ss[:, None], jj]),
            action=act.long() if discrete else act,
            reward=torch.from_numpy(self.reward[ss[:, None], jj[:, :w]]),
            terminated=torch.from_numpy(self.terminated[ss[:, None], jj[:, :w]]).float(),
            mask=mask,
        )


# -- the learner ----------------------------------------------------------------------------


class SacGru:
    """Actor, twin critics with Polyak targets, entropy temperature and their optimisers."""

    def __init__(self, cfg: SacGruConfig, obs_dim: int, num_servers: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.cfg, self.obs_dim, self.n = cfg, obs_dim, num_servers
        self.norm = RunningNorm(obs_dim, cfg.feature_clip)
        self.reward_norm = RunningNorm(1, math.inf, log1p=False)
        self.actor = Actor(obs_dim, num_servers, cfg)
        self.critic1 = Critic(obs_dim, num_servers, cfg)
        self.critic2 = Critic(obs_dim, num_servers, cfg)
        self.target1 = copy.deepcopy(self.critic1).requires_grad_(False)
        self.target2 = copy.deepcopy(self.critic2).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        critic_params = [*self.critic1.parameters(), *self.critic2.parameters()]
        self.critic_opt = torch.optim.Adam(critic_params, lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.updates = 0

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero GRU states for `batch` sequences, (1, batch, H) as nn.GRU takes them."""
        return torch.zeros(1, batch, self.cfg.hidden)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, h: torch.Tensor, deterministic: bool = False
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Actions for a batch of raw observations (E, D), advancing the GRU states h (E, H)."""
        x = self.norm(torch.as_tensor(obs, dtype=torch.float32).view(len(obs), -1))
        raw, h = self.actor.step(x, h)
        a = self.actor.mode(raw) if deterministic else self.actor.sample(raw)[0]
        return a.numpy(), h

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on the critics, the actor and α, then Polyak-average the targets."""
        cfg = self.cfg
        x = self.norm(batch.obs)
        mask = batch.mask
        denom = mask.sum()
        alpha = self.log_alpha.exp().detach()
        raw, _ = self.actor(x, self.initial_state(x.shape[0]))
        reward = cfg.reward_scale * self.reward_norm(batch.reward.unsqueeze(-1)).squeeze(-1)
        not_done = 1.0 - batch.terminated

        with torch.no_grad():
            nxt = raw.detach()[:, 1:]
            t1, t2 = self.target1.features(x)[:, 1:], self.target2.features(x)[:, 1:]
            if self.actor.k:
                logp_n = self.actor.log_probs(nxt)
                qt = torch.min(self.target1.q(t1), self.target2.q(t2))
                v_next = (logp_n.exp() * (qt - alpha * logp_n)).sum(-1).mean(-1)
            else:
                a_n, lp_n = self.actor.sample(nxt)
                v_next = torch.min(self.target1.q(t1, a_n), self.target2.q(t2, a_n)) - alpha * lp_n
            y = reward + cfg.gamma * not_done * v_next

        h1, h2 = self.critic1.features(x)[:, :-1], self.critic2.features(x)[:, :-1]
        if self.actor.k:
            idx = batch.action.unsqueeze(-1)
            q1 = self.critic1.q(h1).gather(-1, idx).squeeze(-1).mean(-1)
            q2 = self.critic2.q(h2).gather(-1, idx).squeeze(-1).mean(-1)
        else:
            q1, q2 = self.critic1.q(h1, batch.action), self.critic2.q(h2, batch.action)
        critic_loss = ((((q1 - y) ** 2 + (q2 - y) ** 2) * mask).sum()) / denom
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(
            [*self.critic1.parameters(), *self.critic2.parameters()], cfg.max_grad_norm
        )
        self.critic_opt.step()

        g1, g2 = h1.detach(), h2.detach()  # the critics' recurrent features, as a fixed input
        cur = raw[:, :-1]
        if self.actor.k:
            # Expectation over the policy's distribution (not a sampled action's score).
            logp = self.actor.log_probs(cur)
            probs = logp.exp()
            with torch.no_grad():
                qmin = torch.min(self.critic1.q(g1), self.critic2.q(g2))
            per_step = (probs * (alpha * logp - qmin)).sum(-1).mean(-1)
            mean_logp = (probs * logp).sum(-1).mean(-1)
        else:
            a_pi, mean_logp = self.actor.sample(cur)
            qmin = torch.min(self.critic1.q(g1, a_pi), self.critic2.q(g2, a_pi))
            per_step = alpha * mean_logp - qmin
        per_step = per_step + cfg.prior() * self.actor.distance_from_neutral(cur)
        actor_loss = (per_step * mask).sum() / denom
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
        self.actor_opt.step()
        # The continuous actor loss reached the critics' heads; those gradients are unused.
        self.critic_opt.zero_grad(set_to_none=True)

        err = (mean_logp.detach() + cfg.entropy_target()) * mask
        alpha_loss = -(self.log_alpha * err).sum() / denom
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for online, target in ((self.critic1, self.target1), (self.critic2, self.target2)):
                for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                    tp.lerp_(p, cfg.polyak)
        self.updates += 1
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "alpha": float(alpha),
            "entropy": -float((mean_logp.detach() * mask).sum() / denom),
        }

    # -- checkpoint tensors --

    def modules(self) -> dict[str, nn.Module]:
        return {
            "norm": self.norm,
            "reward_norm": self.reward_norm,
            "actor": self.actor,
            "critic1": self.critic1,
            "critic2": self.critic2,
            "target1": self.target1,
            "target2": self.target2,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume: networks, normaliser, α and optimiser moments."""
        out = {
            f"{m}.{k}": v for m, mod in self.modules().items() for k, v in mod.state_dict().items()
        }
        out["log_alpha"] = self.log_alpha.detach().clone()
        for name, opt in self.optimizers().items():
            for i, state in opt.state_dict()["state"].items():
                for key, value in state.items():
                    out[f"opt.{name}.{i}.{key}"] = torch.as_tensor(value)
        return out

    def load_tensors(self, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
        """Restore from `tensors()` output; missing or misshapen tensors fail naming `where`."""
        try:
            for m, mod in self.modules().items():
                mod.load_state_dict(_prefixed(tensors, m))
            with torch.no_grad():
                self.log_alpha.copy_(tensors["log_alpha"])
            for name, opt in self.optimizers().items():
                sd = opt.state_dict()
                state: dict[int, dict[str, torch.Tensor]] = {}
                for key, value in _prefixed(tensors, f"opt.{name}").items():
                    i, field = key.split(".", 1)
                    state.setdefault(int(i), {})[field] = value
                sd["state"] = state
                opt.load_state_dict(sd)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise checkpoint.CheckpointError(
                f"{where}: tensors do not fit SAC-GRU: {exc}"
            ) from None
        self.norm.refresh()
        self.reward_norm.refresh()


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


# -- checkpoints ----------------------------------------------------------------------------


def _dims(cfg: SacGruConfig, obs_dim: int, num_servers: int) -> dict[str, int]:
    return {
        "obs_dim": obs_dim,
        "num_servers": num_servers,
        "hidden": cfg.hidden,
        "num_levels": cfg.num_levels,
    }


def save_checkpoint(
    path: Path,
    agent: SacGru,
    *,
    seed: int,
    scenario: str,
    step: int,
    extra: dict[str, Any],
    episodes: int = 0,
    best_fct: float | None = None,
) -> Path:
    """Write `agent` (schema format 2) with a manifest naming its scenario, hyperparameters,
    action, reward and progress; `extra` adds keys such as "eval"."""
    cfg = agent.cfg
    best = best_fct if best_fct is not None and math.isfinite(best_fct) else None
    return checkpoint.save(
        path,
        {
            **serving_manifest(agent),
            "seed": seed,
            "scenario": scenario,
            "reward": {
                "metric": cfg.reward_metric,
                "field": cfg.reward_field,
                "shaping": cfg.reward_shaping,
                "scale": cfg.reward_scale,
            },
            "progress": {
                "steps": step,
                "episodes": episodes,
                "updates": agent.updates,
                "best_fct": best,
            },
            **extra,
        },
        agent.tensors(),
    )


def serving_manifest(agent: SacGru) -> dict[str, Any]:
    """The manifest keys the served policy is built from (and the algorithm's identity)."""
    return {
        "algorithm": ALGORITHM,
        "dims": _dims(agent.cfg, agent.obs_dim, agent.n),
        "hyper": asdict(agent.cfg),
        "action": agent.cfg.action_spec().as_dict(),
        "layout": None,
    }


def serving_policy(agent: SacGru) -> SacGruPolicy:
    """The policy a checkpoint of `agent` would serve, from its live actor and normaliser."""
    tensors = {f"actor.{k}": v for k, v in agent.actor.state_dict().items()}
    tensors.update({f"norm.{k}": v for k, v in agent.norm.state_dict().items()})
    return SacGruPolicy.from_arrays(checkpoint.to_arrays(tensors), serving_manifest(agent))


def config_from_manifest(manifest: Mapping[str, Any], where: Path) -> SacGruConfig:
    hyper = manifest.get("hyper")
    if not isinstance(hyper, dict):
        raise checkpoint.CheckpointError(f"{where}: manifest has no 'hyper' table")
    try:
        return SacGruConfig.from_pairs(hyper.items())
    except TrainingError as exc:
        raise checkpoint.CheckpointError(f"{where}: manifest hyper: {exc}") from None


# -- rollouts -------------------------------------------------------------------------------


class Collector:
    """Steps the envs with the stochastic actor in one batched call; fills the replay.

    Each env's GRU state is zeroed when its episode ends, so a new episode
    starts from the same state the serving policy starts from after reset().
    """

    def __init__(self, agent: SacGru, envs: EnvVector, replay: SequenceReplay) -> None:
        self.agent, self.envs, self.replay = agent, envs, replay
        e = len(envs)
        self.obs = envs.reset()
        agent.norm.update(self.obs.reshape(e, -1))
        for i in range(e):
            replay.start(i, self.obs[i])
        self.hidden = agent.initial_state(e)[0]
        self.ret = np.zeros(e)
        self.fair = np.zeros(e)
        self.length = np.zeros(e, dtype=np.int64)
        self.fct: list[list[float]] = [[] for _ in range(e)]
        self.episodes = 0
        self._jain = fairness.metric("jain").kernel
        self._col = FEATURE_NAMES.index("dur_decayed_mean")

    def step(self) -> list[dict[str, Any]]:
        """One lockstep step of every env; returns the metrics of the episodes that ended."""
        e = len(self.envs)
        actions, self.hidden = self.agent.act(self.obs.reshape(e, -1), self.hidden)
        res = self.envs.step(actions)
        self.agent.norm.update(res.obs.reshape(e, -1))
        self.agent.reward_norm.update(res.reward)
        for i in range(e):
            self.replay.add(
                i, actions[i], float(res.reward[i]), bool(res.terminated[i]), res.obs[i]
            )
            self.ret[i] += res.reward[i]
            self.fair[i] += float(self._jain(res.obs[i][None, :, self._col].astype(np.float64))[0])
            self.length[i] += 1
            if math.isfinite(res.infos[i]["fct_mean"]):
                self.fct[i].append(res.infos[i]["fct_mean"])
        self.obs = res.obs.copy()
        finished = []
        for i in map(int, np.flatnonzero(res.done)):
            self.episodes += 1
            finished.append(
                {
                    "episode": self.episodes,
                    "episode_return": float(self.ret[i]),
                    "fairness": float(self.fair[i] / max(self.length[i], 1)),
                    "fct_mean": float(np.mean(self.fct[i])) if self.fct[i] else None,
                }
            )
            self.ret[i], self.fair[i], self.length[i], self.fct[i] = 0.0, 0.0, 0, []
            self.obs[i] = self.envs.reset_one(i)
            self.replay.start(i, self.obs[i])
            self.agent.norm.update(self.obs[i].reshape(1, -1))
            self.hidden[i] = 0.0
        return finished

    @property
    def live_return(self) -> float:
        """Mean return so far of the episodes in progress."""
        return float(self.ret.mean())

    @property
    def live_fairness(self) -> float:
        return float(self.fair.sum() / max(int(self.length.sum()), 1))


# -- training -------------------------------------------------------------------------------

METRICS = (
    "step",
    "episode",
    "episode_return",
    "fairness",
    "fct_mean",
    "critic_loss",
    "actor_loss",
    "alpha",
    "entropy",
    "eval_fct_mean",
    "eval_fct_p90",
    "eval_fairness",
    "wall_seconds",
)


def make_env(
    scenario: Scenario, cfg: SacGruConfig, episode_seconds: float | None
) -> LoadBalanceEnv:
    return LoadBalanceEnv(
        scenario,
        action_type=cfg.action_type,
        levels=tuple(cfg.levels),
        weight_base=cfg.weight_base,
        reward_metric=cfg.reward_metric,
        reward_field=cfg.reward_field,
        reward_shaping=cfg.reward_shaping,
        episode_seconds=episode_seconds,
    )


def train(config: TrainConfig) -> TrainResult:
    """Train on `config.scenario`; write metrics, learning curve and last/best checkpoints."""
    cfg = SacGruConfig.from_pairs(config.hyper)
    for name in ("steps", "envs", "eval_every"):
        if getattr(config, name) < 1:
            raise TrainingError(f"{name}: expected a positive integer, got {getattr(config, name)}")
    torch.set_num_threads(cfg.torch_threads)
    scenario = load_scenario(config.scenario)
    envs = EnvVector(
        lambda: make_env(scenario, cfg, config.episode_seconds), config.envs, config.seed
    )
    sc = envs.envs[0].scenario
    episode_rows = round(sc.duration / sc.control_interval)
    if episode_rows < cfg.window + 1:
        raise TrainingError(
            f"episode_seconds: episodes of {episode_rows} intervals are shorter than "
            f"burn_in + seq_len + 1 = {cfg.window + 1}; lengthen them or shorten the sequences"
        )
    n = len(scenario.servers)
    obs_dim = n * NUM_FEATURES
    out = Path(config.out)
    best_dir, last_dir = out / "checkpoints" / "best", out / "checkpoints" / "last"
    agent = SacGru(cfg, obs_dim, n, config.seed)
    step, best_fct = 0, math.inf
    if config.resume is not None:
        step, best_fct = _resume(agent, config.resume, best_dir)
    replay = SequenceReplay(
        len(envs), max(cfg.buffer_steps // len(envs), cfg.window + 1), obs_dim, n, cfg.window,
        seed=config.seed + step,
    )  # fmt: skip
    metrics = MetricsLog(out / "metrics.csv", METRICS)
    progress = Progress(config.steps, config.progress)
    start = plotted = time.monotonic()

    def checkpoint_and_eval(at: int) -> None:
        nonlocal best_fct
        policy = evaluation.PolicySource(  # this step's actor, one instance per LB node
            f"{ALGORITHM} step {at}", lambda lb: serving_policy(agent)
        )
        (ev,) = evaluation.summary(evaluation.evaluate(scenario, [policy], config.eval_seeds))
        metrics.write(
            {
                "step": at,
                "eval_fct_mean": ev.mean_fct,
                "eval_fct_p90": ev.p90_fct,
                "eval_fairness": ev.reward,
                "wall_seconds": time.monotonic() - start,
            }
        )
        extra = {"eval": {"fct_mean": ev.mean_fct, "fct_p90": ev.p90_fct, "seeds": list(ev.seeds)}}
        if ev.mean_fct < best_fct:
            best_fct = ev.mean_fct
            save_checkpoint(
                best_dir,
                agent,
                seed=config.seed,
                scenario=sc.name,
                step=at,
                extra=extra,
                best_fct=best_fct,
            )
        save_checkpoint(
            last_dir,
            agent,
            seed=config.seed,
            scenario=sc.name,
            step=at,
            extra=extra,
            best_fct=best_fct,
        )

    if step == 0:
        checkpoint_and_eval(0)
    collector = Collector(agent, envs, replay)
    credit = 0.0
    losses: dict[str, float] = {}
    next_eval = (step // config.eval_every + 1) * config.eval_every
    while step < config.steps:
        finished = collector.step()
        step += len(envs)
        for episode in finished:
            metrics.write(
                {"step": step, **episode, **losses, "wall_seconds": time.monotonic() - start}
            )
        if step >= cfg.learning_starts and replay.can_sample:
            credit += len(envs) * cfg.updates_per_step
            while credit >= 1.0:
                credit -= 1.0
                batch = replay.sample(cfg.batch_size, cfg.burn_in, bool(cfg.num_levels))
                losses = agent.update(batch)
        if step >= next_eval:
            checkpoint_and_eval(step)
            next_eval += config.eval_every
            if time.monotonic() - plotted > PLOT_EVERY_SECONDS:
                plot_learning_curve(out / "metrics.csv", out / "learning_curve.png", ys=_CURVES)
                plotted = time.monotonic()
        progress.update(
            step, ret=collector.live_return, fair=collector.live_fairness, best_fct=best_fct
        )
    if step % config.eval_every:
        checkpoint_and_eval(step)
    plot_learning_curve(out / "metrics.csv", out / "learning_curve.png", ys=_CURVES)
    wall = time.monotonic() - start
    progress.close(
        f"sac-gru: {step} steps in {wall:.0f} s; best eval fct_mean {best_fct:.4f} s "
        f"over seeds {list(config.eval_seeds)}"
    )
    return TrainResult(
        best=best_dir, last=last_dir, steps=step, wall_seconds=wall, metrics_csv=out / "metrics.csv"
    )


PLOT_EVERY_SECONDS = 60.0
"""The learning curve is redrawn after an evaluation at most this often (and at the end)."""
_CURVES = ("episode_return", "fairness", "fct_mean", "eval_fct_mean", "critic_loss", "alpha")


def _resume(agent: SacGru, resume: Path, best_dir: Path) -> tuple[int, float]:
    """Load networks, optimisers and α from `resume`; the replay buffer starts empty.

    Returns the step to continue from and the best evaluation so far.
    """
    try:
        ckpt = checkpoint.load(
            resume, algorithm=ALGORITHM, dims=_dims(agent.cfg, agent.obs_dim, agent.n)
        )
    except checkpoint.CheckpointError as exc:
        raise TrainingError(f"--resume: {exc}") from None
    agent.load_tensors(ckpt.tensors, ckpt.path)
    agent.updates = int(ckpt.manifest["progress"]["updates"])
    best = math.inf
    # Without a usable best checkpoint the next evaluation writes one.
    with contextlib.suppress(checkpoint.CheckpointError, KeyError, TypeError, ValueError):
        best = float(checkpoint.load(best_dir, algorithm=ALGORITHM).manifest["eval"]["fct_mean"])
    return int(ckpt.manifest["progress"]["steps"]), best


# -- the seed's API -------------------------------------------------------------------------


class SAC_GRU_Agent:
    """The seed's interface: select_action / update per transition / save / load.

    `obs` may have any shape with `obs_dim` elements (e.g. the env's (n, 12)
    matrix).  `save("checkpoints/sac_gru_best.pt")` writes a checkpoint
    *directory* of that name (safetensors + manifest, never a pickle).
    """

    def __init__(self, obs_dim: int, action_dim: int, *, seed: int = 0, **hyper: Any) -> None:
        self.config = SacGruConfig.from_pairs(hyper.items())
        self.seed = seed
        self.core = SacGru(self.config, obs_dim, action_dim, seed)
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
        return save_checkpoint(
            Path(path), self.core, seed=self.seed, scenario="", step=self.steps, extra={}
        )

    def load(self, path: str | Path) -> None:
        """Restore networks, optimisers, α and normaliser from a checkpoint directory."""
        ckpt = checkpoint.load(
            path,
            algorithm=ALGORITHM,
            dims=_dims(self.config, self.core.obs_dim, self.core.n),
        )
        self.core.load_tensors(ckpt.tensors, ckpt.path)
        self.steps = int(ckpt.manifest["progress"]["steps"])
        self.core.updates = int(ckpt.manifest["progress"]["updates"])
        self.hidden = self.core.initial_state(1)[0]
