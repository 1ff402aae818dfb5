"""MultiAgentVectorEnv: N MultiAgentLoadBalanceEnv episodes stepped in one compiled call.

The batched form of the PettingZoo parallel env for centralised training (QMIX's
episode collection): arrays over the sub-envs and agents instead of dicts per agent.
Each step sets every sub-env's weights for every LB node, advances every engine one
control interval in one call (`marllbd.sim.engine.EngineBatch`, on numba's threads
with parallel=True) and gathers every agent's observation with one fancy index.  Sub-env
i with seed s gives the observations, team rewards, global states and FCTs of
`MultiAgentLoadBalanceEnv` reset with seed s, bit for bit (tests/envs/test_multi_vector.py).

No autoreset: the episodes of one scenario all end at the same step (time runs out),
and a step after a sub-env's end raises; `reset()` starts them all again, and
`reset(options={"reset_mask": mask})` only the masked ones.  reset(seed=s) seeds
sub-env i with s + i (a list gives each its own); without a seed each keeps its
generator, and a never-seeded one draws fresh entropy, as the single env does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from marllbd import features
from marllbd.envs.multi import MultiAgentLoadBalanceEnv
from marllbd.envs.render import ansi_table
from marllbd.envs.reward import fct_stats
from marllbd.envs.single import episode_engine, writable_state
from marllbd.envs.vector import checked_reset_mask, sub_env_seeds
from marllbd.sim.engine import EngineBatch, first_weights
from marllbd.sim.scenario import Scenario


class MultiAgentVectorEnv:
    """num_envs MultiAgentLoadBalanceEnv(scenario, **env_kwargs) in one batch.

    Agents (`possible_agents`, A of them, in that order) are (LB node, group) pairs as
    in the single env.  Observations are float32 (num_envs, A, group_size, 12), an
    agent's rows past its group's size zero; actions (num_envs, A, group_size), the
    padding rows ignored; rewards, terminations and truncations (num_envs,): the team
    reward is every agent's.  `state()` is (num_envs, state_dim).  info holds the single
    env's per-agent info keys as arrays: "fct_mean" and "fct_p90_max" (num_envs, agents),
    "weights" (num_envs, agents, group_size; padding rows 0), and the keys every agent of
    a sub-env shares once per sub-env: "t", "completed", "rejected" (num_envs,) and
    "utilization" (num_envs, num_servers).
    """

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Scenario | None = None,
        *,
        parallel: bool = True,
        **env_kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: expected a positive integer, got {num_envs!r}")
        # The single env validates the arguments and holds the definitions: the scenario,
        # the agents and groups, the action and reward specs, the spaces.  It never steps.
        self.template = t = MultiAgentLoadBalanceEnv(scenario, **env_kwargs)
        self.num_envs, self.parallel = num_envs, parallel
        self.scenario, self.tau, self.render_mode = t.scenario, t.tau, t.render_mode
        self.possible_agents, self.members, self.groups = t.possible_agents, t.members, t.groups
        self.group_size, self.num_servers = t.group_size, t.num_servers
        self.capacities, self.state_space = t.capacities, t.state_space
        self.agents: list[str] = []
        nl, n, rows = t.scenario.lb_nodes, t.num_servers, t.group_size
        # Agent k's observation rows: servers[k] of its LB's frame lbs[k]; padding rows
        # read server n, an all-zero column appended to the features.
        self._lbs = np.array([lb for lb, _ in t.members], dtype=np.int64)
        self._servers = np.full((len(t.members), rows), n, dtype=np.int64)
        self._covered = np.zeros((nl, n), dtype=bool)  # (LB, server) pairs some agent sets
        for k, (lb, g) in enumerate(t.members):
            idx = t.groups[g]
            self._servers[k, : len(idx)] = idx
            self._covered[lb, idx] = True
        self._padded = np.zeros((num_envs, nl, n + 1, features.NUM_FEATURES))
        self._feats = np.zeros((num_envs, nl, n, features.NUM_FEATURES))
        self._first = first_weights(self.scenario.dispatch, self.capacities)
        self._weights = np.tile(self._first, (num_envs, nl, 1))
        self._tiled_caps = np.tile(self.capacities, num_envs * nl)
        self._truth = np.zeros((num_envs, 3, n))  # utilization, queue, capacities: state()
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._batch: EngineBatch | None = None
        self._ended = np.zeros(num_envs, dtype=bool)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(writable_state(state))

    def observation_space(self, agent: str) -> spaces.Space:
        """One agent's observation space (the single env's)."""
        return self.template.observation_space(agent)

    def action_space(self, agent: str) -> spaces.Space:
        """One agent's action space (the single env's)."""
        return self.template.action_space(agent)

    @property
    def engines(self) -> list[Any]:
        """The sub-envs' engines (after reset())."""
        if self._batch is None:
            raise RuntimeError("call reset() before step(): no episode is running")
        return self._batch.engines

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Every sub-env's first interval; seed s seeds sub-env i with s + i.  With
        options={"reset_mask": mask} (a bool (num_envs,) array) only the masked sub-envs
        start a new episode; the others' observations are their latest."""
        count = self.num_envs
        seeds = sub_env_seeds(seed, count)
        mask = (options or {}).get("reset_mask")
        if mask is None:
            mask = np.ones(count, dtype=bool)
        else:
            mask = checked_reset_mask(mask, count, self._batch is not None)
        for i in np.flatnonzero(mask).tolist():
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        if self._batch is None:
            engines = [episode_engine(self.scenario, r) for r in self._rngs if r is not None]
            self._batch = EngineBatch(engines, parallel=self.parallel)
        else:
            for i in np.flatnonzero(mask).tolist():
                rng = self._rngs[i]
                assert rng is not None
                self._batch[i] = episode_engine(self.scenario, rng)
        self._weights[mask] = self._first
        self.agents = list(self.possible_agents)
        obs, _, _, _, info = self._advance(mask)
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Every sub-env one control interval with actions (num_envs, agents, group_size)."""
        if self._batch is None:
            raise RuntimeError("call reset() before step(): no episode is running")
        if self._ended.any():
            ended = np.flatnonzero(self._ended).tolist()
            raise RuntimeError(
                f"sub-envs {ended}: their episodes ended; reset them first "
                "(reset(options={'reset_mask': mask}))"
            )
        count, nl, n = self.num_envs, self.scenario.lb_nodes, self.num_servers
        a = np.asarray(actions)
        shape = (count, len(self.members), self.group_size)
        if a.shape != shape:
            raise ValueError(f"actions: expected shape {shape}, got {a.shape}")
        full = np.zeros((count, nl, n + 1), dtype=a.dtype)
        full[:, self._lbs[:, None], self._servers] = a  # (padding rows land on column n)
        flat = np.ascontiguousarray(full[:, :, :n]).reshape(-1)
        weights = self.template.action_spec.weights(flat, self._tiled_caps)
        self._weights = np.where(self._covered, weights.reshape(count, nl, n), self._weights)
        return self._advance(np.ones(count, dtype=bool))

    @property
    def truth(self) -> np.ndarray:
        """Each sub-env's servers after the last interval, as rows (utilization, flows in
        service and backlogged, real capacity): (num_envs, 3, num_servers), a view."""
        return self._truth

    def state(self) -> np.ndarray:
        """Each sub-env's `MultiAgentLoadBalanceEnv.state()`: (num_envs, state_dim)."""
        if self._batch is None:
            raise RuntimeError("call reset() before state()")
        count = self.num_envs
        return np.concatenate(
            [
                self._feats.reshape(count, -1),
                self._truth[:, 0],
                self._truth[:, 1] / self._truth[:, 2],
            ],
            axis=1,
        ).astype(np.float32)

    def render(self) -> tuple[str, ...] | None:
        """Each sub-env's text table (render_mode "ansi"), else None."""
        if self.render_mode is None:
            return None
        return tuple(ansi_table(e, range(self.scenario.lb_nodes)) for e in self.engines)

    def _advance(
        self, only: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        batch = self._batch
        assert batch is not None
        nl = self.scenario.lb_nodes
        engines = batch.engines
        for i in np.flatnonzero(only).tolist():
            for lb in range(nl):
                # Valid by construction (ActionSpec.weights), so set without the checks.
                engines[i].set_weights(lb, self._weights[i, lb], checked=False)
        truth, totals, _ = batch.advance(self._feats, None, tau=self.tau, only=only)
        count = self.num_envs
        spec = self.template.reward_spec
        rewards = np.zeros(count)
        fct = np.full((2, count, nl), np.nan)
        for i in np.flatnonzero(only).tolist():
            e = engines[i]
            self._truth[i, :2] = truth[i]
            self._truth[i, 2] = e.capacities
            rewards[i] = spec(self._feats[i].mean(axis=0), e.active)
            for lb in range(nl):
                fct[:, i, lb] = fct_stats(self._feats[i, lb], e.fct_counts(lb))
        self._padded[:, :, :-1] = self._feats
        obs = self._padded[:, self._lbs[:, None], self._servers].astype(np.float32, order="C")
        weights = np.zeros((count, nl, self.num_servers + 1))
        weights[:, :, :-1] = self._weights
        truncated = batch.done & only
        self._ended = truncated.copy()
        if self._ended.all():
            self.agents = []
        info = {
            "t": batch.t.copy(),
            "fct_mean": fct[0][:, self._lbs],
            "fct_p90_max": fct[1][:, self._lbs],
            "completed": totals[:, 0].copy(),
            "rejected": totals[:, 1].copy(),
            "utilization": self._truth[:, 0].copy(),
            "weights": weights[:, self._lbs[:, None], self._servers],
        }
        terminated = np.zeros(count, dtype=bool)  # no terminal state: time runs out
        return obs, rewards, terminated, truncated, info


class MultiAgentSyncVectorEnv:
    """MultiAgentVectorEnv's array interface over separate parallel envs stepped one after
    another (gymnasium's SyncVectorEnv for the multi-agent env): for envs the batch cannot
    build, such as a user's env factory's.  Each env needs MultiAgentLoadBalanceEnv's
    possible_agents, members, groups, group_size, num_servers, state_space and state(), and
    its per-agent info keys fct_mean, fct_p90_max and weights; the other info keys are
    the first agent's."""

    def __init__(self, envs: Sequence[Any]):
        if not envs:
            raise ValueError("envs: expected at least one env")
        self.envs = list(envs)
        first = self.envs[0]
        self.num_envs = len(self.envs)
        self.template = first
        self.possible_agents: list[str] = list(first.possible_agents)
        self.members: list[tuple[int, int]] = list(first.members)
        self.groups: list[np.ndarray] = list(first.groups)
        self.group_size: int = first.group_size
        self.num_servers: int = first.num_servers
        self.state_space: spaces.Space = first.state_space
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> spaces.Space:
        return self.template.observation_space(agent)

    def action_space(self, agent: str) -> spaces.Space:
        return self.template.action_space(agent)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Every env's reset; seed s seeds env i with s + i (a list: one each)."""
        if options:
            raise ValueError("options: not supported over separate envs")
        seeds = sub_env_seeds(seed, self.num_envs)
        outs = [env.reset(seed=s) for env, s in zip(self.envs, seeds, strict=True)]
        self.agents = list(self.possible_agents)
        return self._stack([o[0] for o in outs]), self._infos([o[1] for o in outs])

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        names = self.possible_agents
        outs = [
            env.step({a: act[k] for k, a in enumerate(names)})
            for env, act in zip(self.envs, np.asarray(actions), strict=True)
        ]
        first = names[0]
        rewards = np.array([o[1][first] for o in outs], dtype=np.float64)
        terminated = np.array([any(o[2].values()) for o in outs])
        truncated = np.array([any(o[3].values()) for o in outs])
        if (terminated | truncated).all():
            self.agents = []
        return (
            self._stack([o[0] for o in outs]),
            rewards,
            terminated,
            truncated,
            self._infos([o[4] for o in outs]),
        )

    def state(self) -> np.ndarray:
        return np.stack([env.state() for env in self.envs])

    def _stack(self, obs: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.stack([np.stack([o[a] for a in self.possible_agents]) for o in obs])

    def _infos(self, infos: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
        names = self.possible_agents
        out: dict[str, Any] = {
            key: np.array([[inf[a][key] for a in names] for inf in infos], dtype=np.float64)
            for key in ("fct_mean", "fct_p90_max")
        }
        weights = np.zeros((self.num_envs, len(names), self.group_size))
        for i, inf in enumerate(infos):
            for k, a in enumerate(names):
                w = np.asarray(inf[a]["weights"])
                weights[i, k, : len(w)] = w
        out["weights"] = weights
        for key in ("t", "completed", "rejected", "utilization"):
            out[key] = np.array([inf[names[0]][key] for inf in infos])
        return out
