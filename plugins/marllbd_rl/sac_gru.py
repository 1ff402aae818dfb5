"""SAC-GRU: soft actor-critic with recurrent networks for one load balancer, read top to bottom.

Hyperparameters, networks, sequence replay, the update, then `SacGru`, the
algorithm the training loop (marllbd.training.trainer) drives: it steps its
rollout envs, fills the replay and updates; the loop does evaluation,
checkpoints, logs and resume.  The trained actor is served by the numpy
`marllbd.policies.learned.SacGruPolicy`, which evaluation uses too.

Design, briefly:
- Input per step: the (num_servers, 12) feature matrix, flattened, passed
  through log1p and standardised with running statistics kept in the
  networks' checkpoint (features are raw seconds and counts).  Rewards are
  standardised the same way (without log1p) before the TD targets.
- Actor and twin critics each run their own GRU over the observations
  (critic_trunk 'own').  Two cheaper variants are options, measured on
  drift-7 and not the default because learning did not hold: 'pair' (one GRU
  for both critics) and 'shared' (the critics' heads read the actor's GRU,
  which the critic loss trains, as SAC-AE / DrQ share an encoder).
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

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn
from torch.nn import functional as F

from marllbd.distributed.rollouts import Tap
from marllbd.envs import LoadBalanceVectorEnv
from marllbd.envs.multi_vector import MultiAgentVectorEnv
from marllbd.envs.reward import (
    DEFAULT_REWARD_FIELD,
    DEFAULT_REWARD_METRIC,
    DEFAULT_REWARD_SHAPING,
)
from marllbd.features import NUM_FEATURES
from marllbd.policies.actions import ActionSpec
from marllbd.policies.learned import (
    SERVED_RULES,
    SacGruPolicy,
    ServerTokens,
    SetSacGruPolicy,
    on_estimate,
    residual_error,
    sac_gru_policy,
)
from marllbd.sim.family import MAX_LB_NODES, Family, FamilyError, load_family
from marllbd.sim.scenario import Scenario
from marllbd.training import hyper
from marllbd.training.errors import TrainingError
from marllbd.training.trainer import Collected, Hooks, TrainConfig
from marllbd_rl.base import LearnerAlgorithm, splits_updates, update_side_thread
from marllbd_rl.norm import RunningNorm, TokenNorm
from marllbd_rl.replay import SequenceBatch, SequenceReplay
from marllbd_rl.torchio import load_arrays, to_arrays

ALGORITHM = "sac-gru"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0


LB_NODES = ("one", "any", "all")
"""hyper.lb_nodes: how a run treats scenarios with several LB nodes (SacGruConfig)."""
CENTRAL_COLUMNS = ("utilization", "log1p_queue_per_capacity", "log_capacity_ratio")
"""hyper.critic_view 'central': per server, the env's global truth after the interval (its
utilization, log1p of its flows in service and backlogged over its real capacity, and
the log of its real over its configured capacity), appended to every node's tokens in
the replay for the critics (EveryNode.central)."""

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
    reward_metric: str = DEFAULT_REWARD_METRIC
    """Fairness metric of the reward (marllbd.fairness)."""
    reward_field: str = DEFAULT_REWARD_FIELD
    """The per-server feature the reward's metric is computed over (the envs' default,
    chosen by measurement: docs/reward.md)."""
    reward_shaping: str = DEFAULT_REWARD_SHAPING
    """'identity', 'exp' or 'log' shaping of the metric."""
    reward_scale: float = 1.0
    """Rewards are standardised with running statistics, then multiplied by this: TD
    targets start near the critics' initial zero whatever the reward metric's range."""
    hidden: int = 64
    """Width of every layer and of the GRU state."""
    arch: str = "flat"
    """'flat': networks over the n × 12 features flattened (tied to one server count and
    order); 'equivariant': one token per server, shared per-server layers with a pooled
    cluster context (`SetActor`), so one checkpoint serves any server count and permuting
    the servers permutes the weights."""
    recurrence: str = "server"
    """With arch 'equivariant': 'server' (a GRU per server, shared weights) or 'none'."""
    hint: str = "none"
    """With arch 'equivariant': 'adaptive' adds to each server's token the log of its
    capacity as adaptive-sed estimates it (from the same reservoir features, no ground
    truth) over its configured capacity."""
    residual: str = "static"
    """What a zero action serves: 'static' SED (weights = spread**a × configured capacity)
    or, with hint 'adaptive' and continuous actions, 'adaptive' SED (spread**a × that
    estimate, marllbd.policies.learned.on_estimate): the untrained policy is adaptive-sed
    and prior_weight pulls towards it instead of towards static SED.  'gated': 'adaptive'
    with each server's action scaled by how far its estimate has moved (full from
    learned.GATE on): where the estimator sees nothing, static SED exactly."""
    critic_trunk: str = "own"
    """'own': each critic runs its own GRU; 'pair': critic1's GRU feeds both critics' heads;
    'shared': the critics' heads read the actor's GRU features, which the critic loss trains
    (the actor's loss trains its head only).  'shared' halves the update's cost (16.4 → 8.1
    ms on seed-16) but on drift-7 its eval ratio to SED collapsed (seed 1: 1.37-1.76x), and
    'pair' drifted above 1.1x late in training: measured, not the default."""
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
    updates_per_step: float = 1 / 64
    """Gradient updates per environment step (transition): one per 64, i.e. one per two
    steps of the default 32 rollout envs.  Chosen by measurement on drift-7 (prior_weight
    1, held-out seeds 2001-2010, paired ratio to SED): 32 envs at 1/64 reached mean FCT
    0.865-0.894x SED in 108 s at 3 560 env steps/s, where 2 envs at 0.25 (the old
    default) reached 0.965x in 24 000 steps and 90+ s (docs/benchmarks.md, "Time to
    quality").  More, more diverse episodes per update beat more updates per episode."""
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
    update_threads: int = 2
    """Threads one update spreads its independent passes over, with critic_trunk 'own' and
    torch_threads 1: the target critics' forward beside the actor's, and each critic's
    loss and backward beside the other's (marllbd_rl.base.side_thread).  The same
    operations on the same tensors, so the same results bit for bit; 1 runs them in turn
    (as does torch_threads > 1, whose intra-op pool has the cores)."""
    lb_nodes: str = "one"
    """Scenarios with several LB nodes.  Training on a family: 'one' draws again a sample
    with several LB nodes; 'any' trains LB 0 of such a sample while the other nodes keep
    static capacity weights (the single env's rule), so the policy learns to balance
    beside other nodes' traffic.  'all' (self-play, on a family or a scenario): every LB
    node of an env runs the actor on its own frames, as every daemon serves the same
    checkpoint, and each node's transitions are a stream of the replay with the team
    reward (the multi-agent env's: the fairness over the servers of the feature averaged
    over the nodes); a step is one node's transition."""
    critic_view: str = "node"
    """With lb_nodes 'all': what the critics read.  'node': what the actor reads (each
    node's own tokens); 'central': beside them, per server the env's global truth,
    CENTRAL_COLUMNS (a centralised critic with decentralised actors, as MAPPO and MADDPG
    split them): the critics judge a node's action knowing every node's load on each
    server, while the actors, and so the served policy, still read their own frames."""
    dispatch: str = "sed"
    """The rule the weights are for, in training and serving: 'sed' (weights are
    capacities), or 'prequal-w' (with weight_base 'uniform': weights scale Prequal's
    scores, so a zero action is Prequal and the policy learns a correction on top of its
    probes).  The rollout envs dispatch by it, whatever the scenario's `dispatch` says."""
    family_groups: int = 4
    """Training on a family (TrainConfig.family): the rollout envs split into this many
    groups, each stepping one sample at a time (a fresh one when its episodes end)."""

    def __post_init__(self) -> None:
        ActionSpec(kind=self.action_type, levels=tuple(self.levels), base=self.weight_base)
        if self.arch not in ("flat", "equivariant"):
            raise ValueError(f"hyper.arch: expected 'flat' or 'equivariant', got {self.arch!r}")
        if self.recurrence not in ("server", "none"):
            raise ValueError(
                f"hyper.recurrence: expected 'server' or 'none', got {self.recurrence!r}"
            )
        if self.arch == "equivariant" and self.critic_trunk != "own":
            raise ValueError(
                f"hyper.critic_trunk: arch 'equivariant' needs 'own', got {self.critic_trunk!r}"
            )
        if self.arch == "flat" and self.recurrence != "server":
            raise ValueError("hyper.recurrence: 'none' needs arch 'equivariant'")
        if self.lb_nodes not in LB_NODES:
            raise ValueError(
                f"hyper.lb_nodes: expected one of {', '.join(LB_NODES)}, got {self.lb_nodes!r}"
            )
        if self.critic_view not in ("node", "central"):
            raise ValueError(
                f"hyper.critic_view: expected 'node' or 'central', got {self.critic_view!r}"
            )
        if self.critic_view == "central" and (self.arch, self.lb_nodes) != ("equivariant", "all"):
            raise ValueError(
                "hyper.critic_view: 'central' needs arch 'equivariant' and lb_nodes 'all'"
            )
        if self.dispatch not in SERVED_RULES:
            raise ValueError(
                f"hyper.dispatch: expected one of {', '.join(SERVED_RULES)}, got {self.dispatch!r}"
            )
        if self.dispatch == "prequal-w" and self.weight_base != "uniform":
            raise ValueError("hyper.dispatch: 'prequal-w' needs weight_base 'uniform'")
        if self.hint not in ("none", "adaptive"):
            raise ValueError(f"hyper.hint: expected 'none' or 'adaptive', got {self.hint!r}")
        if self.arch == "flat" and self.hint != "none":
            raise ValueError("hyper.hint: 'adaptive' needs arch 'equivariant'")
        problem = residual_error(
            self.residual, self.hint, self.action_type == "discrete", self.weight_base
        )
        if problem is not None:
            raise ValueError(f"hyper.residual: {problem}")
        if self.update_threads not in (1, 2):
            raise ValueError(f"hyper.update_threads: expected 1 or 2, got {self.update_threads!r}")
        if self.critic_trunk not in ("own", "pair", "shared"):
            raise ValueError(
                f"hyper.critic_trunk: expected 'own', 'pair' or 'shared', got {self.critic_trunk!r}"
            )
        positive = ("reward_scale", "hidden", "actor_lr", "critic_lr", "alpha_lr", "init_alpha")
        for name in (
            *positive,
            "batch_size",
            "seq_len",
            "buffer_steps",
            "torch_threads",
            "family_groups",
        ):
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
    def token_dim(self) -> int:
        """Values per server in what the networks read: its features, and with arch
        'equivariant' its capacity token and (hint 'adaptive') its capacity hint."""
        if self.arch == "flat":
            return NUM_FEATURES
        return NUM_FEATURES + 1 + (self.hint == "adaptive")

    @property
    def stored_dim(self) -> int:
        """Values per server in the replay: the tokens, and with critic_view 'central' the
        CENTRAL_COLUMNS the critics read beside them."""
        return self.token_dim + (len(CENTRAL_COLUMNS) if self.critic_view == "central" else 0)

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
    def from_pairs(cls, pairs: Any) -> SacGruConfig:
        """From (name, value) overrides (CLI strings or values); errors name the key."""
        return hyper.parse(cls, pairs, algorithm=ALGORITHM)


# -- networks -------------------------------------------------------------------------------


class Sampling:
    """Actions from an actor's raw output (..., n * (K or 2)): means then pre-squash log
    stds per server (continuous) or n × K logits (discrete); n follows from the shape."""

    num_levels: int
    neutral: int
    """The discrete level closest to 1.0."""

    def servers(self, raw: torch.Tensor) -> int:
        return raw.shape[-1] // (self.num_levels or 2)

    def mode(self, raw: torch.Tensor) -> torch.Tensor:
        """The deterministic action: tanh(mean), or the most likely level per server."""
        n = self.servers(raw)
        if self.num_levels:
            return raw.view(*raw.shape[:-1], n, self.num_levels).argmax(-1)
        return torch.tanh(raw[..., :n])

    def sample(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A sampled action and its mean per-server log-probability (reparameterised)."""
        n = self.servers(raw)
        if self.num_levels:
            logits = raw.view(*raw.shape[:-1], n, self.num_levels)
            a = torch.distributions.Categorical(logits=logits).sample()
            logp = torch.log_softmax(logits, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)
            return a, logp.mean(-1)
        mean, log_std = raw[..., :n], squash_log_std(raw[..., n:])
        u = mean + log_std.exp() * torch.randn_like(mean)
        logp = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
        logp = logp - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return torch.tanh(u), logp.mean(-1)

    def log_probs(self, raw: torch.Tensor) -> torch.Tensor:
        """Discrete only: log π_i(a) for every server and level, (..., n, K)."""
        n = self.servers(raw)
        return torch.log_softmax(raw.view(*raw.shape[:-1], n, self.num_levels), -1)

    def distance_from_neutral(self, raw: torch.Tensor) -> torch.Tensor:
        """Mean per server of the squared pre-tanh mean, or of −log π(neutral level)."""
        if self.num_levels:
            return -self.log_probs(raw)[..., self.neutral].mean(-1)
        return raw[..., : self.servers(raw)].pow(2).mean(-1)


def neutral_level(cfg: SacGruConfig) -> int:
    return int(np.argmin(np.abs(np.asarray(cfg.levels) - 1.0)))


def log_std_bias(cfg: SacGruConfig) -> float:
    """The pre-squash bias whose log std is cfg.init_log_std (within the squash's range)."""
    frac = (cfg.init_log_std - LOG_STD_MIN) / (LOG_STD_MAX - LOG_STD_MIN)
    return math.atanh(2.0 * min(max(frac, 0.01), 0.99) - 1.0)


def gru_cell(gru: nn.GRU, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One step of `gru`'s equations for inputs x (..., I) and states h (..., H): the same
    numbers as `gru` over a one-step window at a fraction of nn.GRU's per-call overhead."""
    w_ih, w_hh, b_ih, b_hh = (cast(torch.Tensor, p) for p in gru.all_weights[0])
    gi = F.linear(x, w_ih, b_ih)
    gh = F.linear(h, w_hh, b_hh)
    hid = h.shape[-1]
    rz = torch.sigmoid(gi[..., : 2 * hid] + gh[..., : 2 * hid])
    n = torch.tanh(torch.addcmul(gi[..., 2 * hid :], rz[..., :hid], gh[..., 2 * hid :]))
    return torch.lerp(n, h, rz[..., hid:])  # (1 - z) * n + z * h


class Actor(Sampling, nn.Module):
    """Normalised observations (B, T, D) → per-step action parameters, carrying a GRU state."""

    def __init__(self, obs_dim: int, num_servers: int, cfg: SacGruConfig) -> None:
        super().__init__()
        self.n, self.num_levels = num_servers, cfg.num_levels
        self.neutral = neutral_level(cfg)
        self.encode = nn.Linear(obs_dim, cfg.hidden)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden, num_servers * (self.num_levels or 2))
        # Start with the mode at the neutral action and a chosen exploration width.
        nn.init.uniform_(self.head.weight, -1e-3, 1e-3)
        with torch.no_grad():
            bias = self.head.bias.view(num_servers, -1) if self.num_levels else self.head.bias
            bias.zero_()
            if self.num_levels:
                bias[:, self.neutral] = 1.0
            else:
                bias[num_servers:] = log_std_bias(cfg)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole sequence (B, T, D) from state h (1, B, H) or zero: (B, T, out), last state."""
        z, h = self.gru(F.relu(self.encode(x)), h)
        return self.head(z), h

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """GRU outputs (B, T, H) from a zero state at the window start (what the critics'
        heads read with critic_trunk 'shared')."""
        return cast(torch.Tensor, self.gru(F.relu(self.encode(x)))[0])

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step (B, D) from state h (B, H), the same numbers as `forward`."""
        h = gru_cell(self.gru, F.relu(self.encode(x)), h)
        return self.head(h), h


def squash_log_std(raw: torch.Tensor) -> torch.Tensor:
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1.0)


class Critic(nn.Module):
    """A Q head over recurrent features h_t: its own GRU's over the observations
    (critic_trunk 'own', `features`) or the actor's ('shared': no GRU of its own).

    Continuous: Q(h_t, a_t) → (B, T).  Discrete: per-server q_i(h_t, ·) → (B, T, n, K).
    """

    def __init__(
        self, obs_dim: int, num_servers: int, cfg: SacGruConfig, trunk: bool = True
    ) -> None:
        super().__init__()
        self.n, self.num_levels = num_servers, cfg.num_levels
        if trunk:
            self.encode = nn.Linear(obs_dim, cfg.hidden)
            self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)
        extra = 0 if self.num_levels else num_servers
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden + extra, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, num_servers * self.num_levels if self.num_levels else 1),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """GRU outputs (B, T, H) from a zero state at the window start."""
        return self.gru(F.relu(self.encode(x)))[0]

    def q(self, h: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_levels:
            return self.head(h).view(*h.shape[:-1], self.n, self.num_levels)
        if a is None:
            raise ValueError("a continuous critic needs the action")
        return self.head(torch.cat([h, a], -1)).squeeze(-1)


# The equivariant networks (arch 'equivariant').  Each server is a token: its 12
# features, standardised by one normaliser shared by all servers (TokenNorm), and
# its capacity token (log of its configured capacity over the cluster's mean,
# marllbd.policies.learned.capacity_token).  A shared encoder, a mixing layer that
# adds the cluster context (the mean over servers), a GRU per server (shared
# weights, one state each; recurrence 'none' drops it), and per-server heads that
# read each server's state beside the mean state: permuting the servers permutes
# the outputs.  The actor's head starts at the neutral action (static SED with
# weight_base 'capacity'); the critics pool to one Q.  Window states are
# (1, B·n, H) as nn.GRU takes them, step states (B, n, H).


def with_mean(z: torch.Tensor) -> torch.Tensor:
    """Each server's vector beside the mean over servers (dim -2): (..., n, 2H)."""
    return torch.cat([z, z.mean(-2, keepdim=True).expand_as(z)], -1)


class ServerTrunk(nn.Module):
    """Tokens → per-server features: shared encoder, mean-context mixing, a GRU per server."""

    def __init__(self, token_dim: int, hidden: int, recurrent: bool) -> None:
        super().__init__()
        self.hidden = hidden
        self.encode = nn.Linear(token_dim, hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True) if recurrent else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mix(with_mean(F.relu(self.encode(x)))))

    def forward(
        self, x: torch.Tensor, h: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A window x (B, T, n, D) from states h (1, B·n, H) or zero: (B, T, n, H), last state."""
        u = self.embed(x)
        if self.gru is None:
            return u, h
        b, t, n, k = u.shape
        z, h = self.gru(u.transpose(1, 2).reshape(b * n, t, k), h)
        return z.view(b, n, t, k).transpose(1, 2), h

    def step(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step x (B, n, D), states h (B, n, H) → the new per-server features/states."""
        u = self.embed(x)
        return u if self.gru is None else gru_cell(self.gru, u, h)


def server_head(hidden: int, out: int) -> nn.Sequential:
    """A per-server head on each server's features beside their mean (with_mean)."""
    return nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, out))


