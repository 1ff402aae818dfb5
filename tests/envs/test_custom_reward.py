"""reward_metric="custom": the envs return exactly the user's reward_fn(features, active)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import marllbd.envs  # noqa: F401 - registers the ids
from marllbd.envs import LoadBalanceEnv, MultiAgentLoadBalanceEnv
from marllbd.envs.reward import DEFAULT_REWARD_FIELD, RewardSpec
from marllbd.features import FEATURE_NAMES, NUM_FEATURES
from marllbd.sim.scenario import load_scenario

FCT = FEATURE_NAMES.index("fct_decayed_mean")


class Recorder:
    """A reward_fn that keeps copies of its arguments and returns a value that depends on both."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, features: np.ndarray, active: np.ndarray) -> float:
        self.calls.append((features.copy(), active.copy()))
        return self.value(features, active)

    @staticmethod
    def value(features: np.ndarray, active: np.ndarray) -> float:
        return -float(features[active, FCT].mean()) + 0.01 * int(active.sum())


def test_single_env_returns_the_custom_reward_of_its_observation() -> None:
    # Server 2 goes down at 1 s: `active` must say so.
    sc = load_scenario("paper-7").replace(
        duration=3.0, faults=[{"time": 1.0, "server": 2, "kind": "down"}]
    )
    fn = Recorder()
    env = LoadBalanceEnv(sc, reward_metric="custom", reward_fn=fn)
    obs, _ = env.reset(seed=4)
    assert len(fn.calls) == 1  # the reset interval's reward is computed (and dropped)
    env.action_space.seed(4)
    truncated = False
    while not truncated:
        obs, reward, _, truncated, _ = env.step(env.action_space.sample())
        features, active = fn.calls[-1]
        assert features.dtype == np.float64 and features.shape == (7, NUM_FEATURES)
        np.testing.assert_array_equal(features.astype(np.float32), obs)
        assert reward == fn.value(features, active)  # exactly, bit for bit
    ups = [int(active.sum()) for _, active in fn.calls]
    assert len(fn.calls) == 12 and ups[:3] == [7, 7, 7] and ups[-1] == 6
    assert not fn.calls[-1][1][2]


def test_gym_make_passes_the_custom_reward() -> None:
    env = gym.make(
        "marllbd/LoadBalance-v0",
        scenario="seed-16",
        episode_seconds=2.0,
        reward_metric="custom",
        reward_fn=lambda features, active: 42.0,
    )
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[1] == 42.0


def test_multi_env_team_reward_is_the_custom_reward_of_the_lb_mean() -> None:
    fn = Recorder()
    env = MultiAgentLoadBalanceEnv(
        "paper-7", episode_seconds=3.0, reward_metric="custom", reward_fn=fn
    )
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    while env.agents:
        actions = {a: rng.integers(0, 3, size=7) for a in env.agents}
        _, rewards, *_ = env.step(actions)
        features, active = fn.calls[-1]
        np.testing.assert_array_equal(features, env._features.mean(axis=0))
        assert active.all()
        assert set(rewards.values()) == {fn.value(features, active)}


def test_the_features_are_read_only_for_the_reward_fn() -> None:
    def vandal(features: np.ndarray, active: np.ndarray) -> float:
        features[:] = 0.0
        return 0.0

    env = LoadBalanceEnv("seed-16", episode_seconds=2.0, reward_metric="custom", reward_fn=vandal)
    with pytest.raises(ValueError, match="read-only"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward_metric": "custom"}, r"reward_fn: reward_metric='custom' needs a callable"),
        ({"reward_metric": "custom", "reward_fn": 3.0}, "reward_fn: .* got 3.0"),
        ({"reward_fn": lambda f, a: 0.0}, "reward_fn: given, but reward_metric is 'jain'"),
        ({"reward_metric": "happiness"}, "reward_metric: unknown metric 'happiness'.*custom"),
    ],
)
@pytest.mark.parametrize("env_cls", [LoadBalanceEnv, MultiAgentLoadBalanceEnv])
def test_bad_custom_arguments_are_named(env_cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        env_cls("seed-16", **kwargs)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), np.float64(-np.inf), None, "1.0", [1.0], np.array([1.0, 2.0])],
)
def test_a_bad_return_value_is_named(value: object) -> None:
    spec = RewardSpec("custom", fn=lambda features, active: value)
    with pytest.raises(ValueError, match=r"reward_fn: returned .*expected a finite number"):
        spec(np.ones((3, NUM_FEATURES)))
    env = LoadBalanceEnv(
        "seed-16", episode_seconds=2.0, reward_metric="custom", reward_fn=lambda f, a: value
    )
    with pytest.raises(ValueError, match="reward_fn: returned"):
        env.reset(seed=0)


@pytest.mark.parametrize("value", [np.float32(0.5), np.int64(2), True, np.array(1.5), 7])
def test_numeric_scalars_are_rewards(value: object) -> None:
    spec = RewardSpec("custom", fn=lambda features, active: value)
    got = spec(np.ones((3, NUM_FEATURES)))
    assert type(got) is float and got == float(value)  # type: ignore[arg-type]


def test_one_default_reward_field() -> None:
    single = LoadBalanceEnv("seed-16")
    made = gym.make("marllbd/LoadBalance-v0").unwrapped
    multi = MultiAgentLoadBalanceEnv("seed-16")
    for env in (single, made, multi):
        assert env.reward_spec == RewardSpec()  # type: ignore[attr-defined]
        assert env.reward_spec.field == DEFAULT_REWARD_FIELD  # type: ignore[attr-defined]
