"""MultiAgentVectorEnv: N multi-agent episodes in one compiled call, each the single env's
bit for bit."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from marllbd.envs import MultiAgentLoadBalanceEnv, MultiAgentVectorEnv
from marllbd.envs.multi_vector import MultiAgentSyncVectorEnv
from marllbd.features import FEATURE_NAMES
from marllbd.sim.scenario import Scenario
from tests.envs.conftest import read_only_copy

_FCT = FEATURE_NAMES.index("fct_decayed_mean")


def _neg_fct(features: np.ndarray, active: np.ndarray) -> float:
    return -float(features[active, _FCT].mean())


def _actions(vec: MultiAgentVectorEnv, rng: np.random.Generator) -> np.ndarray:
    shape = (vec.num_envs, len(vec.possible_agents), vec.group_size)
    if vec.template.action_spec.kind == "discrete":
        return rng.integers(0, len(vec.template.action_spec.levels), size=shape)
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def _run(vec: MultiAgentVectorEnv, seed: int, steps: int, rng_seed: int = 3) -> list[bytes]:
    """Everything the vector env returns over reset + `steps` steps, as bytes."""
    rng = np.random.default_rng(rng_seed)
    obs, info = vec.reset(seed=seed)
    out = [obs.tobytes(), vec.state().tobytes(), info["fct_mean"].tobytes()]
    for _ in range(steps):
        obs, rew, _, trunc, info = vec.step(_actions(vec, rng))
        out += [obs.tobytes(), rew.tobytes(), trunc.tobytes(), vec.state().tobytes()]
        out += [info[k].tobytes() for k in ("fct_mean", "fct_p90_max", "completed", "weights")]
        if trunc.all():
            break
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"action_type": "continuous"},
        {"reward_metric": "custom", "reward_fn": _neg_fct},
        {"reward_metric": "cv", "reward_shaping": "exp", "weight_base": "uniform"},
    ],
)
@pytest.mark.parametrize("which", ["faulty_scenario", "file_trace_scenario"])
def test_each_sub_env_is_the_single_env_bit_for_bit(
    which: str, kwargs: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    sc: Scenario = request.getfixturevalue(which)
    vec = MultiAgentVectorEnv(3, sc, **kwargs)
    singles = [MultiAgentLoadBalanceEnv(sc, **kwargs) for _ in range(3)]
    agents = vec.possible_agents
    assert agents == singles[0].possible_agents == ["lb0_g0", "lb0_g1", "lb1_g0", "lb1_g1"]
    rng = np.random.default_rng(0)
    for episode in range(2):  # the second after a reset of every sub-env, unseeded
        obs, info = vec.reset(seed=7 if episode == 0 else None)
        outs = [e.reset(seed=7 + i if episode == 0 else None) for i, e in enumerate(singles)]
        steps = 0
        trunc = np.zeros(3, dtype=bool)
        while True:
            for i, (o, inf) in enumerate(outs):
                for k, name in enumerate(agents):
                    assert obs[i, k].tobytes() == o[name].tobytes(), (i, name)
                    for key in ("fct_mean", "fct_p90_max"):
                        assert np.array_equal(info[key][i, k], inf[name][key], True), key
                    assert info["weights"][i, k].tobytes() == inf[name]["weights"].tobytes()
                    for key in ("t", "completed", "rejected"):
                        assert info[key][i] == inf[name][key], key
                    assert info["utilization"][i].tobytes() == inf[name]["utilization"].tobytes()
                assert vec.state()[i].tobytes() == singles[i].state().tobytes()
            if steps and trunc.all():
                break
            act = _actions(vec, rng)
            obs, rew, term, trunc, info = vec.step(act)
            outs = []
            for i, env in enumerate(singles):
                o, r, _, tr, inf = env.step({a: act[i, k] for k, a in enumerate(agents)})
                assert rew[i] == r[agents[0]] and not term[i] and trunc[i] == tr[agents[0]]
                outs.append((o, inf))
            steps += 1
        assert not vec.agents and not singles[0].agents
    assert sum(e.engine.rejected for e in singles) > 0  # backlogs overflowed: faults bite


def test_parallel_and_serial_steps_agree(faulty_scenario: Scenario) -> None:
    runs = [_run(MultiAgentVectorEnv(4, faulty_scenario, parallel=p), 2, 25) for p in (True, False)]
    assert runs[0] == runs[1]


def test_grouped_and_per_lb_layouts() -> None:
    vec = MultiAgentVectorEnv(2, "seed-16", episode_seconds=3.0)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 4, 4, 12) and obs.dtype == np.float32 and obs.flags.c_contiguous
    assert vec.state().shape == (2, *vec.state_space.shape)
    actions = np.zeros((2, 4, 4), dtype=np.int64)
    actions[0, 2] = 2  # agent lb0_g2 of sub-env 0: its group's servers 8..11 at level 2
    _, _, _, _, info = vec.step(actions)
    w = info["weights"].reshape(2, 16)  # agents' groups: servers 0..3, 4..7, ...
    np.testing.assert_array_equal(w[0, 8:12], 2.0 * vec.capacities[8:12])
    np.testing.assert_array_equal(w[0, :8], vec.capacities[:8])
    np.testing.assert_array_equal(w[1], vec.capacities)
    per_lb = MultiAgentVectorEnv(2, "paper-7", episode_seconds=3.0)
    obs, _ = per_lb.reset(seed=0)
    assert obs.shape == (2, 2, 7, 12) and per_lb.possible_agents == ["lb0_g0", "lb1_g0"]


def test_reset_mask_restarts_only_the_masked_sub_envs(faulty_scenario: Scenario) -> None:
    vec = MultiAgentVectorEnv(3, faulty_scenario)
    single = MultiAgentLoadBalanceEnv(faulty_scenario)
    vec.reset(seed=0)
    action = np.zeros((3, 4, 3), dtype=np.int64)
    for _ in range(4):
        before, *_ = vec.step(action)
    obs, _ = vec.reset(seed=[None, 50, None], options={"reset_mask": np.array([0, 1, 0], bool)})
    assert obs[0].tobytes() == before[0].tobytes() and obs[2].tobytes() == before[2].tobytes()
    first, _ = single.reset(seed=50)
    assert all(obs[1, k].tobytes() == first[a].tobytes() for k, a in enumerate(vec.possible_agents))


def test_a_step_after_the_end_and_bad_input_are_named(faulty_scenario: Scenario) -> None:
    vec = MultiAgentVectorEnv(2, faulty_scenario)
    with pytest.raises(RuntimeError, match="call reset"):
        vec.step(np.zeros((2, 4, 3), dtype=np.int64))
    with pytest.raises(RuntimeError, match="reset_mask: call reset"):
        vec.reset(options={"reset_mask": np.ones(2, bool)})
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions: expected shape \(2, 4, 3\)"):
        vec.step(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"action: expected levels in 0\.\.2"):
        vec.step(np.full((2, 4, 3), 7))
    with pytest.raises(ValueError, match="reset_mask: expected a bool"):
        vec.reset(options={"reset_mask": np.ones(3, bool)})
    with pytest.raises(ValueError, match="seed: expected 2 seeds"):
        vec.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match="num_envs"):
        MultiAgentVectorEnv(0, faulty_scenario)
    while not vec.step(np.zeros((2, 4, 3), dtype=np.int64))[3].all():
        pass
    with pytest.raises(RuntimeError, match=r"sub-envs \[0, 1\]: their episodes ended"):
        vec.step(np.zeros((2, 4, 3), dtype=np.int64))


def test_pickles_before_and_after_reset_and_continues_exactly(faulty_scenario: Scenario) -> None:
    vec = MultiAgentVectorEnv(2, faulty_scenario)
    fresh = pickle.loads(pickle.dumps(vec))
    assert _run(fresh, 1, 30) == _run(vec, 1, 30)
    vec.reset(seed=4)
    rng = np.random.default_rng(9)
    for _ in range(5):
        vec.step(_actions(vec, rng))
    copies = [pickle.loads(pickle.dumps(vec)), read_only_copy(vec)]
    acts = [_actions(vec, rng) for _ in range(6)]
    tail = [vec.step(a)[0].tobytes() for a in acts]
    for copy in copies:
        assert [copy.step(a)[0].tobytes() for a in acts] == tail


def test_render_ansi_is_one_table_per_sub_env() -> None:
    vec = MultiAgentVectorEnv(2, "paper-7", episode_seconds=2.0, render_mode="ansi")
    vec.reset(seed=0)
    tables = vec.render()
    assert tables is not None and len(tables) == 2
    single = MultiAgentLoadBalanceEnv("paper-7", episode_seconds=2.0, render_mode="ansi")
    single.reset(seed=0)
    assert tables[0] == single.render() and "lb1" in tables[0]
    assert MultiAgentVectorEnv(1, "paper-7").render() is None


def test_unequal_groups_pad_their_rows_and_ignore_padding_actions(
    faulty_scenario: Scenario,
) -> None:
    sc = faulty_scenario.replace(groups=[[0, 1, 2, 3], [4, 5]])
    vec = MultiAgentVectorEnv(2, sc)
    single = MultiAgentLoadBalanceEnv(sc)
    obs, _ = vec.reset(seed=1)
    single.reset(seed=1)
    assert obs.shape == (2, 4, 4, 12)
    rng = np.random.default_rng(2)
    for _ in range(12):
        act = _actions(vec, rng)
        act[:, 1, 2:] = 99  # lb0_g1 has two servers: its padding rows' actions are ignored
        act[:, 3, 2:] = 99
        obs, rew, _, _, info = vec.step(act)
        o, r, *_, inf = single.step({a: act[0, k] for k, a in enumerate(vec.possible_agents)})
        assert not obs[:, 1, 2:].any() and not info["weights"][:, 1, 2:].any()
        for k, a in enumerate(vec.possible_agents):
            assert obs[0, k, : len(o[a])].tobytes() == o[a][: len(o[a])].tobytes()
            w = inf[a]["weights"]
            assert info["weights"][0, k, : len(w)].tobytes() == w.tobytes()
        assert rew[0] == r["lb0_g0"]


def test_the_sync_form_over_separate_envs_matches_the_batch(faulty_scenario: Scenario) -> None:
    batch = MultiAgentVectorEnv(2, faulty_scenario)
    sync = MultiAgentSyncVectorEnv([MultiAgentLoadBalanceEnv(faulty_scenario) for _ in range(2)])
    assert sync.possible_agents == batch.possible_agents and sync.num_envs == 2
    rng = np.random.default_rng(4)
    outs = [batch.reset(seed=5), sync.reset(seed=5)]
    while True:
        (ob, ib), (os_, is_) = outs
        assert ob.tobytes() == os_.tobytes()
        assert batch.state().tobytes() == sync.state().tobytes()
        for key, value in ib.items():
            assert np.array_equal(value, is_[key], equal_nan=True), key
        act = _actions(batch, rng)
        b, s = batch.step(act), sync.step(act)
        for x, y in zip(b[1:4], s[1:4], strict=True):
            assert np.array_equal(x, y)
        outs = [(b[0], b[4]), (s[0], s[4])]
        if b[3].all():
            break
    assert not sync.agents
