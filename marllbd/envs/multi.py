"""MultiAgentLoadBalanceEnv: cooperating agents set weights (PettingZoo ParallelEnv).

An agent is an (LB node, server group) pair (DESIGN contract 3): it sees the
features of its group's servers in its own LB's frame and sets their weights
for that LB's new flows.  With one group an agent is an LB node (MARLLB);
with one LB and several groups, one agent per group.  All agents share the
team reward: the fairness metric over all servers, the per-server feature
averaged over the LB nodes (the reward arguments are LoadBalanceEnv's; a
custom reward_fn gets that LB-averaged feature matrix).  `state()` is the
global state for centralised training: every LB's feature matrix plus the
servers' ground-truth utilization and queue per worker.

`parallel_env(**kw)` and `env(**kw)` (the AEC form, through PettingZoo's
parallel_to_aec) are PettingZoo's usual factories; kw are the class's arguments.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from marllbd import features
from marllbd.envs.actions import (
    ActionSpec,
    feature_bounds,
    gym_action_space,
    queue_per_worker_high,
)
from marllbd.envs.render import RENDER_MODES, ansi_table, check_render_mode
from marllbd.envs.reward import (
    DEFAULT_REWARD_FIELD,
    DEFAULT_REWARD_METRIC,
    DEFAULT_REWARD_SHAPING,
    RewardFn,
    RewardSpec,
    fct_stats,
)
from marllbd.envs.single import episode_engine, resolve_scenario, step_info, writable_state
from marllbd.policies import GroundTruth
from marllbd.sim.engine import Engine, first_weights
from marllbd.sim.scenario import Scenario


class MultiAgentLoadBalanceEnv(ParallelEnv[str, np.ndarray, np.ndarray]):
    """Agents `lb{l}_g{g}`; observation (group size, 12); action per server of the group.

    An agent's info has the single env's keys (step_info; docs/api.md documents them in
    one table), from its own LB's FCT samples; its "weights" are those of its group's
    servers.  render_mode "ansi"
    makes render() return a text table (per server: up, capacity, and each LB's weight
    and active flows).  The env pickles before and after reset().
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - PettingZoo's convention
        "name": "marllbd_multi_v0",
        "render_modes": list(RENDER_MODES),
        "is_parallelizable": True,  # (PettingZoo's flag: a parallel env by construction)
    }

    def __init__(
        self,
        scenario: str | Scenario | None = None,
        *,
        num_agents: int | None = None,
        servers_per_agent: int | None = None,
        action_type: str = "discrete",
        levels: tuple[float, ...] = (1.0, 1.5, 2.0),
        weight_base: str = "capacity",
        reward_metric: str = DEFAULT_REWARD_METRIC,
        reward_field: str = DEFAULT_REWARD_FIELD,
        reward_shaping: str = DEFAULT_REWARD_SHAPING,
        reward_fn: RewardFn | None = None,
        tau: float = features.DEFAULT_TAU,
        episode_seconds: float | None = None,
        render_mode: str | None = None,
    ):
        self.render_mode = check_render_mode(render_mode)
        if scenario is None and num_agents is not None:
            spa = servers_per_agent or 4
            sc = (
                resolve_scenario(None, num_agents * spa, group_size=spa)
                if (num_agents * spa != 16 or spa != 4)
                else resolve_scenario("seed-16", None)
            )
        else:
            sc = resolve_scenario(scenario, None)
        if episode_seconds is not None:
            sc = sc.replace(duration=episode_seconds)
        self.scenario = sc
        self.tau = tau
        self.action_spec = ActionSpec(kind=action_type, levels=tuple(levels), base=weight_base)
        self.reward_spec = RewardSpec(reward_metric, reward_field, reward_shaping, reward_fn)
        self.groups = [np.array(g, dtype=np.int64) for g in sc.groups]
        self.members = [(lb, g) for lb in range(sc.lb_nodes) for g in range(len(self.groups))]
        self.possible_agents = [f"lb{lb}_g{g}" for lb, g in self.members]
        if num_agents is not None and len(self.possible_agents) != num_agents:
            raise ValueError(
                f"num_agents: {num_agents} does not match scenario {sc.name!r}, which has "
                f"{sc.lb_nodes} LB node(s) x {len(self.groups)} group(s)"
            )
        self.agents: list[str] = []
        self.group_size = max(len(g) for g in self.groups)
        self.num_servers = len(sc.servers)
        self.capacities = sc.capacities
        low, high = feature_bounds(sc, self.action_spec)
        shape = (self.group_size, features.NUM_FEATURES)
        self._obs_space = spaces.Box(
            np.broadcast_to(low, shape), np.broadcast_to(high, shape), dtype=np.float32
        )
        self._act_space = gym_action_space(self.action_spec, self.group_size)
        nl, n = sc.lb_nodes, self.num_servers
        # state(): every LB's features, utilization in [0, 1], flows per unit of capacity.
        self.state_space = spaces.Box(
            np.concatenate([np.tile(low, nl * n), np.zeros(2 * n, dtype=np.float32)]),
            np.concatenate(
                [
                    np.tile(high, nl * n),
                    np.ones(n, dtype=np.float32),
                    np.full(n, queue_per_worker_high(sc), dtype=np.float32),
                ]
            ),
            dtype=np.float32,
        )
        self._first = first_weights(sc.dispatch, self.capacities)
        self._weights = np.tile(self._first, (nl, 1))
        self._features = np.zeros((nl, n, features.NUM_FEATURES))
        self._engine: Engine | None = None
        self._last: GroundTruth | None = None  # of the last interval, for state()
        self.np_random, _ = seeding.np_random()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Own copies of read-only arrays (writable_state); the engine rebuilds its own."""
        self.__dict__.update(writable_state(state))

    @property
    def engine(self) -> Engine:
        """The running episode's simulator."""
        if self._engine is None:
            raise RuntimeError("call reset() before using the engine: no episode is running")
        return self._engine

    @functools.cache  # noqa: B019 - the same space object on every call
    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
        self._engine = episode_engine(self.scenario, self.np_random)
        self._weights = np.tile(self._first, (self.scenario.lb_nodes, 1))
        self.agents = list(self.possible_agents)
        obs, _, _, _, infos = self._advance()
        return obs, infos

    def step(
        self, actions: dict[str, np.ndarray]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        if self._engine is None or not self.agents:
            raise RuntimeError("call reset() before step(): no episode is running")
        for name, (lb, g) in zip(self.possible_agents, self.members, strict=True):
            if name not in actions:
                raise ValueError(f"actions: missing an action for agent {name!r}")
            idx = self.groups[g]
            act = np.asarray(actions[name])[: len(idx)]
            self._weights[lb, idx] = self.action_spec.weights(act, self.capacities[idx])
        return self._advance()

    def _advance(
        self,
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        engine = self._engine
        assert engine is not None
        for lb in range(self.scenario.lb_nodes):
            # Valid by construction (ActionSpec.weights), so set without the checks.
            engine.set_weights(lb, self._weights[lb], checked=False)
        # One compiled call: the interval, then every LB's features with its weights.
        truth = engine.advance(self._features, tau=self.tau)
        self._last = GroundTruth(truth[0], truth[1], engine.capacities)
        team = self.reward_spec(self._features.mean(axis=0), engine.active)
        obs: dict[str, np.ndarray] = {}
        infos: dict[str, dict[str, Any]] = {}
        for name, (lb, g) in zip(self.possible_agents, self.members, strict=True):
            block = np.zeros((self.group_size, features.NUM_FEATURES), dtype=np.float32)
            idx = self.groups[g]
            block[: len(idx)] = self._features[lb, idx]
            obs[name] = block
            fct_mean, fct_p90 = fct_stats(self._features[lb], engine.fct_counts(lb))
            infos[name] = step_info(engine, truth[0], fct_mean, fct_p90)
            infos[name]["weights"] = self._weights[lb, idx]  # a fresh array (fancy index)
        truncated = engine.done
        agents = list(self.agents)
        rewards = {a: team for a in agents}
        terminations = {a: False for a in agents}
        truncations = {a: truncated for a in agents}
        if truncated:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def render(self) -> str | None:
        """The servers as a text table (render_mode "ansi"), else None."""
        if self.render_mode is None:
            return None
        return ansi_table(self.engine, range(self.scenario.lb_nodes))

    def state(self) -> np.ndarray:
        """Every LB's features, then utilization and queue per worker of every server."""
        if self._last is None:
            raise RuntimeError("call reset() before state()")
        truth = self._last
        return np.concatenate(
            [
                self._features.ravel(),
                truth.utilization,
                truth.queue / truth.capacities,
            ]
        ).astype(np.float32)


def parallel_env(**kwargs: Any) -> MultiAgentLoadBalanceEnv:
    """PettingZoo's parallel factory: MultiAgentLoadBalanceEnv(**kwargs)."""
    return MultiAgentLoadBalanceEnv(**kwargs)


def env(**kwargs: Any) -> AECEnv[str, np.ndarray, np.ndarray]:
    """PettingZoo's AEC factory: the parallel env turned turn-based by parallel_to_aec."""
    return parallel_to_aec(parallel_env(**kwargs))
