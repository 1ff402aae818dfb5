"""prequal-w: Prequal whose scores another policy's weights scale.

Weights of one are Prequal exactly (from the first interval: the engine and the envs
start a prequal-w node on ones); a policy's weights reach the rule as its correction of the
configured capacities; a small weight keeps flows off its server."""

from __future__ import annotations

import numpy as np
import pytest

from marllbd.envs import LoadBalanceEnv, LoadBalanceVectorEnv
from marllbd.envs.multi import MultiAgentLoadBalanceEnv
from marllbd.envs.multi_vector import MultiAgentVectorEnv
from marllbd.features import NUM_FEATURES
from marllbd.policies import PolicyContext, PolicyError, load
from marllbd.sim.engine import Engine, first_weights
from marllbd.sim.scenario import from_dict, load_scenario
from marllbd.training.evaluate import evaluate

CAPS = np.array([1.0, 2.0, 4.0, 1.0])


def _multi_lb(seed: int = 3):  # type: ignore[no-untyped-def]
    """paper-24's 6 LB nodes, 8 s: every node probes the same servers."""
    return load_scenario("paper-24").replace(duration=8.0, seed=seed)


@pytest.mark.parametrize("spec", ["prequal-w", "prequal-w:sed"])
def test_ones_pick_exactly_as_prequal(spec: str) -> None:
    results = evaluate(_multi_lb(), ["prequal", spec], [3, 4])
    by = {(r.policy, r.seed): r for r in results}
    for seed in (3, 4):
        a, b = by[("prequal", seed)], by[(spec, seed)]
        assert a.flows > 1000
        np.testing.assert_array_equal(a.fct, b.fct)


def test_the_engine_starts_a_prequal_w_node_on_ones() -> None:
    sc = _multi_lb()
    eng = Engine(sc, rule=["prequal-w", "sed"] * 3)
    np.testing.assert_array_equal(eng.lb_w[0], np.ones(eng.num_servers))
    np.testing.assert_array_equal(eng.lb_w[1], eng.static_capacities)


def test_a_small_weight_keeps_flows_off_its_server() -> None:
    """Four equal servers behind one LB: with server 3's weight 1/50 its probes' latency
    counts 50x, so it is picked only when it is the only cold probe."""
    sc = from_dict(
        {
            "servers": {"workers": [2, 2, 2, 2]},
            "duration": 10.0,
            "trace": {"kind": "poisson", "load": 0.6, "work": "exp", "mean_work": 0.1},
        },
        source="<four>",
    )
    counts = []
    for w3 in (1.0, 0.02):
        eng = Engine(sc, rule="prequal-w")
        eng.set_weights(0, np.array([1.0, 1.0, 1.0, w3]))
        while not eng.done:
            new = eng.step().observations[0].new_flows.astype(float)  # cumulative
        counts.append(new / new.sum())
    assert counts[0][3] > 0.2  # even shares with equal weights
    assert counts[1][3] < 0.5 * counts[0][3]


def test_weights_are_the_inner_policys_correction_of_the_capacities() -> None:
    pw, inner = load("prequal-w:adaptive-sed"), load("adaptive-sed")
    ctx = PolicyContext(4, CAPS, seed=1)
    pw.reset(ctx)
    inner.reset(ctx)
    rng = np.random.default_rng(0)
    for _ in range(5):
        feats = rng.exponential(0.1, (4, NUM_FEATURES))
        active = np.ones(4, dtype=bool)
        got = pw.decide(feats, active, None)
        want = inner.decide(feats, active, None) / CAPS
        np.testing.assert_allclose(got, want / want.mean(), rtol=1e-12)
    assert pw.dispatch == "prequal-w" and pw.name == "prequal-w:adaptive-sed"
    assert not pw.needs_ground_truth


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("prequal-w:prequal-w", "cannot be prequal-w"),
        ("prequal-w:prequal", "applies its weights with 'prequal'"),
        ("prequal-w:active-wcmp", "applies its weights with 'wcmp'"),
        ("prequal-w:nope", "unknown policy 'nope'"),
    ],
)
def test_bad_inner_policies_are_named(spec: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        load(spec)


def test_decide_before_reset_is_refused() -> None:
    with pytest.raises(PolicyError, match="reset"):
        load("prequal-w:sed").decide(np.zeros((4, NUM_FEATURES)), np.ones(4, dtype=bool), None)


def test_every_env_starts_a_prequal_w_episode_on_ones() -> None:
    """The envs' first interval runs on the engine's first weights (first_weights), as
    marllbd eval's does: a prequal-w episode starts as Prequal, a sed one on capacities."""
    for rule in ("prequal-w", "sed"):
        sc = _multi_lb().replace(dispatch=rule, duration=2.0)
        want = first_weights(rule, sc.capacities)
        assert want.tolist() == ([1.0] * 24 if rule == "prequal-w" else sc.capacities.tolist())
        single = LoadBalanceEnv(sc)
        single.reset(seed=1)
        np.testing.assert_array_equal(single._weights, want)
        _, info = LoadBalanceVectorEnv(2, sc).reset(seed=1)
        np.testing.assert_array_equal(info["weights"], np.tile(want, (2, 1)))
        multi = MultiAgentLoadBalanceEnv(sc)
        multi.reset(seed=1)
        np.testing.assert_array_equal(multi._weights, np.tile(want, (6, 1)))
        mv = MultiAgentVectorEnv(2, sc)
        mv.reset(seed=1)
        np.testing.assert_array_equal(mv._weights, np.tile(want, (2, 6, 1)))
