"""LoadBalanceEnv: a real Gymnasium environment whose actions change what happens."""

from __future__ import annotations

import functools
import multiprocessing
import pickle
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import marllbd.envs  # noqa: F401 - registers the ids
from marllbd.envs import LoadBalanceEnv, MultiAgentLoadBalanceEnv
from marllbd.features import FEATURE_NAMES
from marllbd.sim.scenario import Scenario
from tests.envs.conftest import read_only_copy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_servers": 16, "action_type": "discrete"},
        {"scenario": "paper-7"},
        {"scenario": "paper-7", "reward_metric": "cv", "reward_shaping": "exp"},
    ],
)
def test_passes_gymnasium_checker_without_warnings(kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("marllbd/LoadBalance-v0", episode_seconds=5.0, **kwargs).unwrapped
        check_env(env)


def test_seed_call_and_episode_shape() -> None:
    env = LoadBalanceEnv(num_servers=16, action_type="discrete")
    obs, info = env.reset(seed=0)
    assert obs.shape == (16, len(FEATURE_NAMES)) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated and 0.0 <= reward <= 1.0
    assert steps == round(60.0 / 0.25) - 1  # reset consumed the first interval
    assert info["completed"] > 1000 and np.isfinite(info["fct_mean"])


def test_actions_change_observations() -> None:
    """Same seed and state, different weights: the next observations differ."""
    results = []
    for level in (0, 2):
        env = LoadBalanceEnv("paper-7", action_type="discrete", episode_seconds=10.0)
        env.reset(seed=11)
        action = np.zeros(7, dtype=np.int64)
        action[0] = level  # favour (or not) server 0, a 1-worker server
        for _ in range(12):
            obs, *_ = env.step(action)
        results.append(obs)
    a, b = results
    col = FEATURE_NAMES.index("active_flows")
    assert not np.array_equal(a, b)
    assert b[0, col] > a[0, col]  # a heavier weight draws more flows to server 0
    prev = FEATURE_NAMES.index("prev_weight")
    assert b[0, prev] == 2.0 * a[0, prev]


def test_reset_seed_is_reproducible() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = LoadBalanceEnv("paper-7", episode_seconds=3.0)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(5):
            out.append(env.step(env.action_space.sample())[0])
        return np.array(out)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action_type": "binary"}, "action_type"),
        ({"reward_metric": "happiness"}, "reward_metric: unknown metric"),
        ({"reward_field": "cpu"}, "reward_field"),
        ({"reward_shaping": "sqrt"}, "reward_shaping"),
        ({"num_servers": 5, "scenario": "paper-7"}, "num_servers"),
        ({"lb": 3, "scenario": "paper-7"}, "lb: expected 0..1"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadBalanceEnv(**kwargs)


def test_bad_actions_are_refused() -> None:
    env = LoadBalanceEnv("paper-7", action_type="discrete", episode_seconds=2.0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"levels in 0\.\.2"):
        env.step(np.full(7, 3))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(6, dtype=np.int64))


def test_step_before_reset() -> None:
    with pytest.raises(gym.error.ResetNeeded):
        LoadBalanceEnv("paper-7").step(np.zeros(7, dtype=np.float32))


@pytest.mark.parametrize("metric", ["jain", "cv", "gini"])
def test_reward_matches_the_fairness_module(metric: str) -> None:
    from marllbd import fairness
    from marllbd.envs.reward import RewardSpec

    rng = np.random.default_rng(0)
    spec = RewardSpec(metric=metric)
    for feats in (rng.random((16, 12)), np.zeros((4, 12)), rng.random((1, 12))):
        want = fairness.reward(metric, feats[:, spec.column])
        assert spec(feats) == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_action_weights_check_and_clip() -> None:
    from marllbd.envs.actions import ActionSpec

    base = np.array([1.0, 2.0, 4.0])
    cont = ActionSpec()
    # A compiled power (libm's pow): within an ulp of numpy's.
    want = np.power(3.0, np.array([-1.0, 0.0, 0.5])) * base
    for dtype in (np.float32, np.float64):
        got = cont.weights(np.array([-5.0, 0.0, 0.5], dtype=dtype), base)
        np.testing.assert_allclose(got, want, rtol=1e-15)
    got = cont.weights(np.array([-5, 0, 1]), base)  # integers: as float64
    np.testing.assert_allclose(got, [1 / 3, 2.0, 12.0], rtol=1e-15)
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, 1000)
    np.testing.assert_allclose(cont.weights(a, np.ones(1000)), np.power(3.0, a), rtol=1e-15)
    uniform = ActionSpec(base="uniform").weights(np.array([1.0, 0.0, -1.0]), base)
    np.testing.assert_allclose(uniform, [3.0, 1.0, 1 / 3], rtol=1e-15)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite values"):
            cont.weights(np.array([0.0, bad, 0.0]), base)
    disc = ActionSpec(kind="discrete")
    np.testing.assert_array_equal(disc.weights(np.array([0, 1, 2]), base), [1.0, 3.0, 8.0])
    np.testing.assert_array_equal(
        ActionSpec(kind="discrete", base="uniform").weights(np.array([2, 0, 1], np.int32), base),
        [2.0, 1.0, 1.5],
    )
    for bad_levels in ([0, 3, 1], [-1, 0, 0]):
        with pytest.raises(ValueError, match=r"levels in 0\.\.2"):
            disc.weights(np.array(bad_levels), base)


