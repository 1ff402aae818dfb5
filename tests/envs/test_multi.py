"""MultiAgentLoadBalanceEnv: a PettingZoo ParallelEnv with a centralised state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import aec_to_parallel

from marllbd.envs import LoadBalanceEnv, MultiAgentLoadBalanceEnv
from marllbd.envs.multi import env, parallel_env
from marllbd.features import NUM_FEATURES
from marllbd.sim.scenario import Scenario
from tests.envs.conftest import read_only_copy


def test_seed_call_grouped_layout() -> None:
    env = MultiAgentLoadBalanceEnv(num_agents=4, servers_per_agent=4)
    obs, _infos = env.reset(seed=0)
    assert env.possible_agents == ["lb0_g0", "lb0_g1", "lb0_g2", "lb0_g3"]
    assert all(o.shape == (4, NUM_FEATURES) for o in obs.values())
    assert env.state().shape == env.state_space.shape == (16 * NUM_FEATURES + 32,)


def test_per_lb_layout_sees_own_flows() -> None:
    env = MultiAgentLoadBalanceEnv("paper-7", episode_seconds=5.0)
    obs, _ = env.reset(seed=0)
    assert env.possible_agents == ["lb0_g0", "lb1_g0"]
    for _ in range(4):
        obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})
    # Each LB counts only the flows it dispatched itself.
    assert not np.array_equal(obs["lb0_g0"][:, 0], obs["lb1_g0"][:, 0])


@pytest.mark.parametrize("scenario", ["seed-16", "paper-7"])
def test_parallel_api(scenario: str) -> None:
    parallel_api_test(MultiAgentLoadBalanceEnv(scenario, episode_seconds=5.0), num_cycles=30)


def test_parallel_seed() -> None:
    parallel_seed_test(lambda: MultiAgentLoadBalanceEnv("seed-16", episode_seconds=3.0))


def test_group_actions_reach_their_servers() -> None:
    env = MultiAgentLoadBalanceEnv("seed-16", episode_seconds=5.0)
    env.reset(seed=1)
    actions = {a: np.zeros(4, dtype=np.int64) for a in env.agents}
    actions["lb0_g2"] = np.array([2, 2, 2, 2])
    env.step(actions)
    w = env._weights[0]
    np.testing.assert_array_equal(w[8:12], 2.0 * env.capacities[8:12])
    np.testing.assert_array_equal(w[:8], env.capacities[:8])


def test_episode_ends_with_truncation_for_all() -> None:
    env = MultiAgentLoadBalanceEnv("paper-7", episode_seconds=1.0)
    env.reset(seed=0)
    trunc: dict[str, bool] = {}
    while env.agents:
        _, rewards, term, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        assert len(set(rewards.values())) == 1  # one team reward
        assert not any(term.values())
    assert all(trunc.values())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_agents"):
        MultiAgentLoadBalanceEnv("paper-7", num_agents=3)
    env = MultiAgentLoadBalanceEnv("paper-7", episode_seconds=1.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="missing an action for agent 'lb1_g0'"):
        env.step({"lb0_g0": np.zeros(7, dtype=np.int64)})


def _roll(env: MultiAgentLoadBalanceEnv, actions: list[dict]) -> list[tuple]:
    """Each step's observations, rewards, truncations, infos and state, as exact bytes."""
    out = []
    for a in actions:
        obs, rewards, _, truncations, infos = env.step(a)
        out.append(
            (
                [(k, v.tobytes()) for k, v in obs.items()],
                repr(rewards),
                truncations,
                [(k, _exact(v)) for k, v in infos.items()],
                env.state().tobytes(),
            )
        )
    return out


def _exact(info: dict) -> list[tuple[str, object]]:
    return [(k, v.tobytes() if isinstance(v, np.ndarray) else repr(v)) for k, v in info.items()]


