"""LoadBalanceEnv: one agent sets the weights of one load balancer (Gymnasium).

One step is one control interval of the simulator: the action's weights
apply to the LB's new flows during the interval, and the observation is the
feature matrix (marllbd.features) of the frame the LB publishes at its end.
Other LB nodes of the scenario, if any, keep static capacity weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from marllbd import features
from marllbd.envs.actions import ActionSpec, feature_bounds, gym_action_space
from marllbd.envs.render import RENDER_MODES, ansi_table, check_render_mode
from marllbd.envs.reward import (
    DEFAULT_REWARD_FIELD,
    DEFAULT_REWARD_METRIC,
    DEFAULT_REWARD_SHAPING,
    RewardFn,
    RewardSpec,
)
from marllbd.sim.engine import Engine, first_weights
from marllbd.sim.scenario import Scenario, load_scenario, synthetic


def resolve_scenario(
    scenario: str | Scenario | None, num_servers: int | None, **synthetic_kw: Any
) -> Scenario:
    """A Scenario from a preset name, a path, an object, or just a server count."""
    if isinstance(scenario, Scenario):
        sc = scenario
    elif scenario is not None:
        sc = load_scenario(scenario)
    elif num_servers == 16 and not synthetic_kw:
        sc = load_scenario("seed-16")
    elif num_servers is not None:
        sc = synthetic(num_servers, **synthetic_kw)
    else:
        sc = load_scenario("seed-16")
    if num_servers is not None and len(sc.servers) != num_servers:
        raise ValueError(
            f"num_servers: {num_servers} does not match scenario {sc.name!r} "
            f"with {len(sc.servers)} servers"
        )
    return sc


def episode_steps(scenario: Scenario) -> int:
    """The step() calls of one episode of scenario: reset() runs the first control
    interval, each step() one more, and the last one ends at or past the duration
    (Engine.done, the float sums of the engine's clock included)."""
    t, intervals = 0.0, 0
    while not t >= scenario.duration - 1e-12:
        t += scenario.control_interval
        intervals += 1
    return intervals - 1


def episode_engine(scenario: Scenario, np_random: np.random.Generator) -> Engine:
    """A new episode's engine: the scenario with a seed drawn from the env's generator
    (the single and the vector env draw it the same way)."""
    episode_seed = int(np_random.integers(0, 2**31 - 1))
    # The scenario is validated already and the seed is valid: skip Scenario.replace's
    # round trip through from_dict (same result, in a fraction of the time).
    return Engine(dataclasses.replace(scenario, seed=episode_seed))


def writable_state(state: dict[str, Any]) -> dict[str, Any]:
    """An unpickled env's __dict__ with its own copy of each read-only array: unpickling
    from shared memory (Ray's object store, pickle protocol 5 with out-of-band buffers)
    hands arrays over read-only, and the envs write into theirs in place."""
    return {
        k: v.copy() if isinstance(v, np.ndarray) and not v.flags.writeable else v
        for k, v in state.items()
    }


def step_info(
    engine: Engine,
    utilization: np.ndarray,
    fct_mean: float,
    fct_p90_max: float,
) -> dict[str, Any]:
    """FCT statistics of the interval (from the LB's reservoir samples) and run counters:
    the info keys of both environments (docs/api.md; they add "weights").

    fct_mean is over the sampled completions of all servers; fct_p90_max is the
    worst server's p90.  Both are NaN for an interval without completions
    (reward.step_kernel computes them with the reward).
    """
    completed, rejected = engine.totals
    return {
        "t": engine.t,
        "fct_mean": fct_mean,
        "fct_p90_max": fct_p90_max,
        "completed": completed,
        "rejected": rejected,
        "utilization": utilization,
    }


class LoadBalanceEnv(gym.Env[np.ndarray, np.ndarray]):
    """Observation (num_servers, 12) features; action weights or levels per server.

    The reward of a step is reward_metric's fairness (marllbd.fairness) of the feature
    reward_field over the servers, shaped by reward_shaping; defaults in
    marllbd.envs.reward (Jain of DEFAULT_REWARD_FIELD).  reward_metric="custom" with
    reward_fn=f makes it f(features, active) instead: the step's float64 (num_servers,
    12) feature matrix (the observation) and the bool vector of servers taking new
    flows, returning a finite number; for example

        LoadBalanceEnv("seed-16", reward_metric="custom",
                       reward_fn=lambda f, active: -float(f[active, 9].mean()))

    rewards a low mean decayed completion time (column 9, fct_decayed_mean).

    reset() and step() return an info dict whose keys (t, fct_mean, fct_p90_max,
    completed, rejected, utilization, weights) docs/api.md documents in one table.

    render_mode "ansi" makes render() return a text table of the servers (per server: up,
    capacity, this LB's weight and active flows); None renders nothing.  The env pickles
    before and after reset() (a custom reward_fn must pickle too, so no lambda), and an
    unpickled env continues exactly as the original would.
    """

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES)}  # noqa: RUF012 - gymnasium's convention

    def __init__(
        self,
        scenario: str | Scenario | None = None,
        *,
        num_servers: int | None = None,
        action_type: str = "continuous",
        levels: tuple[float, ...] = (1.0, 1.5, 2.0),
        weight_base: str = "capacity",
        reward_metric: str = DEFAULT_REWARD_METRIC,
        reward_field: str = DEFAULT_REWARD_FIELD,
        reward_shaping: str = DEFAULT_REWARD_SHAPING,
        reward_fn: RewardFn | None = None,
        lb: int = 0,
        tau: float = features.DEFAULT_TAU,
        episode_seconds: float | None = None,
        render_mode: str | None = None,
    ):
        self.render_mode = check_render_mode(render_mode)
        sc = resolve_scenario(scenario, num_servers)
        if episode_seconds is not None:
            sc = sc.replace(duration=episode_seconds)
        if not 0 <= lb < sc.lb_nodes:
            raise ValueError(f"lb: expected 0..{sc.lb_nodes - 1}, got {lb}")
        self.scenario = sc
        self.lb = lb
        self.tau = tau
        self.action_spec = ActionSpec(kind=action_type, levels=tuple(levels), base=weight_base)
        self.reward_spec = RewardSpec(reward_metric, reward_field, reward_shaping, reward_fn)
        n = len(sc.servers)
        self.num_servers = n
        self.capacities = sc.capacities
        # One interval per frame, for the renderers that pace themselves.
        self.metadata = {**type(self).metadata, "render_fps": 1.0 / sc.control_interval}
        low, high = feature_bounds(sc, self.action_spec)
        shape = (n, features.NUM_FEATURES)
        self.observation_space = spaces.Box(
            np.broadcast_to(low, shape), np.broadcast_to(high, shape), dtype=np.float32
        )
        self.action_space = gym_action_space(self.action_spec, n)
        self._features = np.zeros((1, n, features.NUM_FEATURES))  # this LB's, for Engine.advance
        self._feats = self._features[0]
        self._n_fct = np.zeros(n, dtype=np.int64)  # this LB's FCT sample counts, set on reset
        self._engine: Engine | None = None
        self._first = first_weights(self.scenario.dispatch, self.capacities)
        self._weights = self._first.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Own copies of read-only arrays (writable_state), and the views bound again that
        pickle copied apart (the engine rebinds its own)."""
        self.__dict__.update(writable_state(state))
        self._feats = self._features[0]
        if self._engine is not None:
            self._n_fct = self._engine.fct_counts(self.lb)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self._engine

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._engine = episode_engine(self.scenario, self.np_random)
        # This LB's FCT sample counts of the latest frame (a view that Engine.advance refills).
        self._n_fct = self._engine.fct_counts(self.lb)
        self._weights = self._first.copy()
        obs, _, _, _, info = self._advance()
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._weights = self.action_spec.weights(action, self.capacities)
        return self._advance()

    def render(self) -> str | None:
        """The servers as a text table (render_mode "ansi"), else None."""
        if self.render_mode is None:
            return None
        return ansi_table(self.engine, range(self.lb, self.lb + 1))

    def _advance(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        engine = self.engine
        # Valid by construction (ActionSpec.weights), so set without the checks.
        engine.set_weights(self.lb, self._weights, checked=False)
        # One compiled call: the interval, then this LB's features with these weights.
        truth = engine.advance(self._features, first_lb=self.lb, tau=self.tau)
        feats = self._feats
        # One compiled call (built-in rewards): the reward and the interval's FCT statistics.
        reward, fct_mean, fct_p90 = self.reward_spec.step(feats, self._n_fct, engine.active)
        info = step_info(engine, truth[0], fct_mean, fct_p90)
        info["weights"] = self._weights  # a fresh array every step, never changed in place
        # There is no terminal state: a run ends only because its time is up.
        return feats.astype(np.float32), reward, False, engine.done, info
