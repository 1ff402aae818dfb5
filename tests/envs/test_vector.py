"""LoadBalanceVectorEnv: N episodes in one compiled call, each the single env's bit for bit."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import marllbd.envs  # noqa: F401 - registers the ids
from marllbd.envs import LoadBalanceEnv, LoadBalanceVectorEnv
from marllbd.envs.single import episode_steps
from marllbd.features import FEATURE_NAMES
from marllbd.sim.scenario import Scenario

_FCT = FEATURE_NAMES.index("fct_decayed_mean")


def _neg_fct(features: np.ndarray, active: np.ndarray) -> float:
    return -float(features[active, _FCT].mean())


def _actions(vec: LoadBalanceVectorEnv, rng: np.random.Generator) -> np.ndarray:
    n = vec.num_servers
    if vec.template.action_spec.kind == "discrete":
        return rng.integers(0, len(vec.template.action_spec.levels), size=(vec.num_envs, n))
    return rng.uniform(-1.0, 1.0, size=(vec.num_envs, n)).astype(np.float32)


def _compare(
    vec: LoadBalanceVectorEnv, singles: list[LoadBalanceEnv], steps: int, seed: int
) -> int:
    """Step the vector env and the single envs with the same actions, autoresetting the
    singles as next-step autoreset does; assert equality; returns the autoresets seen."""
    obs, info = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=seed + i)
        assert np.array_equal(obs[i], o)
        for k, v in inf.items():
            assert np.array_equal(info[k][i], v, equal_nan=True), k
    rng = np.random.default_rng(seed)
    ended = np.zeros(vec.num_envs, dtype=bool)
    resets = 0
    for _ in range(steps):
        actions = _actions(vec, rng)
        obs, rewards, terminated, truncated, info = vec.step(actions)
        for i, env in enumerate(singles):
            if ended[i]:
                o, inf = env.reset()
                r, te, tr = 0.0, False, False
                resets += 1
            else:
                o, r, te, tr, inf = env.step(actions[i])
            assert np.array_equal(obs[i], o)
            assert rewards[i] == r and terminated[i] == te and truncated[i] == tr
            for k, v in inf.items():
                assert np.array_equal(info[k][i], v, equal_nan=True), k
                assert info[f"_{k}"][i]
        ended = truncated | terminated
    return resets


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action_type": "continuous"},
        {"action_type": "discrete", "lb": 1},
        {"reward_metric": "custom", "reward_fn": _neg_fct},
        {"reward_metric": "cv", "reward_shaping": "exp", "weight_base": "uniform"},
    ],
)
@pytest.mark.parametrize("which", ["faulty_scenario", "file_trace_scenario"])
def test_each_sub_env_is_the_single_env_bit_for_bit(
    which: str, kwargs: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    sc: Scenario = request.getfixturevalue(which)
    vec = LoadBalanceVectorEnv(3, sc, **kwargs)
    singles = [LoadBalanceEnv(sc, **kwargs) for _ in range(3)]
    steps = 2 * episode_steps(sc) + 5  # two autoresets each, faults and rejections included
    assert _compare(vec, singles, steps, seed=7) == 6


def test_make_vec_returns_it_with_next_step_autoreset_and_the_time_limit() -> None:
    vec = gym.make_vec(
        "marllbd/LoadBalanceDiscrete-v0", num_envs=2, vectorization_mode="vector_entry_point",
        scenario="paper-7", max_episode_steps=5,
    )  # fmt: skip
    assert isinstance(vec, LoadBalanceVectorEnv)
    assert vec.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert vec.template.action_spec.kind == "discrete"  # the registration's kwargs
    assert vec.action_space.shape == (2, 7) and vec.observation_space.shape == (2, 7, 12)
    vec.reset(seed=0)
    action = np.zeros((2, 7), dtype=np.int64)
    truncations = [bool(vec.step(action)[3].all()) for _ in range(6)]
    assert truncations == [False] * 4 + [True, False]  # 5 steps, then the autoreset step
    singles = gym.make_vec("marllbd/LoadBalance-v0", num_envs=2, vectorization_mode="sync")
    assert isinstance(singles, gym.vector.SyncVectorEnv)  # the other modes stay gymnasium's


def test_parallel_and_serial_steps_agree(faulty_scenario: Scenario) -> None:
    runs = []
    for parallel in (True, False):
        vec = LoadBalanceVectorEnv(4, faulty_scenario, parallel=parallel)
        out = [vec.reset(seed=3)[0]]
        rng = np.random.default_rng(1)
        for _ in range(30):
            obs, r, _, _, info = vec.step(_actions(vec, rng))
            out += [obs, r, info["completed"]]
        runs.append(out)
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))


def test_seeds_per_sub_env_and_reproducible(faulty_scenario: Scenario) -> None:
    vec = LoadBalanceVectorEnv(3, faulty_scenario)
    a = vec.reset(seed=[5, 9, 5])[0]
    assert np.array_equal(a[0], a[2]) and not np.array_equal(a[0], a[1])
    assert np.array_equal(vec.reset(seed=5)[0][0], a[0])  # seed s: sub-env 0 gets s
    with pytest.raises(ValueError, match="seed: expected 3 seeds"):
        vec.reset(seed=[1, 2])


def test_pickles_before_and_after_reset_and_continues_exactly(faulty_scenario: Scenario) -> None:
    vec = LoadBalanceVectorEnv(2, faulty_scenario)
    fresh = pickle.loads(pickle.dumps(vec))
    assert np.array_equal(fresh.reset(seed=1)[0], vec.reset(seed=1)[0])
    action = np.zeros((2, 6), dtype=np.float32)
    for _ in range(7):
        vec.step(action)
    copy = pickle.loads(pickle.dumps(vec))
    for _ in range(25):  # past the end of the episode: an autoreset too
        a, b = vec.step(action), copy.step(action)
        assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4], strict=True))


def test_render_ansi_is_one_table_per_sub_env(faulty_scenario: Scenario) -> None:
    vec = LoadBalanceVectorEnv(2, faulty_scenario, render_mode="ansi")
    vec.reset(seed=0)
    tables = vec.render()
    assert tables is not None and len(tables) == 2
    assert all(t.startswith("t = 0.250 s") and "lb0_weight" in t for t in tables)
    assert LoadBalanceVectorEnv(1, faulty_scenario).render() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_envs": 0}, "num_envs: expected a positive integer"),
        ({"num_envs": 2, "max_episode_steps": 0}, "max_episode_steps"),
        ({"num_envs": 2, "lb": 5}, "lb: expected"),
        ({"num_envs": 2, "render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, Any], message: str, faulty_scenario: Scenario
) -> None:
    with pytest.raises(ValueError, match=message):
        LoadBalanceVectorEnv(scenario=faulty_scenario, **kwargs)


def test_bad_actions_and_stepping_before_reset_are_named(faulty_scenario: Scenario) -> None:
    vec = LoadBalanceVectorEnv(2, faulty_scenario)
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros((2, 6)))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions: expected shape \(2, 6\)"):
        vec.step(np.zeros(6))
    with pytest.raises(ValueError, match=r"action: expected finite values in \[-1, 1\]"):
        vec.step(np.full((2, 6), np.nan))


def test_disabled_autoreset_resets_only_the_masked_sub_envs(faulty_scenario: Scenario) -> None:
    vec = LoadBalanceVectorEnv(3, faulty_scenario, autoreset_mode="Disabled")
    assert vec.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    singles = [LoadBalanceEnv(faulty_scenario) for _ in range(3)]
    seeds = [11, 4, 8]
    obs, _ = vec.reset(seed=seeds)
    for env, s, o in zip(singles, seeds, obs, strict=True):
        assert np.array_equal(env.reset(seed=s)[0], o)
    action = np.zeros((3, 6), dtype=np.float32)
    for _ in range(episode_steps(faulty_scenario)):
        obs, rewards, _, truncated, _ = vec.step(action)
        for i, env in enumerate(singles):
            o, r, _, tr, _ = env.step(action[i])
            assert np.array_equal(obs[i], o) and rewards[i] == r and truncated[i] == tr
    assert truncated.all()  # the last observation of the episode, not a reset one
    with pytest.raises(RuntimeError, match=r"sub-envs \[0, 1, 2\]: their episodes ended"):
        vec.step(action)
    mask = np.array([True, False, True])
    before = obs
    obs, info = vec.reset(options={"reset_mask": mask})
    assert np.array_equal(obs[1], before[1]) and list(info["_t"]) == [True, False, True]
    for i in (0, 2):
        assert np.array_equal(obs[i], singles[i].reset()[0]) and info["t"][i] == 0.25
    with pytest.raises(RuntimeError, match="sub-envs \\[1\\]"):
        vec.step(action)  # sub-env 1 still ended
    obs, _ = vec.reset(seed=[None, 5, None], options={"reset_mask": ~mask})
    assert np.array_equal(obs[1], singles[1].reset(seed=5)[0])
    obs, rewards, *_ = vec.step(action)
    for i, env in enumerate(singles):
        o, r, *_ = env.step(action[i])
        assert np.array_equal(obs[i], o) and rewards[i] == r


def test_bad_autoreset_modes_and_masks_are_named(faulty_scenario: Scenario) -> None:
    with pytest.raises(ValueError, match="autoreset_mode: expected NextStep or Disabled"):
        LoadBalanceVectorEnv(2, faulty_scenario, autoreset_mode=AutoresetMode.SAME_STEP)
    vec = LoadBalanceVectorEnv(2, faulty_scenario)
    with pytest.raises(RuntimeError, match="without a mask first"):
        vec.reset(options={"reset_mask": np.ones(2, dtype=bool)})
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"reset_mask: expected a bool numpy array"):
        vec.reset(options={"reset_mask": [True, False]})
