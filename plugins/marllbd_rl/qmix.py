"""QMIX (Rashid et al., 2018) for cooperating load-balancer agents, read top to bottom.

Roles as in EPyMARL: one recurrent agent network shared by every agent (its id
one-hot in the input), a monotonic mixer whose weights come from hypernetworks
on the global state `env.state()`, a learner (double-Q targets, masked TD loss
over replayed episode windows with burn-in, gradient-norm clipping, target
networks), and ε-greedy action selection.  Then `Qmix`, the algorithm the
training loop (marllbd.training.trainer) drives.  A daemon serves one LB's
agents with the numpy `marllbd.policies.learned.QMIXPolicy`, which evaluation
uses too.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marllbd.distributed.rollouts import Tap
from marllbd.envs.multi_vector import MultiAgentSyncVectorEnv, MultiAgentVectorEnv
from marllbd.envs.reward import (
    DEFAULT_REWARD_FIELD,
    DEFAULT_REWARD_METRIC,
    DEFAULT_REWARD_SHAPING,
)
from marllbd.features import NUM_FEATURES
from marllbd.policies.actions import ActionSpec
from marllbd.policies.learned import (
    Layout,
    QMIXPolicy,
    ServerTokens,
    SetQMIXPolicy,
    capacity_token,
    level_exponents,
    on_estimate,
    qmix_policy,
)
from marllbd.sim.family import Family, FamilyError, load_family
from marllbd.sim.scenario import Scenario
from marllbd.training import hyper
from marllbd.training.errors import TrainingError
from marllbd.training.trainer import Collected, Hooks, TrainConfig
from marllbd_rl.base import LearnerAlgorithm, splits_updates, update_side_thread
from marllbd_rl.norm import RunningNorm, TokenNorm
from marllbd_rl.replay import EpisodeBatch, EpisodeBuckets, EpisodeBuffer
from marllbd_rl.sac_gru import ServerTrunk, server_head, with_mean
from marllbd_rl.torchio import load_arrays, to_arrays

ALGORITHM = "qmix"
ARCHS = ("flat", "equivariant")
TOKEN_WIDTH = NUM_FEATURES + 1
"""arch 'equivariant': an agent's token per server, its features and capacity token."""
STATE_WIDTH = NUM_FEATURES + 3
"""arch 'equivariant': the mixer's token per (LB node, server): that node's features, the
server's utilization and queue per worker (the global truth) and its capacity token."""

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
    train_every: int = 32
    """Environment steps (summed over the rollout envs) per gradient update: one per step
    of the default 32 envs.  Measured on paper-7 (seeds 0 and 1, validation seeds
    1001-1004): 2 envs at 4 (the old default) ran 370 env steps/s and reached 1.064-1.075x
    SED's mean FCT in ~27 s; 32 envs at 32 ran ~2 900 steps/s (under load) and reached
    1.041-1.077x; at 64, ~4 500 steps/s and 1.05-1.07x.  QMIX loses to SED in every
    setting (docs/benchmarks.md, "Time to quality"): this buys speed, not quality."""
    eps_start: float = 1.0
    """ε of the ε-greedy exploration at step 0 (per server head)."""
    eps_end: float = 0.05
    """ε after the annealing."""
    eps_anneal_steps: int = 80_000
    """Environment steps (summed over the envs) over which ε falls linearly from eps_start
    to eps_end: 2 500 steps of the default 32 envs."""
    target_every: int = 1
    """Updates between target-network updates."""
    torch_threads: int = 1
    """CPU threads torch may use (these small networks run no faster on two)."""
    update_threads: int = 2
    """With torch_threads 1, 2 unrolls the target agent network on a second thread beside
    the online one (marllbd_rl.base.side_thread): the same results bit for bit; 1 runs
    the two in turn."""
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
    reward_field: str = DEFAULT_REWARD_FIELD
    """The feature whose Jain fairness over the servers is the team reward (the envs'
    default, chosen by measurement: docs/reward.md)."""
    arch: str = "flat"
    """'flat': an agent reads its servers' features flattened beside its one-hot id, so a
    checkpoint fits one layout.  'equivariant': an agent is one LB node, each server a
    token (its features and capacity token) through the universal SAC-GRU's per-server
    trunk (sac_gru.ServerTrunk: shared encoder, mean context, a GRU per server) and a
    shared per-server head of L utilities; no agent id, and the mixer's hypernetworks read
    state tokens pooled over servers and agents (SetMixer): one checkpoint for any number
    of servers and LB nodes, trainable on a family (a replay bucket per layout)."""
    hint: str = "none"
    """arch 'equivariant': 'adaptive' adds adaptive-sed's capacity estimate to each
    server's token (marllbd.policies.learned.ServerTokens) and scales the chosen levels
    by the estimates instead of the configured capacities (the residual on adaptive-sed
    that carries the universal SAC-GRU's gain): level 1.0 everywhere is adaptive-sed."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"qmix.arch: expected one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.hint not in ("none", "adaptive"):
            raise ValueError(f"qmix.hint: expected 'none' or 'adaptive', got {self.hint!r}")
        if self.hint == "adaptive" and (
            self.arch != "equivariant" or self.weight_base != "capacity"
        ):
            raise ValueError(
                "qmix.hint: 'adaptive' needs arch 'equivariant' and weight_base 'capacity'"
            )
        positive = ("hidden", "mixing_embed", "hypernet_hidden", "batch_size", "seq_len")
        if self.update_threads not in (1, 2):
            raise ValueError(f"qmix.update_threads: expected 1 or 2, got {self.update_threads!r}")
        for name in (*positive, "buffer_episodes", "train_every", "target_every", "torch_threads"):
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

    @classmethod
    def from_pairs(cls, pairs: Any) -> QMIXConfig:
        """From (name, value) overrides (CLI strings or values); errors name the key."""
        return hyper.parse(cls, pairs, algorithm=ALGORITHM)


# -- networks -------------------------------------------------------------------


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
        if t == 1:  # a rollout's or the daemon's single step: the cell is cheapest
            h = self.gru(x[:, 0], h)
            return self.head(h).view(n, 1, self.rows, self.n_levels), h
        # A whole sequence in one call of ATen's GRU loop, with the cell's own weights: the
        # same equations and bits as stepping the cell in Python, ~20 % cheaper forward and
        # backward (one input projection for all steps, no per-step Python dispatch).
        cell = self.gru
        weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        z, h_t = torch.gru(x, h.unsqueeze(0), weights, True, 1, 0.0, self.training, False, True)
        q = self.head(z)
        return q.view(n, t, self.rows, self.n_levels), h_t[0]


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


class SetAgent(nn.Module):
    """The equivariant agent (arch 'equivariant'): one LB node's server tokens (..., n, W)
    → L utilities per server (..., n, L), for any n; permuting the servers permutes them.
    The universal SAC-GRU's trunk with a Q head: the numpy serving path is the same code
    (marllbd.policies.learned.SetQMIXPolicy)."""

    def __init__(self, n_levels: int, hidden: int, clip: float, width: int = TOKEN_WIDTH) -> None:
        super().__init__()
        self.hidden = hidden
        self.norm = TokenNorm(NUM_FEATURES, width, clip)
        self.trunk = ServerTrunk(width, hidden, recurrent=True)
        self.head = server_head(hidden, n_levels)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """A window obs (N, T, n, W) from zero state → q (N, T, n, L)."""
        z, _ = self.trunk(self.norm(obs.flatten(-2)))
        return self.head(with_mean(z))

    def step(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step obs (N, n, W), states h (N, n, H) → q (N, n, L), the new states."""
        h = self.trunk.step(self.norm(obs.flatten(-2)), h)
        return self.head(with_mean(h)), h


