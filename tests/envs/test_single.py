"""LoadBalanceEnv: a real Gymnasium environment whose actions change what happens."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import marllbd.envs  # noqa: F401 - registers the ids
from marllbd.envs import LoadBalanceEnv
from marllbd.features import FEATURE_NAMES


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