class SetActor(Sampling, nn.Module):
    """The equivariant actor (arch 'equivariant'): tokens (B, T, n, D) → the flat actor's
    raw layout over the n servers, so `Sampling` applies."""

    def __init__(self, cfg: SacGruConfig) -> None:
        super().__init__()
        self.num_levels = cfg.num_levels
        self.neutral = neutral_level(cfg)
        self.trunk = ServerTrunk(cfg.token_dim, cfg.hidden, cfg.recurrence == "server")
        self.head = server_head(cfg.hidden, self.num_levels or 2)
        # Zero output weights: the untrained actor's mode is exactly the neutral action
        # (static SED's weights to the bit, not within 1e-3: near-ties between servers
        # would otherwise break by noise), and the first update moves them off zero.
        last = cast(nn.Linear, self.head[-1])
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.zero_()
            if self.num_levels:
                last.bias[self.neutral] = 1.0
            else:
                last.bias[1] = log_std_bias(cfg)

    def _raw(self, z: torch.Tensor) -> torch.Tensor:
        out = self.head(with_mean(z))  # (..., n, K or 2)
        return out.flatten(-2) if self.num_levels else out.transpose(-1, -2).flatten(-2)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, h = self.trunk(x, h)
        return self._raw(z), h

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk.step(x, h)
        return self._raw(h), h