class SetMixer(nn.Module):
    """Monotonic mixing for any number of agents A and servers n (arch 'equivariant').

    State tokens (..., A·n·STATE_WIDTH) are encoded per (node, server) and pooled: m_a the
    mean over node a's servers, g the mean of m over the nodes.  Then
    Q_tot = elu(mean_a q_a |W1([m_a, g])| + b1(g)) · |w2(g)| + V(g): the weights stay
    non-negative (∂Q_tot/∂q_a ≥ 0, QMIX's condition), the mean keeps Q_tot on one scale
    whatever A, and permuting the agents (or the servers) leaves Q_tot unchanged."""

    def __init__(self, embed: int, hyper: int, clip: float) -> None:
        super().__init__()
        self.norm = TokenNorm(STATE_WIDTH - 1, STATE_WIDTH, clip)
        self.encode = nn.Linear(STATE_WIDTH, hyper)
        self.w1 = nn.Sequential(nn.Linear(2 * hyper, hyper), nn.ReLU(), nn.Linear(hyper, embed))
        self.b1 = nn.Linear(hyper, embed)
        self.w2 = nn.Sequential(nn.Linear(hyper, hyper), nn.ReLU(), nn.Linear(hyper, embed))
        self.v = nn.Sequential(nn.Linear(hyper, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """q (..., A) chosen agent utilities, state (..., A·n·STATE_WIDTH) → Q_tot (...)."""
        a = q.shape[-1]
        tokens = self.norm(state).unflatten(-2, (a, -1))  # (..., A, n, W)
        m = F.relu(self.encode(tokens)).mean(-2)  # (..., A, H)
        g = m.mean(-2)  # (..., H)
        w1 = self.w1(torch.cat([m, g.unsqueeze(-2).expand_as(m)], -1)).abs()  # (..., A, E)
        hidden = F.elu((q.unsqueeze(-1) * w1).mean(-2) + self.b1(g))
        return (hidden * self.w2(g).abs()).sum(-1) + self.v(g).squeeze(-1)


def agent_utility(
    q: torch.Tensor, actions: torch.Tensor, head_mask: torch.Tensor | None
) -> torch.Tensor:
    """Each agent's utility at its own actions: the mean of q_i(actions_i) over its real rows
    (every row without a mask: the equivariant agents' rows are all real servers).

    q (..., A, rows, L), actions (..., A, rows) int64, head_mask (A, rows) → (..., A).
    """
    chosen = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    if head_mask is None:
        return chosen.mean(-1)
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
    """Agents (0 with arch 'equivariant': any number of LB nodes)."""
    rows: int
    """Server heads per agent (the largest group; 0 with arch 'equivariant': any)."""
    features: int
    """Columns per server row (with arch 'equivariant': the token, TOKEN_WIDTH)."""
    levels: int
    state_dim: int
    """The global state's size (with arch 'equivariant': a state token's, STATE_WIDTH)."""
    hidden: int
    mixing_embed: int
    hypernet_hidden: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class Learner:
    """Online and target agent network and mixer, their optimiser, and the QMIX update."""

    def __init__(
        self,
        dims: Dims,
        config: QMIXConfig,
        head_mask: np.ndarray | None,
        mixer: Callable[[int, int, int, int, float], nn.Module] | None = None,
    ) -> None:
        """`mixer(n_agents, state_dim, embed, hyper, clip)` replaces `Mixer` (a user's
        network: q (..., A), state (..., S) → Q_tot (...), monotonic in every q).  With
        arch 'equivariant' the networks are SetAgent and SetMixer, and no head mask."""
        self.dims, self.config = dims, config
        self.equivariant = config.arch == "equivariant"
        clip = config.norm_clip
        self.agent: AgentNetwork | SetAgent
        if self.equivariant:
            if mixer is not None:
                raise TrainingError("network: a custom mixer needs arch 'flat' (sized by A)")
            self.agent = SetAgent(dims.levels, dims.hidden, clip, dims.features)
            self.mixer: nn.Module = SetMixer(dims.mixing_embed, dims.hypernet_hidden, clip)
        else:
            self.agent = AgentNetwork(
                dims.rows, dims.features, dims.n_agents, dims.levels, dims.hidden, clip
            )
            self.mixer = (mixer or Mixer)(
                dims.n_agents, dims.state_dim, dims.mixing_embed, dims.hypernet_hidden, clip
            )
        self.target_agent = copy.deepcopy(self.agent)
        self.target_mixer = copy.deepcopy(self.mixer)
        for p in (*self.target_agent.parameters(), *self.target_mixer.parameters()):
            p.requires_grad_(False)
        self.params = [*self.agent.parameters(), *self.mixer.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, fused=True)
        self.head_mask = None if head_mask is None else torch.as_tensor(head_mask).float()
        self.ids = torch.eye(dims.n_agents)
        self.updates = 0

    def observe(self, obs: np.ndarray, state: np.ndarray) -> None:
        """Update the feature and state statistics with rollout data (…, rows, F) and (…, S)."""
        self.agent.norm.update(obs)
        cast(RunningNorm, self.mixer.norm).update(state)

    def _unroll(self, net: AgentNetwork | SetAgent, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, T, A, rows, F) from zero hidden state → q (B, T, A, rows, L)."""
        b, t, a = obs.shape[:3]
        flat = obs.transpose(1, 2).reshape(b * a, t, *obs.shape[3:])
        if isinstance(net, SetAgent):
            q = net(flat)
        else:
            q, _ = net(flat, self.ids.repeat(b, 1), torch.zeros(b * a, self.dims.hidden))
        return q.view(b, a, t, *q.shape[2:]).transpose(1, 2)

    @torch.no_grad()
    def _target_unroll(self, obs: torch.Tensor) -> torch.Tensor:
        return self._unroll(self.target_agent, obs)

    def loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked mean squared TD error of Q_tot against double-Q targets."""
        obs = torch.from_numpy(batch.obs)
        state = torch.from_numpy(batch.state)
        actions = torch.from_numpy(batch.actions)
        reward = torch.from_numpy(batch.reward)
        mask = torch.from_numpy(batch.mask)
        side = update_side_thread(self.config.update_threads, self.config.torch_threads)
        target_q = side.submit(self._target_unroll, obs) if side is not None else None
        q = self._unroll(self.agent, obs)
        # The mixers have no recurrence: run them only at the transitions the loss counts
        # (burn-in and padding carry weight 0), the same loss at a fraction of their cost.
        counted = mask.bool()
        chosen = agent_utility(q[:, :-1], actions, self.head_mask)[counted]
        q_tot = self.mixer(chosen, state[:, :-1][counted])
        with torch.no_grad():
            # Double Q: the online network picks the next actions, the target network rates them.
            best = q[:, 1:].argmax(-1)
            q_next = agent_utility(
                (target_q.result() if target_q is not None else self._target_unroll(obs))[:, 1:],
                best,
                self.head_mask,
            )[counted]
            # Only a real termination stops the bootstrap; a time-limit truncation does not.
            bootstrap = 1.0 - torch.from_numpy(batch.terminated)[counted]
            target = reward[counted] + self.config.gamma * bootstrap * self.target_mixer(
                q_next, state[:, 1:][counted]
            )
        td = q_tot - target
        count = mask.sum().clamp_min(1.0)
        loss = (td**2).sum() / count
        with torch.no_grad():
            stats = {
                "q_tot": float(q_tot.sum() / count),
                "td_abs": float(td.abs().sum() / count),
            }
        return loss, stats

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
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
        targets: list[torch.Tensor] = [
            *self.target_agent.parameters(),
            *self.target_mixer.parameters(),
        ]
        torch._foreach_lerp_(targets, list[torch.Tensor](self.params), self.config.target_tau)
        for online, target in ((self.agent, self.target_agent), (self.mixer, self.target_mixer)):
            for b, tb in zip(online.buffers(), target.buffers(), strict=True):
                tb.copy_(b)

    def modules(self) -> dict[str, nn.Module]:
        return {
            "agent": self.agent,
            "mixer": self.mixer,
            "target_agent": self.target_agent,
            "target_mixer": self.target_mixer,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs: networks, normalisers, optimiser moments."""
        return to_arrays(self.modules(), {"adam": self.optimizer})

    def load_arrays(self, arrays: Mapping[str, np.ndarray], where: Path) -> None:
        load_arrays(arrays, where, self.modules(), {"adam": self.optimizer})


# -- the algorithm the training loop drives ---------------------------------------------


class Qmix(LearnerAlgorithm[Learner]):
    """QMIX for `marllbd.training.Trainer`: `envs` multi-agent episodes stepped in lockstep
    as one MultiAgentVectorEnv (a user's env_factory's envs: a MultiAgentSyncVectorEnv),
    with one batched agent-network call; whole episodes go to the replay when they end; one
    update per `train_every` environment steps after `warmup_steps`.  With arch
    'equivariant' on a family, each round of episodes runs on a fresh sample (all envs on
    it, each with its own seed), and the replay keeps a bucket per layout.

    A run whose step budget ends inside an episode keeps that episode out of the replay
    (training stops there anyway)."""

    name: ClassVar[str] = ALGORITHM
    remote_taps: ClassVar[tuple[Tap, ...]] = (
        Tap("buffer", ("add",)),
        Tap("learner", ("observe",)),
    )
    """What a Ray rollout worker's collect does that the learner repeats
    (marllbd.distributed.rollouts): whole episodes into the replay and the normalisers'
    updates (the worker's own follow the broadcasts)."""

    def __init__(self, config: TrainConfig, scenario: Scenario, hooks: Hooks) -> None:
        cfg = self.cfg = QMIXConfig.from_pairs(config.hyper)
        torch.set_num_threads(cfg.torch_threads)
        self.equivariant = cfg.arch == "equivariant"
        self.family: Family | None = None
        if config.family is not None:
            if not self.equivariant:
                raise TrainingError(
                    "family: QMIX's flat networks are sized by one layout; train it on a "
                    "scenario, on several samples in turn (marllbd train --family --samples), "
                    "or with the networks for any layout (--hyper arch=equivariant)"
                )
            if config.workers or hooks.env_factory is not None:
                raise TrainingError("family: not with Ray rollout workers or an env_factory")
            try:
                self.family = load_family(config.family)
            except (FamilyError, OSError) as exc:
                raise TrainingError(f"family: {exc}") from None
        self.config, self.hooks = config, hooks
        self._continuous = ActionSpec(kind="continuous", levels=cfg.levels, base=cfg.weight_base)
        """hint 'adaptive': the envs' action, the chosen levels moved onto the estimates."""
        self._exponents = level_exponents(self._continuous)
        self.custom_reward = hooks.reward_fn is not None
        streams = np.random.SeedSequence(config.seed).spawn(4)
        self._act_rng = np.random.default_rng(streams[0])
        self._env_rng = np.random.default_rng(streams[1])
        self._draw_rng = np.random.default_rng(streams[3])
        """Draws the family samples (arch 'equivariant')."""
        self.envs = self._envs(self._draw() if self.family is not None else scenario)
        env = self.envs
        self.layout = None if self.equivariant else Layout.of(env)
        self.rows = 0 if self.equivariant else env.group_size
        self.dims = Dims(
            n_agents=0 if self.equivariant else len(env.possible_agents),
            rows=self.rows,
            features=ServerTokens(cfg.hint).width if self.equivariant else NUM_FEATURES,
            levels=len(cfg.levels),
            state_dim=STATE_WIDTH
            if self.equivariant
            else int(np.prod(env.state_space.shape or (0,))),
            hidden=cfg.hidden,
            mixing_embed=cfg.mixing_embed,
            hypernet_hidden=cfg.hypernet_hidden,
        )
        mask = None if self.layout is None else self.layout.head_mask(self.rows)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.learner = Learner(self.dims, cfg, mask, hooks.network)
        buffer_seed = int(streams[2].generate_state(1)[0])
        self.buffer: EpisodeBuffer | EpisodeBuckets
        if self.equivariant:
            self.buffer = EpisodeBuckets(cfg.buffer_episodes, seed=buffer_seed)
        else:
            max_len = math.ceil(scenario.duration / scenario.control_interval) + 1
            self.buffer = EpisodeBuffer(
                cfg.buffer_episodes,
                max_len,
                (self.dims.n_agents, self.rows, self.dims.features),
                self.dims.state_dim,
                seed=buffer_seed,
            )
        self._steps = 0
        self._begun = (0, 0)
        self._episode: dict[str, list[np.ndarray]] | None = None
        self._used = False  # the envs ran an episode: with a family, the next is a new sample

    def _draw(self) -> Scenario:
        """A fresh sample of the family, its seed from this run's generator."""
        assert self.family is not None
        sc = self.family.sample(int(self._draw_rng.integers(2**31)))
        if self.config.episode_seconds is not None:
            sc = sc.replace(duration=self.config.episode_seconds)
        return sc

    def _envs(self, scenario: Scenario) -> MultiAgentVectorEnv | MultiAgentSyncVectorEnv:
        """The rollout envs on `scenario`: config.envs episodes stepped in lockstep."""
        cfg, hooks = self.cfg, self.hooks
        self._cap_token = capacity_token(scenario.capacities)
        self._capacities = scenario.capacities
        if hooks.env_factory is not None:
            if self.equivariant:
                raise TrainingError("env_factory: needs arch 'flat' (for now)")
            return MultiAgentSyncVectorEnv(
                [hooks.env_factory(scenario) for _ in range(self.config.envs)]
            )
        reward: dict[str, Any] = {}
        if hooks.reward_fn is not None:
            reward = {"reward_metric": "custom", "reward_fn": hooks.reward_fn}
        envs = MultiAgentVectorEnv(
            self.config.envs,
            scenario,
            action_type="continuous" if cfg.hint == "adaptive" else "discrete",
            levels=cfg.levels,
            weight_base=cfg.weight_base,
            reward_field=cfg.reward_field,
            parallel=not splits_updates(cfg.update_threads, cfg.torch_threads),
            **reward,
        )
        if self.equivariant and len(envs.groups) != 1:
            raise TrainingError(
                f"arch 'equivariant': {scenario.name} splits its servers into "
                f"{len(envs.groups)} groups; an equivariant agent is an LB node (one group)"
            )
        return envs

    def tokens(self, obs: np.ndarray, makers: list[ServerTokens] | None = None) -> np.ndarray:
        """arch 'equivariant': the agents' tokens (E, A, n, W) of observations (E, A, n,
        12), from each (env, agent)'s ServerTokens (the rollouts' own, advancing their
        estimators: once per interval): each server's features, its capacity token and,
        with hint 'adaptive', adaptive-sed's estimate."""
        makers = self._makers if makers is None else makers
        flat = obs.reshape(-1, *obs.shape[2:])
        return np.stack([m(x) for m, x in zip(makers, flat, strict=True)]).reshape(
            *obs.shape[:3], -1
        )

    def _fresh_makers(self, count: int) -> list[ServerTokens]:
        makers = [ServerTokens(self.cfg.hint) for _ in range(count)]
        for m in makers:
            m.reset(self._capacities)
        return makers

    def env_action(self, levels: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """What the envs step with for the chosen level indices (E, A, n): the same, or
        with hint 'adaptive' the continuous actions whose weights are level × adaptive-sed's
        estimate (on_estimate; the replay keeps the indices)."""
        if self.cfg.hint != "adaptive":
            return levels
        return on_estimate(self._exponents[levels], tokens, self._continuous)

    def state(self) -> np.ndarray:
        """The mixer's input: `envs.state()`, or with arch 'equivariant' its tokens
        (E, A·n·STATE_WIDTH): per (node, server) that node's features, the server's
        utilization and queue per worker, and its capacity token."""
        flat = self.envs.state()
        if not self.equivariant:
            return flat
        e, n = flat.shape[0], self.envs.num_servers
        a = len(self.envs.possible_agents)
        feats = flat[:, : a * n * NUM_FEATURES].reshape(e, a, n, NUM_FEATURES)
        truth = flat[:, a * n * NUM_FEATURES :].reshape(e, 1, 2, n).transpose(0, 1, 3, 2)
        cap = self._cap_token[None, None, :, None]
        parts = [feats, np.broadcast_to(truth, (e, a, n, 2)), np.broadcast_to(cap, (e, a, n, 1))]
        return np.concatenate(parts, -1, dtype=np.float32).reshape(e, -1)

    def _reset(self) -> None:
        if self.family is not None and self._used:
            self.envs = self._envs(self._draw())
        self._used = True
        seeds = self._env_rng.integers(0, 2**31 - 1, size=self.envs.num_envs)
        obs, _ = self.envs.reset(seed=[int(s) for s in seeds])
        if self.equivariant:
            self._makers = self._fresh_makers(obs.shape[0] * obs.shape[1])
            obs = self.tokens(obs)
            n, a = self.envs.num_servers, len(self.envs.possible_agents)
            self.h = torch.zeros(self.envs.num_envs * a, n, self.dims.hidden)
        else:
            self.h = torch.zeros(self.envs.num_envs * self.dims.n_agents, self.dims.hidden)
        self._episode = {
            "obs": [obs],
            "state": [self.state()],
            "actions": [],
            "reward": [],
            "terminated": [],
            "fct": [],
        }

    def _q(self, obs: np.ndarray) -> torch.Tensor:
        """Every agent's utilities (E·A, rows, L) at one step, advancing self.h."""
        x = torch.from_numpy(obs)
        n, a = obs.shape[:2]
        agent = self.learner.agent
        with torch.no_grad():
            if isinstance(agent, SetAgent):
                q, self.h = agent.step(x.view(n * a, *obs.shape[2:]), self.h)
                return q
            ids = self.learner.ids.repeat(n, 1)
            q, self.h = agent(x.view(n * a, 1, self.rows, -1), ids, self.h)
            return q[:, 0]

    def collect(self, budget: int) -> Collected:
        """One lockstep step of every env (of the first `budget` if fewer steps are left)."""
        if self._episode is None:
            self._reset()
        ep = self._episode
        assert ep is not None
        obs = ep["obs"][-1]
        eps = self.cfg.epsilon(self._steps)
        q = self._q(obs)
        actions = epsilon_greedy(q, eps, self._act_rng).reshape(obs.shape[:3])
        n = self.envs.num_envs
        count = min(n, budget)
        obs, rewards, terminated, truncated, info = self.envs.step(self.env_action(actions, obs))
        self._steps += count
        if count < n:  # the run ends inside this episode: the last `count` steps count
            self._episode = None
            return Collected(steps=count)
        over = terminated | truncated
        if over.any() and not over.all():
            raise RuntimeError("qmix: envs in lockstep ended their episodes at different steps")
        ep["obs"].append(self.tokens(obs) if self.equivariant else obs)
        ep["state"].append(self.state())
        ep["actions"].append(actions)
        ep["reward"].append(rewards.astype(np.float32))
        ep["terminated"].append(terminated.astype(np.float32))
        fct = info["fct_mean"]
        ep["fct"].append(np.array([np.nanmean(fct) if not np.isnan(fct).all() else math.nan]))
        live = {"ret": float(np.sum(ep["reward"]) / n), "eps": eps}
        if not over[0]:
            return Collected(steps=n, live=live)
        return Collected(steps=n, episodes=self._store(ep), live=live)

    def _store(self, ep: dict[str, list[np.ndarray]]) -> list[dict[str, float]]:
        """Put every env's finished episode into the replay; their episode/ scalars."""
        obs, state = np.stack(ep["obs"], 1), np.stack(ep["state"], 1)
        self.learner.observe(obs, state)
        acts, rews = np.stack(ep["actions"], 1), np.stack(ep["reward"], 1)
        terms = np.stack(ep["terminated"], 1)
        for e in range(self.envs.num_envs):
            self.buffer.add(obs[e], state[e], acts[e], rews[e], terms[e])
        fct = np.concatenate(ep["fct"])
        mean_fct = float(np.nanmean(fct)) if not np.isnan(fct).all() else math.nan
        self._episode = None
        return [
            {
                "episode/return": float(rews[e].sum()),
                "episode/reward_mean": float(rews[e].mean()),
                "episode/fct_mean": mean_fct,
            }
            for e in range(self.envs.num_envs)
        ]

    def update(self, steps: int) -> list[dict[str, float]]:
        """The updates due: one per `train_every` steps past `warmup_steps`."""
        cfg, losses = self.cfg, []
        since, done = self._begun
        due = done + (steps - since - cfg.warmup_steps) // cfg.train_every
        while len(self.buffer) and self.learner.updates < due:
            batch = self.buffer.sample(cfg.batch_size, cfg.burn_in, cfg.seq_len)
            losses.append(self.learner.update(batch))
        return losses

    def networks_manifest(self) -> dict[str, Any]:
        return manifest(self.cfg, self.dims, self.layout)

    def policy(self, lb: int = 0) -> QMIXPolicy | SetQMIXPolicy:
        """LB node `lb`'s agents as the serving policy, from the current agent network."""
        served = to_arrays({"agent": self.learner.agent})
        return qmix_policy(served, self.manifest(), lb)

    def predict(
        self, obs: Any, state: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Greedy levels (agents, rows) for one env's stacked observations (agents, rows, F)
        (with arch 'equivariant', of the current rollout scenario's servers)."""
        x = np.asarray(obs, dtype=np.float32)
        a = x.shape[0]
        agent = self.learner.agent
        with torch.no_grad():
            if isinstance(agent, SetAgent):
                if state is None:  # a new episode: its own estimators
                    self._predict_makers = self._fresh_makers(a)
                tokens = torch.from_numpy(self.tokens(x[None], self._predict_makers)[0])
                h = torch.zeros(*x.shape[:2], self.dims.hidden) if state is None else state
                q, h = agent.step(tokens, h)
            else:
                t = torch.from_numpy(x).view(a, 1, self.rows, -1)
                h = torch.zeros(a, self.dims.hidden) if state is None else state
                q, h = agent(t, self.learner.ids, h)
                q = q[:, 0]
        eps = 0.0 if deterministic else self.cfg.epsilon(self._steps)
        return epsilon_greedy(q, eps, self._act_rng), h

    def at_step(self, steps: int) -> None:
        """A Ray rollout worker's next chunk starts at the run's `steps`: ε follows the
        whole run's steps, not the worker's share of them."""
        self._steps = steps

    def begin(self, steps: int) -> None:
        """`learn` starts (or resumes, with an empty replay) at `steps`: ε continues from
        there; updates wait for `warmup_steps` more steps, then one per `train_every`."""
        self._steps = steps
        if len(self.buffer) == 0:
            self._begun = (steps, self.learner.updates)


def save_untrained(path: str | Path, **hyper: Any) -> Path:
    """A freshly initialised equivariant QMIX checkpoint (hyper.arch 'equivariant' and
    `hyper`) at `path`, as training writes one: for serving tests and benchmarks, whose
    cost and plumbing do not depend on what the agent learned."""
    from marllbd import checkpoint

    cfg = QMIXConfig(**{"arch": "equivariant", **hyper})
    dims = Dims(
        0, 0, ServerTokens(cfg.hint).width, len(cfg.levels), STATE_WIDTH,
        cfg.hidden, cfg.mixing_embed, cfg.hypernet_hidden,
    )  # fmt: skip
    learner = Learner(dims, cfg, None)
    meta: dict[str, Any] = {"algorithm": ALGORITHM, "seed": 0, "scenario": ""}
    meta |= manifest(cfg, dims, None)
    meta["progress"] = {"steps": 0, "episodes": 0, "updates": 0, "best_fct": None}
    return checkpoint.save(Path(path), meta, learner.arrays())


def manifest(cfg: QMIXConfig, dims: Dims, layout: Layout | None) -> dict[str, Any]:
    """What a checkpoint's manifest says of the networks (and serving reads back)."""
    action = ActionSpec(kind="discrete", levels=cfg.levels, base=cfg.weight_base)
    return {
        "dims": dims.as_dict(),
        "hyper": dataclasses.asdict(cfg),
        "action": action.as_dict(),
        "reward": {
            "metric": DEFAULT_REWARD_METRIC,
            "field": cfg.reward_field,
            "shaping": DEFAULT_REWARD_SHAPING,
            "scale": 1.0,
        },
        "layout": None if layout is None else layout.to_dict(),
        **({"accepts": {"num_servers": "any", "lb_nodes": "any"}} if layout is None else {}),
    }


def __getattr__(name: str) -> Any:
    """`from marllbd_rl.qmix import QMIXAgent` (where it used to live) keeps working."""
    if name == "QMIXAgent":
        from marllbd_rl.agents import QMIXAgent

        return QMIXAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