def _roll(env: LoadBalanceEnv, actions: list[np.ndarray]) -> list[tuple]:
    """Each step's observation, reward, truncation and info, for bit-for-bit comparison."""
    out = []
    for a in actions:
        obs, reward, _, truncated, info = env.step(a)
        out.append((obs.tobytes(), repr(reward), truncated, _exact(info)))
    return out


def _exact(info: dict) -> list[tuple[str, object]]:
    """info with its arrays as bytes and its numbers as their round-trip repr (NaN == NaN)."""
    return [
        (k, v.tobytes() if isinstance(v, np.ndarray) else repr(v)) for k, v in sorted(info.items())
    ]


def _actions(env: LoadBalanceEnv, n: int, seed: int) -> list[np.ndarray]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


@pytest.mark.parametrize("name", ["drift-7", "faulty_scenario", "file_trace_scenario"])
def test_pickled_envs_continue_bit_for_bit_before_and_after_reset(
    name: str, request: pytest.FixtureRequest
) -> None:
    if name.endswith("_scenario"):
        env = LoadBalanceEnv(request.getfixturevalue(name))
    else:
        env = LoadBalanceEnv(name, episode_seconds=22.0)  # past the drift at 20 s
    steps = env.scenario.duration / env.scenario.control_interval - 1  # the episode's
    before = pickle.loads(pickle.dumps(env))  # never reset: the engine does not exist yet
    actions = _actions(env, int(steps), seed=5)
    first = env.reset(seed=11)
    again = before.reset(seed=11)
    assert (again[0].tobytes(), _exact(again[1])) == (first[0].tobytes(), _exact(first[1]))
    after_reset = pickle.loads(pickle.dumps(env))
    head = _roll(env, actions[:8])
    assert _roll(before, actions[:8]) == head
    mid = pickle.loads(pickle.dumps(env))  # mid-episode, kernels compiled and bound
    shared = read_only_copy(env)  # as Ray ships it: arrays read-only
    tail = _roll(env, actions[8:])
    assert tail[-1][2] and not tail[-2][2]  # the episode ran to its truncation
    assert _roll(mid, actions[8:]) == tail
    assert _roll(shared, actions[8:]) == tail
    assert _roll(before, actions[8:]) == tail
    assert _roll(after_reset, actions) == head + tail
    assert env.engine.rejected > 0 or name == "drift-7"  # the overload rejected flows
    for other in (before, mid, shared, after_reset):
        assert other.engine.fct().tobytes() == env.engine.fct().tobytes()


def _step_in_child(env: LoadBalanceEnv, actions: list[np.ndarray]) -> list[tuple]:
    return _roll(env, actions)


def test_a_reset_env_ships_to_a_spawned_process() -> None:
    env = LoadBalanceEnv("paper-7", episode_seconds=5.0)
    env.reset(seed=2)
    actions = _actions(env, 10, seed=2)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply(_step_in_child, (env, actions))
    assert child == _roll(env, actions)