class SetCritic(nn.Module):
    """The equivariant critic: `features` (B, T, n, H), then `q` pooled over the servers."""

    def __init__(self, cfg: SacGruConfig) -> None:
        super().__init__()
        self.num_levels = cfg.num_levels
        self.trunk = ServerTrunk(cfg.stored_dim, cfg.hidden, cfg.recurrence == "server")
        k = cfg.hidden
        if self.num_levels:
            self.head = server_head(k, self.num_levels)
        else:
            self.head = nn.Sequential(nn.Linear(2 * k + 2, k), nn.ReLU(), nn.Linear(k, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)[0]

    def q(self, h: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_levels:
            return self.head(with_mean(h))  # (..., n, K)
        if a is None:
            raise ValueError("a continuous critic needs the action")
        act = a.unsqueeze(-1)
        x = torch.cat([with_mean(h), with_mean(act)], -1)
        return self.head(x).squeeze(-1).mean(-1)


# -- the learner ----------------------------------------------------------------------------


def update_splits(cfg: SacGruConfig) -> bool:
    """Whether an update runs its independent passes on two threads (base.splits_updates,
    and critics of their own trunks)."""
    return cfg.critic_trunk == "own" and splits_updates(cfg.update_threads, cfg.torch_threads)


class Learner:
    """Actor, twin critics with Polyak targets, entropy temperature and their optimisers."""

    def __init__(
        self,
        cfg: SacGruConfig,
        obs_dim: int,
        num_servers: int,
        seed: int,
        critic: Callable[[int, int, SacGruConfig], nn.Module] | None = None,
    ) -> None:
        """`critic(obs_dim, num_servers, cfg)` replaces `Critic` (a user's network: it must
        offer Critic's `features` and `q`)."""
        torch.manual_seed(seed)
        self.cfg, self.obs_dim, self.n = cfg, obs_dim, num_servers
        self.central = cfg.critic_view == "central"
        """The replay's tokens carry CENTRAL_COLUMNS the actor does not read."""
        self.reward_norm = RunningNorm(1, math.inf)
        trunk = cfg.critic_trunk
        self.norm: RunningNorm
        self.actor: Actor | SetActor
        if cfg.arch == "equivariant":
            self.norm = TokenNorm(NUM_FEATURES, cfg.stored_dim, cfg.feature_clip)
            self.actor = SetActor(cfg)
        else:
            self.norm = RunningNorm(obs_dim, cfg.feature_clip, log1p=True)
            self.actor = Actor(obs_dim, num_servers, cfg)
        if critic is not None:
            self.critic1 = cast(Critic, critic(obs_dim, num_servers, cfg))
            self.critic2 = cast(Critic, critic(obs_dim, num_servers, cfg))
        elif cfg.arch == "equivariant":
            self.critic1 = cast(Critic, SetCritic(cfg))
            self.critic2 = cast(Critic, SetCritic(cfg))
        else:  # GRUs: one per critic ('own'), critic1's for both ('pair'), the actor's
            self.critic1 = Critic(obs_dim, num_servers, cfg, trunk=trunk != "shared")
            self.critic2 = Critic(obs_dim, num_servers, cfg, trunk=trunk == "own")
        self.target1 = copy.deepcopy(self.critic1).requires_grad_(False)
        self.target2 = copy.deepcopy(self.critic2).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), requires_grad=True)
        self.shared, self.pair = trunk == "shared", trunk == "pair"
        critics = [*self.critic1.parameters(), *self.critic2.parameters()]
        targets: list[torch.Tensor] = [*self.target1.parameters(), *self.target2.parameters()]
        if self.shared:
            # The actor's encoder and GRU belong to the critics' loss, with a Polyak target
            # of their own; the actor's loss trains its head.
            flat = cast(Actor, self.actor)  # 'shared' needs arch 'flat'
            self.target_actor = copy.deepcopy(flat).requires_grad_(False)
            critics += [*flat.encode.parameters(), *flat.gru.parameters()]
            targets += [*self.target_actor.encode.parameters(), *self.target_actor.gru.parameters()]
            self.actor_params = list(flat.head.parameters())
        else:
            self.actor_params = list(self.actor.parameters())
        self.critic_params = critics
        # fused: one kernel over every parameter instead of a dozen ops per group
        # (Adam's same update; the last float bits may differ from the for-each form).
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=cfg.critic_lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, fused=True)
        self._polyak_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] = (
            targets,
            list(self.critic_params),
        )
        self.updates = 0

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero GRU states for `batch` sequences: (1, batch, H) as nn.GRU takes them, or
        (1, batch, n, H) for the equivariant actor (a state per server)."""
        if self.cfg.arch == "equivariant":
            return torch.zeros(1, batch, self.n, self.cfg.hidden)
        return torch.zeros(1, batch, self.cfg.hidden)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, h: torch.Tensor, deterministic: bool = False
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Actions for a batch of raw observations (E, D), advancing the GRU states h (E, H)
        (equivariant: rows of the replay's tokens, stored_dim per server)."""
        x = self.norm(torch.as_tensor(obs, dtype=torch.float32).view(len(obs), -1))
        raw, h = self.actor.step(x[..., : self.cfg.token_dim] if self.central else x, h)
        a = self.actor.mode(raw) if deterministic else self.actor.sample(raw)[0]
        return a.numpy(), h

    @torch.no_grad()
    def _target_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target critics' recurrent features of the next observations."""
        if self.shared:
            t1 = t2 = self.target_actor.features(x)[:, 1:]
        elif self.pair:
            t1 = t2 = self.target1.features(x)[:, 1:]
        else:
            t1, t2 = self.target1.features(x)[:, 1:], self.target2.features(x)[:, 1:]
        return t1, t2

    def _q_taken(self, critic: Critic, h: torch.Tensor, batch: SequenceBatch) -> torch.Tensor:
        """The critic's Q of the stored actions, (B, T)."""
        if self.actor.num_levels:
            idx = batch.action.unsqueeze(-1)
            return critic.q(h).gather(-1, idx).squeeze(-1).mean(-1)
        return critic.q(h, batch.action)

    def _critic_pass(
        self, critic: Critic, x: torch.Tensor, y: torch.Tensor, batch: SequenceBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One own-trunk critic's features, Q and its half of the critic loss, back-propagated
        (its parameters only): the two halves run on two threads."""
        h = critic.features(x)[:, :-1]
        q = self._q_taken(critic, h, batch)
        ((((q - y) ** 2) * batch.mask).sum() / batch.mask.sum()).backward()
        return h, q

    def update(self, batch: SequenceBatch) -> dict[str, float]:
        """One gradient step on the critics, the actor and α, then Polyak-average the targets.

        With update_threads 2 and critics of their own trunks, the target critics' forward
        runs beside the actor's, and each critic's loss and backward beside the other's
        (the critic loss is their sum, so its gradients are the two halves'): the same
        results bit for bit as one thread (tests/plugins/test_sac_gru.py)."""
        cfg = self.cfg
        side = (
            update_side_thread(cfg.update_threads, cfg.torch_threads)
            if cfg.critic_trunk == "own"
            else None
        )
        x = self.norm(batch.obs)
        mask = batch.mask
        denom = mask.sum()
        alpha = self.log_alpha.exp().detach()
        targets = side.submit(self._target_features, x) if side is not None else None
        if self.shared:
            flat = cast(Actor, self.actor)
            z = flat.features(x)
            raw = flat.head(z.detach())
        else:
            raw, _ = self.actor(x[..., : cfg.token_dim] if self.central else x, None)
        reward = cfg.reward_scale * self.reward_norm(batch.reward.unsqueeze(-1)).squeeze(-1)
        not_done = 1.0 - batch.terminated

        with torch.no_grad():
            nxt = raw.detach()[:, 1:]
            t1, t2 = targets.result() if targets is not None else self._target_features(x)
            if self.actor.num_levels:
                logp_n = self.actor.log_probs(nxt)
                qt = torch.min(self.target1.q(t1), self.target2.q(t2))
                v_next = (logp_n.exp() * (qt - alpha * logp_n)).sum(-1).mean(-1)
            else:
                a_n, lp_n = self.actor.sample(nxt)
                v_next = torch.min(self.target1.q(t1, a_n), self.target2.q(t2, a_n)) - alpha * lp_n
            y = reward + cfg.gamma * not_done * v_next

        self.critic_opt.zero_grad(set_to_none=True)
        if side is not None:
            second = side.submit(self._critic_pass, self.critic2, x, y, batch)
            h1, q1 = self._critic_pass(self.critic1, x, y, batch)
            h2, q2 = second.result()
            with torch.no_grad():
                critic_loss = ((((q1 - y) ** 2 + (q2 - y) ** 2) * mask).sum()) / denom
        else:
            if self.shared:
                h1 = h2 = z[:, :-1]
            elif self.pair:
                h1 = h2 = self.critic1.features(x)[:, :-1]
            else:
                h1, h2 = self.critic1.features(x)[:, :-1], self.critic2.features(x)[:, :-1]
            q1, q2 = self._q_taken(self.critic1, h1, batch), self._q_taken(self.critic2, h2, batch)
            critic_loss = ((((q1 - y) ** 2 + (q2 - y) ** 2) * mask).sum()) / denom
            critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic_params, cfg.max_grad_norm)
        self.critic_opt.step()

        g1, g2 = h1.detach(), h2.detach()  # the critics' recurrent features, as a fixed input
        cur = raw[:, :-1]
        if self.actor.num_levels:
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
        # Only the actor's gradients: autograd then skips the critic heads' weight
        # gradients the continuous loss would otherwise reach (and the step would ignore).
        actor_loss.backward(inputs=self.actor_params)
        nn.utils.clip_grad_norm_(self.actor_params, cfg.max_grad_norm)
        self.actor_opt.step()

        err = (mean_logp.detach() + cfg.entropy_target()) * mask
        alpha_loss = -(self.log_alpha * err).sum() / denom
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            torch._foreach_lerp_(*self._polyak_pairs, cfg.polyak)
        self.updates += 1
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "alpha": float(alpha),
            "entropy": -float((mean_logp.detach() * mask).sum() / denom),
        }

    # -- checkpoint arrays --

    def modules(self) -> dict[str, nn.Module]:
        return {
            "norm": self.norm,
            "reward_norm": self.reward_norm,
            "actor": self.actor,
            "critic1": self.critic1,
            "critic2": self.critic2,
            "target1": self.target1,
            "target2": self.target2,
            **({"target_actor": self.target_actor} if self.shared else {}),
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to resume: networks, normalisers, α and optimiser moments."""
        return to_arrays(self.modules(), self.optimizers(), {"log_alpha": self.log_alpha})

    def load_arrays(self, arrays: Mapping[str, np.ndarray], where: Path) -> None:
        load_arrays(arrays, where, self.modules(), self.optimizers(), {"log_alpha": self.log_alpha})


# -- the algorithm the training loop drives ------------------------------------------------


def rollout_envs(
    scenario: Scenario,
    cfg: SacGruConfig,
    count: int,
    hooks: Hooks,
) -> gym.vector.VectorEnv | EveryNode:
    """The rollout envs: `count` episodes of the scenario with this run's action and
    reward settings, as one LoadBalanceVectorEnv (a user's env_factory: gymnasium's
    SyncVectorEnv over its envs); autoreset disabled, collect resets ended episodes.
    With lb_nodes 'all' and several LB nodes: every node of each episode (EveryNode; with
    critic_view 'central' for one node too: it has the servers' truth)."""
    if scenario.dispatch != cfg.dispatch:
        scenario = scenario.replace(dispatch=cfg.dispatch)
    if hooks.env_factory is not None:
        factory = hooks.env_factory
        return gym.vector.SyncVectorEnv(
            [lambda: factory(scenario)] * count, autoreset_mode=AutoresetMode.DISABLED
        )
    reward: dict[str, Any] = {"reward_metric": cfg.reward_metric}
    if hooks.reward_fn is not None:
        reward = {"reward_metric": "custom", "reward_fn": hooks.reward_fn}
    kwargs: dict[str, Any] = {
        "action_type": cfg.action_type,
        "levels": tuple(cfg.levels),
        "weight_base": cfg.weight_base,
        "reward_field": cfg.reward_field,
        "reward_shaping": cfg.reward_shaping,
        **reward,
    }
    kwargs["parallel"] = not update_splits(cfg)  # (~5 % of the time is the envs')
    if cfg.lb_nodes == "all" and (scenario.lb_nodes > 1 or cfg.critic_view == "central"):
        return EveryNode(MultiAgentVectorEnv(count, scenario, **kwargs))
    return LoadBalanceVectorEnv(count, scenario, autoreset_mode=AutoresetMode.DISABLED, **kwargs)


class EveryNode:
    """hyper.lb_nodes 'all': a MultiAgentVectorEnv of E envs with A LB nodes (one server
    group: an agent is a node) as E·A rows of the vector-env interface SacGru steps:
    row e·A + k is node k of env e, its observation that node's (n, 12) features, its
    action that node's weights, its reward the env's team reward.  reset takes one seed
    per env, and a reset_mask per row resets the envs of the masked rows (`whole`)."""

    def __init__(self, envs: MultiAgentVectorEnv) -> None:
        if len(envs.groups) != 1:
            raise TrainingError(
                f"lb_nodes 'all': {envs.scenario.name} splits its servers into "
                f"{len(envs.groups)} groups; self-play needs one group (an agent per LB node)"
            )
        self.envs, self.nodes = envs, envs.scenario.lb_nodes
        self.num_envs = envs.num_envs * self.nodes

    def whole(self, mask: np.ndarray) -> np.ndarray:
        """The rows of the envs that have a masked row (an env restarts all its nodes)."""
        return np.repeat(np.asarray(mask).reshape(-1, self.nodes).any(1), self.nodes)

    def _rows(self, obs: np.ndarray) -> np.ndarray:
        return obs.reshape(self.num_envs, *obs.shape[2:])

    def central(self, configured: np.ndarray) -> np.ndarray:
        """Each row's CENTRAL_COLUMNS (its env's servers after the last interval, the
        same for every node of the env): (rows, n, 3) float32."""
        util, queue, caps = np.moveaxis(self.envs.truth, 1, 0)  # (E, n) each
        base = np.asarray(configured, dtype=np.float64)
        caps = np.maximum(caps, 1e-3 * base)  # a server whose workers all went: finite columns
        cols = np.stack([util, np.log1p(queue / caps), np.log(caps / base)], -1)
        return np.repeat(cols, self.nodes, axis=0).astype(np.float32)

    def reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options and "reset_mask" in options:
            mask = self.whole(options["reset_mask"])[:: self.nodes]
            options = {**options, "reset_mask": mask}
        obs, info = self.envs.reset(seed=seed, options=options)
        return self._rows(obs), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        shape = (self.envs.num_envs, self.nodes, self.envs.group_size)
        obs, reward, terminated, truncated, info = self.envs.step(np.reshape(actions, shape))
        a = self.nodes
        fct = {"fct_mean": info["fct_mean"].reshape(-1)}
        r, term, trunc = (np.repeat(x, a) for x in (reward, terminated, truncated))
        return self._rows(obs), r, term, trunc, fct


@dataclass(eq=False)
class _Group:
    """Rollout envs on one scenario (with a family: one sample at a time) and the episode
    state of each row (an env, or with lb_nodes 'all' one LB node of an env): streams
    first .. first + count - 1 of the replay."""

    first: int
    size: int
    """Rollout envs (episodes stepped at once)."""
    scenario: Scenario
    envs: gym.vector.VectorEnv | EveryNode | None
    obs: np.ndarray | None = None
    hidden: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    ret: np.ndarray = field(default_factory=lambda: np.zeros(0))
    length: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fct: list[list[float]] = field(default_factory=list)
    tokens: list[ServerTokens] = field(default_factory=list)
    """Each env's ServerTokens (the equivariant networks' input)."""

    @property
    def count(self) -> int:
        return len(self.ret)


class SacGru(LearnerAlgorithm[Learner]):
    """SAC-GRU for `marllbd.training.Trainer`: batched stochastic rollouts into the replay,
    `updates_per_step` gradient updates per environment step after `learning_starts`.

    Each env's GRU state is zeroed when its episode ends, so a new episode
    starts from the state the serving policy starts from after reset().
    """

    name: ClassVar[str] = ALGORITHM
    remote_taps: ClassVar[tuple[Tap, ...]] = (
        Tap("replay", ("start", "add"), stream_arg=0),
        Tap("learner.norm", ("update",)),
        Tap("learner.reward_norm", ("update",)),
    )
    """What a Ray rollout worker's collect does that the learner repeats
    (marllbd.distributed.rollouts): replay writes and normaliser updates."""

    def __init__(self, config: TrainConfig, scenario: Scenario, hooks: Hooks) -> None:
        cfg = self.cfg = SacGruConfig.from_pairs(config.hyper)
        torch.set_num_threads(cfg.torch_threads)
        self.check_episodes(scenario)
        self.custom_reward = hooks.reward_fn is not None
        self.hooks, self.episode_seconds = hooks, config.episode_seconds
        self.family = self._family(config, hooks)
        self.n, self.scenario = len(scenario.servers), scenario
        self.equivariant = cfg.arch == "equivariant"
        self.obs_dim = self.n * cfg.token_dim
        self.learner = Learner(cfg, self.obs_dim, self.n, config.seed, hooks.network)
        self.seed = config.seed
        if cfg.lb_nodes == "all" and (config.workers or hooks.env_factory is not None):
            raise TrainingError("lb_nodes 'all': not with Ray rollout workers or an env_factory")
        nodes = 1  # replay streams per rollout env: one per LB node with lb_nodes 'all'
        if cfg.lb_nodes == "all":
            nodes = scenario.lb_nodes if self.family is None else MAX_LB_NODES
        self.nodes = nodes
        self.streams = config.envs * nodes
        self.replay = self._new_replay(self.n, self.streams)
        self.replays = {self.n: self.replay}
        """With a family: a replay per server count (a batch has one count)."""
        self._rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5A11]))
        """Draws the family samples and their episodes' seeds."""
        sizes = [config.envs]
        if self.family is not None:
            groups = min(cfg.family_groups, config.envs)
            sizes = [len(c) for c in np.array_split(np.arange(config.envs), groups)]
        self.groups = [
            _Group(
                first=sum(sizes[:g]) * nodes,
                size=size,
                scenario=scenario if self.family is None else self._draw(),
                envs=rollout_envs(scenario, cfg, size, hooks) if self.family is None else None,
            )
            for g, size in enumerate(sizes)
        ]
        # Each env's first seed; later episodes continue its generator.
        self.env_seeds = [
            int(s.generate_state(1)[0])
            for s in np.random.SeedSequence(config.seed).spawn(config.envs)
        ]
        self._seen = self._begun = 0
        self._credit = 0.0
        self.started = False

    def check_episodes(self, scenario: Scenario) -> None:
        episode_rows = round(scenario.duration / scenario.control_interval)
        if episode_rows < self.cfg.window + 1:
            raise TrainingError(
                f"episode_seconds: episodes of {episode_rows} intervals of {scenario.name} are "
                f"shorter than burn_in + seq_len + 1 = {self.cfg.window + 1}; lengthen them or "
                "shorten the sequences"
            )

    def _family(self, config: TrainConfig, hooks: Hooks) -> Family | None:
        """config.family, loaded and checked against what family rollouts need."""
        if config.family is None:
            return None
        if self.cfg.arch != "equivariant":
            raise TrainingError(
                "family: its samples have different server counts; training on them needs "
                "the networks for any count (--hyper arch=equivariant)"
            )
        if config.workers or hooks.env_factory is not None:
            raise TrainingError("family: not with Ray rollout workers or an env_factory (yet)")
        try:
            return load_family(config.family)
        except (FamilyError, OSError) as exc:
            raise TrainingError(f"family: {exc}") from None

    def _draw(self) -> Scenario:
        """A fresh sample of the family (its seed from this run's generator); samples with
        several LB nodes are drawn again (SAC-GRU trains one LB), unless hyper.lb_nodes is
        'any' (then it trains LB 0 of them) or 'all' (every node of them)."""
        assert self.family is not None
        for _ in range(100):
            sc = self.family.sample(int(self._rng.integers(2**31)))
            if sc.lb_nodes == 1 or self.cfg.lb_nodes != "one":
                break
        else:
            raise TrainingError(
                f"family: {self.family.name} drew 100 samples with several LB nodes; SAC-GRU "
                "trains one LB (use a family with lb_nodes = 1, or --hyper lb_nodes=any|all)"
            )
        if self.episode_seconds is not None:
            sc = sc.replace(duration=self.episode_seconds)
        self.check_episodes(sc)
        return sc

    def _new_replay(self, n: int, streams: int) -> SequenceReplay:
        """A replay of `streams` streams, each keeping buffer_steps over the rollout envs
        rows (with lb_nodes 'all', a share per LB node: the replay holds up to
        `nodes` x buffer_steps rows, numpy allocating only the rows written)."""
        cfg = self.cfg
        per_env = max(streams // self.nodes, 1)
        return SequenceReplay(
            streams, max(cfg.buffer_steps // per_env, cfg.window + 1),
            n * cfg.stored_dim, n, cfg.window,
            seed=self.seed if n == self.n else self.seed + n,  # a run's own: its seed
        )  # fmt: skip

    def _replay(self, n: int) -> SequenceReplay:
        """Where transitions over n servers go: the replay (or, with a family, n's)."""
        if self.family is None:
            return self.replay
        if n not in self.replays:
            self.replays[n] = self._new_replay(n, self.streams)
        return self.replays[n]

    def tokens(self, obs: Any, group: _Group, rows: Any = None) -> np.ndarray:
        """What the networks read of the group's env observations (E, n, 12): the same
        (float32), or, for the equivariant networks, each env's ServerTokens (advancing
        their estimators: call once per interval, for the envs in `rows`, default all)."""
        x = np.asarray(obs, dtype=np.float32)
        if not self.equivariant:
            return x if rows is None else x[rows]
        rows = range(len(x)) if rows is None else rows
        tokens = np.stack([group.tokens[i](x[i]) for i in rows])
        if self.cfg.critic_view == "central":
            assert isinstance(group.envs, EveryNode)  # (the config's check)
            extra = group.envs.central(group.scenario.capacities)[list(rows)]
            tokens = np.concatenate([tokens, extra], -1)
        return tokens

    def _start(self, group: _Group, seeds: list[int]) -> None:
        """Start every env of `group` (on a fresh sample with a family), one seed each."""
        if self.family is not None:
            if group.envs is not None:
                group.scenario = self._draw()
            group.envs = rollout_envs(group.scenario, self.cfg, len(seeds), self.hooks)
        assert group.envs is not None
        seeds_any: Any = seeds  # one per env (gymnasium's stubs say int only)
        e = group.envs.num_envs  # rows: envs, or with lb_nodes 'all' their LB nodes
        group.tokens = [ServerTokens(self.cfg.hint) for _ in range(e)]
        for t in group.tokens:
            t.reset(group.scenario.capacities)
        obs = self.tokens(group.envs.reset(seed=seeds_any)[0], group)
        self.learner.norm.update(obs.reshape(e, -1))
        replay = self._replay(len(group.scenario.servers))
        for i in range(e):
            replay.start(group.first + i, obs[i])
        group.obs = obs
        group.hidden = self.learner.initial_state(e)[0]
        if self.equivariant:  # the group's own server count
            group.hidden = torch.zeros(e, len(group.scenario.servers), self.cfg.hidden)
        group.ret = np.zeros(e)
        group.length = np.zeros(e, dtype=np.int64)
        group.fct = [[] for _ in range(e)]

    def collect(self, budget: int) -> Collected:
        """One step of every env; with fewer than that many steps of `budget` left (the
        end of a run), the transitions of the first `budget` envs only: the others'
        episodes restart.  With a family, a group whose episodes all ended starts the
        next ones on a fresh sample."""
        if not self.started:
            at = 0
            for group in self.groups:
                self._start(group, self.env_seeds[at : at + group.size])
                at += group.size
            self.started = True
        finished: list[dict[str, float]] = []
        steps, live = 0, []
        for group in self.groups:
            e = min(max(budget - steps, 0), group.count)
            finished += self._collect(group, e)
            steps += e
            live.append(group.ret)
        return Collected(
            steps=steps, episodes=finished, live={"ret": float(np.mean(np.concatenate(live)))}
        )

    def _collect(self, group: _Group, e: int) -> list[dict[str, float]]:
        """Step the group's envs once; record the first e envs' transitions."""
        agent, obs, envs = self.learner, group.obs, group.envs
        assert obs is not None and envs is not None
        count, replay = group.count, self._replay(len(group.scenario.servers))
        actions, group.hidden = agent.act(obs.reshape(count, -1), group.hidden)
        next_obs, reward, terminated, truncated, info = envs.step(self.env_action(actions, obs))
        next_obs = self.tokens(next_obs, group)
        if e:  # e = 0: a run's last step ends before this group's envs
            agent.norm.update(next_obs[:e].reshape(e, -1))
            agent.reward_norm.update(reward[:e])
        fct_mean = info["fct_mean"]
        ended = terminated | truncated
        finished = []
        for i in range(e):
            s = group.first + i
            replay.add(s, actions[i], float(reward[i]), bool(terminated[i]), next_obs[i])
            group.ret[i] += reward[i]
            group.length[i] += 1
            if math.isfinite(fct_mean[i]):
                group.fct[i].append(float(fct_mean[i]))
            if ended[i]:
                finished.append(
                    {
                        "episode/return": float(group.ret[i]),
                        "episode/reward_mean": float(group.ret[i] / max(group.length[i], 1)),
                        "episode/fct_mean": float(np.mean(group.fct[i]))
                        if group.fct[i]
                        else math.nan,
                    }
                )
        restart = ended.copy()
        restart[e:] = True  # stepped but not recorded: their streams start again
        if isinstance(envs, EveryNode):
            restart = envs.whole(restart)  # an env restarts with all its nodes
        obs[:] = next_obs
        if self.family is not None and ended.all():
            self._start(group, [int(x) for x in self._rng.integers(2**31, size=group.size)])
        elif restart.any():
            fresh = envs.reset(options={"reset_mask": restart})[0]
            again = np.flatnonzero(restart).tolist()
            for i in again:
                group.tokens[i].reset(group.scenario.capacities)
            obs[again] = self.tokens(fresh, group, again)
            for i in again:
                group.ret[i], group.length[i], group.fct[i] = 0.0, 0, []
                replay.start(group.first + i, obs[i])
                agent.norm.update(obs[i].reshape(1, -1))
                group.hidden[i] = 0.0
        return finished

    def env_action(self, actions: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """What the envs step with for the actor's actions (E, n) on tokens (E, n, W): the
        same, or with residual 'adaptive' / 'gated' the actions on adaptive-sed's estimates.  The
        replay keeps the actor's own actions (the critics' input)."""
        if self.cfg.residual != "static":
            return on_estimate(actions, tokens, self.cfg.action_spec(), self.cfg.residual)
        return actions

    def _sampled(self) -> SequenceReplay | None:
        """The replay the next batch comes from: the one replay, or with a family one of
        those with a full window, in proportion to the rows they hold."""
        ready = [r for r in self.replays.values() if r.can_sample]
        if not ready:
            return None
        if len(ready) == 1:
            return ready[0]
        rows = np.array([np.minimum(r.rows, r.capacity).sum() for r in ready], dtype=np.float64)
        return ready[int(self._rng.choice(len(ready), p=rows / rows.sum()))]

    def update(self, steps: int) -> list[dict[str, float]]:
        """`updates_per_step` updates per new environment step, once `learning_starts` are in."""
        new, self._seen = steps - self._seen, steps
        cfg, losses = self.cfg, list[dict[str, float]]()
        if self.family is None:
            self.replays = {self.n: self.replay}  # a Ray learner's replay is replaced
        if steps < self._begun + cfg.learning_starts or self._sampled() is None:
            return losses
        self._credit += new * cfg.updates_per_step
        while self._credit >= 1.0:
            self._credit -= 1.0
            replay = self._sampled()
            assert replay is not None
            batch = replay.sample(cfg.batch_size, cfg.burn_in, bool(cfg.num_levels))
            losses.append(self.learner.update(batch))
        return losses

    def remote_streams(self, streams: int) -> None:
        """A replay of `streams` rollout streams (every Ray worker's envs) of the same
        total size, for a learner whose own envs do not step."""
        cfg = self.cfg
        self.replay = SequenceReplay(
            streams, max(cfg.buffer_steps // streams, cfg.window + 1), self.obs_dim, self.n,
            cfg.window, seed=self.seed,
        )  # fmt: skip

    def networks_manifest(self) -> dict[str, Any]:
        return manifest(self.cfg, self.obs_dim, self.n)

    def policy(self, lb: int = 0) -> SacGruPolicy | SetSacGruPolicy:
        """The serving policy of the current actor (any LB node runs the same one)."""
        served = to_arrays({"actor": self.learner.actor, "norm": self.learner.norm})
        return sac_gru_policy(served, self.manifest())

    def predict(
        self, obs: Any, state: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """The env action for one observation (or a batch) of the run's scenario and the
        state to pass next (the GRU state; with the equivariant networks, beside each
        observation's ServerTokens)."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1, self.n, NUM_FEATURES)
        if not self.equivariant:
            h = self.learner.initial_state(x.shape[0])[0] if state is None else state
            a, h = self.learner.act(x.reshape(len(x), -1), h, deterministic)
            return (a[0] if np.ndim(obs) <= 2 else a), h
        if state is None:
            tokens = [ServerTokens(self.cfg.hint) for _ in range(len(x))]
            for t in tokens:
                t.reset(self.scenario.capacities)
            state = (self.learner.initial_state(len(x))[0], tokens)
        h, tokens = state
        rows = np.stack([t(f) for t, f in zip(tokens, x, strict=True)])
        stored = rows
        if self.cfg.critic_view == "central":  # columns only the critics read: no truth here
            stored = np.pad(rows, ((0, 0), (0, 0), (0, len(CENTRAL_COLUMNS))))
        a, h = self.learner.act(stored.reshape(len(x), -1), h, deterministic)
        a = self.env_action(a, rows)
        return (a[0] if np.ndim(obs) <= 2 else a), (h, tokens)

    def begin(self, steps: int) -> None:
        """`learn` starts (or resumes, with an empty replay) at `steps`: updates wait for
        `learning_starts` more steps of fresh rollouts."""
        self._seen = steps
        if not any(r.rows.any() for r in self.replays.values()):
            self._begun = steps


def manifest(cfg: SacGruConfig, obs_dim: int, num_servers: int) -> dict[str, Any]:
    """What a checkpoint's manifest says of the networks (and serving reads back).  The
    equivariant networks are not tied to a server count: dims say 0 servers, with the
    token size instead, and "accepts" says any count."""
    dims = {"obs_dim": obs_dim, "num_servers": num_servers}
    if cfg.arch == "equivariant":
        dims = {"obs_dim": 0, "num_servers": 0, "token_dim": cfg.token_dim}
    return {
        "dims": {**dims, "hidden": cfg.hidden, "num_levels": cfg.num_levels},  # a resume checks
        "accepts": {"num_servers": "any" if cfg.arch == "equivariant" else num_servers},
        "hyper": asdict(cfg),
        "action": cfg.action_spec().as_dict(),
        "reward": {
            "metric": cfg.reward_metric,
            "field": cfg.reward_field,
            "shaping": cfg.reward_shaping,
            "scale": cfg.reward_scale,
        },
        "layout": None,
    }


def __getattr__(name: str) -> Any:
    """`from marllbd_rl.sac_gru import SAC_GRU_Agent` (where it used to live) keeps working."""
    if name == "SAC_GRU_Agent":
        from marllbd_rl.agents import SAC_GRU_Agent

        return SAC_GRU_Agent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
