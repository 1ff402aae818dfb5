"""MultiAgentLoadBalanceEnv: a PettingZoo ParallelEnv with a centralised state."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from marllbd.envs import MultiAgentLoadBalanceEnv
from marllbd.features import NUM_FEATURES


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