def test_pickled_envs_step_alike_in_an_async_vector_env(faulty_scenario: Scenario) -> None:
    envs = [LoadBalanceEnv(faulty_scenario) for _ in range(2)]
    envs[1].reset(seed=4)  # shipped mid-episode: the vector env's reset starts anew
    envs[1].step(envs[1].action_space.sample())
    fns = [functools.partial(pickle.loads, pickle.dumps(e)) for e in envs]
    sync = gym.vector.SyncVectorEnv(fns)
    spawned = gym.vector.AsyncVectorEnv(fns, context="spawn")
    try:
        results = []
        for vec in (sync, spawned):
            vec.action_space.seed(1)
            out = [vec.reset(seed=[7, 8])]
            out += [vec.step(vec.action_space.sample()) for _ in range(5)]
            results.append(out)
    finally:
        sync.close()
        spawned.close()
    for mine, theirs in zip(*results, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            if isinstance(a, dict):
                assert a.keys() == b.keys()
                for k in a:
                    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            else:
                np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[0][-1][0][0], results[0][-1][0][1])  # two seeds


def test_observations_stay_inside_the_real_bounds_through_faults(
    faulty_scenario: Scenario,
) -> None:
    env = LoadBalanceEnv(faulty_scenario)
    space = env.observation_space
    high = space.high[0]
    # Per feature: >= 0 and bounded by the scenario (18 flows: 3 workers x 4 + a backlog
    # of 6; 5.25 s: the run plus one interval; previous weight 3 x 2 workers).
    assert (space.low == 0).all() and (space.high == high).all()
    assert high[0] == 18 and high[1] == np.float32(5.25) and high[-1] == 6
    obs, _ = env.reset(seed=3)
    extremes = [np.ones(env.num_servers, dtype=np.float32), -np.ones(env.num_servers)]
    seen_max = obs.copy()
    for i, a in enumerate(_actions(env, 19, seed=3)):
        obs, *_ = env.step(extremes[i % 2] if i % 3 == 0 else a)
        assert space.contains(obs), FEATURE_NAMES[int(np.argmax((obs > space.high).any(0)))]
        seen_max = np.maximum(seen_max, obs)
    assert env.engine.done and env.engine.rejected > 0  # overloaded: backlogs filled
    assert seen_max[:, -1].max() == high[-1]  # the previous weight's bound is reached


def test_the_registered_env_passes_gymnasium_checker_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("marllbd/LoadBalance-v0")
        check_env(env.unwrapped)
        ansi = gym.make("marllbd/LoadBalance-v0", render_mode="ansi")
        assert ansi.render_mode == "ansi" and ansi.unwrapped.render_mode == "ansi"
        check_env(ansi.unwrapped)  # render() included


def test_registered_ids_truncate_where_the_default_scenario_ends() -> None:
    env = gym.make("marllbd/LoadBalance-v0")
    assert env.spec is not None and env.spec.max_episode_steps == 239  # 60 s / 0.25 s - reset's
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, _, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == env.spec.max_episode_steps and env.unwrapped.engine.done


def test_ansi_render_shows_each_servers_weight_and_flows() -> None:
    env = gym.make("marllbd/LoadBalance-v0", scenario="paper-7", render_mode="ansi")
    env.reset(seed=0)
    env.step(np.ones(7, dtype=np.float32))
    text = env.render()
    assert isinstance(text, str)
    rows = text.splitlines()[2:]
    assert len(rows) == 7
    weights = env.unwrapped.engine.lb_w[0]
    assert [float(r.split()[3]) for r in rows] == pytest.approx(weights, abs=1e-3)
    assert LoadBalanceEnv("paper-7").render() is None
    with pytest.raises(ValueError, match="render_mode: expected None or one of ansi"):
        LoadBalanceEnv("paper-7", render_mode="human")


def test_docs_api_table_lists_exactly_the_info_keys() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text.split("### What the environments give besides observations")[1]
    documented = re.findall(r"^\| `(\w+)` \|", section.split("\n\n###")[0], re.MULTILINE)
    _, info = LoadBalanceEnv("paper-7").reset(seed=0)
    _, infos = MultiAgentLoadBalanceEnv("paper-7").reset(seed=0)
    assert sorted(documented) == sorted(info) == sorted(infos["lb1_g0"])