@pytest.mark.parametrize("name", ["faulty_scenario", "file_trace_scenario"])
def test_pickled_envs_continue_bit_for_bit_before_and_after_reset(
    name: str, request: pytest.FixtureRequest
) -> None:
    env = MultiAgentLoadBalanceEnv(request.getfixturevalue(name))
    assert env.possible_agents == ["lb0_g0", "lb0_g1", "lb1_g0", "lb1_g1"]
    before = pickle.loads(pickle.dumps(env))  # never reset
    rng = np.random.default_rng(5)
    actions = [{a: rng.integers(0, 3, size=3) for a in env.possible_agents} for _ in range(19)]
    first = env.reset(seed=11)
    again = before.reset(seed=11)
    assert [o.tobytes() for o in again[0].values()] == [o.tobytes() for o in first[0].values()]
    assert [_exact(i) for i in again[1].values()] == [_exact(i) for i in first[1].values()]
    after_reset = pickle.loads(pickle.dumps(env))
    head = _roll(env, actions[:8])
    assert _roll(before, actions[:8]) == head
    mid = pickle.loads(pickle.dumps(env))
    shared = read_only_copy(env)  # as Ray ships it: arrays read-only
    tail = _roll(env, actions[8:])
    assert all(tail[-1][2].values()) and not env.agents  # the episode ran to its end
    assert _roll(mid, actions[8:]) == tail
    assert _roll(shared, actions[8:]) == tail
    assert _roll(before, actions[8:]) == tail
    assert _roll(after_reset, actions) == head + tail
    assert env.engine.rejected > 0
    for other in (before, mid, shared, after_reset):
        assert other.engine.fct().tobytes() == env.engine.fct().tobytes()


def test_each_agent_gets_the_single_envs_info_keys(faulty_scenario: Scenario) -> None:
    single = LoadBalanceEnv(faulty_scenario, lb=1)
    _, single_info = single.reset(seed=0)
    env = parallel_env(scenario=faulty_scenario, action_type="continuous")
    _, infos = env.reset(seed=0)
    for _ in range(6):
        actions = {a: np.full(3, 0.5, dtype=np.float32) for a in env.agents}
        _, _, _, _, infos = env.step(actions)
    assert list(infos) == env.possible_agents
    for name, info in infos.items():
        assert info.keys() == single_info.keys()
        # Its own group's servers' weights: level 3 ** 0.5 x their capacities.
        group = faulty_scenario.groups[int(name[-1])]
        caps = env.capacities[list(group)]
        np.testing.assert_allclose(info["weights"], 3.0**0.5 * caps, rtol=1e-12)
        assert info["utilization"].shape == (env.num_servers,)
    # Each LB's FCT statistics are its own samples': the two LB nodes differ.
    assert infos["lb0_g0"]["fct_mean"] == infos["lb0_g1"]["fct_mean"]
    assert infos["lb0_g0"]["fct_mean"] != infos["lb1_g0"]["fct_mean"]


def test_observations_and_state_stay_inside_the_real_bounds(faulty_scenario: Scenario) -> None:
    env = MultiAgentLoadBalanceEnv(faulty_scenario)
    obs, _ = env.reset(seed=2)
    while env.agents:
        for name, o in obs.items():
            assert env.observation_space(name).contains(o), name
        assert env.state_space.contains(env.state())
        obs, *_ = env.step({a: np.full(3, 2) for a in env.agents})
    assert env.state_space.contains(env.state())


def test_aec_factory_passes_pettingzoo_api_test(faulty_scenario: Scenario) -> None:
    aec = env(scenario=faulty_scenario, render_mode="ansi")
    api_test(aec, num_cycles=40)
    assert isinstance(aec_to_parallel(aec), MultiAgentLoadBalanceEnv)  # back to the env
    parallel_api_test(parallel_env(scenario=faulty_scenario), num_cycles=40)


def test_ansi_render_shows_every_lbs_weights() -> None:
    penv = parallel_env(scenario="paper-7", episode_seconds=2.0, render_mode="ansi")
    assert penv.metadata["render_modes"] == ["ansi"]
    penv.reset(seed=0)
    penv.step({"lb0_g0": np.full(7, 2), "lb1_g0": np.zeros(7, dtype=np.int64)})
    text = penv.render()
    assert isinstance(text, str)
    rows = [r.split() for r in text.splitlines()[2:]]
    assert len(rows) == 7
    # Columns: server, up, capacity, lb0_weight, lb0_active, lb1_weight, lb1_active.
    np.testing.assert_allclose([float(r[3]) for r in rows], 2.0 * penv.capacities)
    np.testing.assert_allclose([float(r[5]) for r in rows], penv.capacities)
    assert MultiAgentLoadBalanceEnv("paper-7").render() is None
    with pytest.raises(ValueError, match="render_mode: expected None or one of ansi"):
        parallel_env(scenario="paper-7", render_mode="rgb_array")
