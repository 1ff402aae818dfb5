"""The simulator's use of the stateful rules: peak-ewma learns from its own LB node's
completions only, Prequal's pools fill from probes and stay deterministic, reset
forgets both, and bad rule parameters are named."""

from __future__ import annotations

import numpy as np
import pytest

from marllbd.dataplane import dispatch as D
from marllbd.sim.engine import Engine
from marllbd.sim.scenario import Scenario, from_dict


def two_lbs() -> Scenario:
    return from_dict(
        {
            "servers": {"workers": [1, 2, 2, 4]},
            "duration": 4.0,
            "control_interval": 0.5,
            "lb_nodes": 2,
            "trace": {"kind": "poisson", "load": 0.8, "work": "exp", "mean_work": 0.1},
        },
        source="<two-lbs>",
    )


def test_peak_ewma_learns_from_its_own_completions_and_reset_forgets() -> None:
    engine = Engine(two_lbs(), rule=["peak-ewma", "sed"])
    while not engine.done:
        engine.step(copy=False)
    learned = engine.pe[0]
    assert (learned["ewma"] > 0).all()  # every server completed some of node 0's flows
    assert (engine.pe[1]["ewma"] == D.PEAK_EWMA_NONE).all()  # node 1 runs SED
    # Each stamp is the time of that server's last completion of a node-0 flow.
    done = ~np.isnan(engine.f_done) & (engine.f_lb == 0)
    for s in range(engine.num_servers):
        last = engine.f_done[done & (engine.f_server == s)].max()
        assert int(learned["stamp_ns"][s]) == int(np.uint64(last * 1e9))
    engine.reset()
    assert (engine.pe["ewma"] == D.PEAK_EWMA_NONE).all()
    assert (engine.pq["server"] == -1).all()


def test_prequal_pools_fill_from_probes_and_runs_repeat() -> None:
    sc = two_lbs()
    runs = []
    for _ in range(2):
        engine = Engine(sc, rule="prequal")
        while not engine.done:
            engine.step(copy=False)
        runs.append(engine)
    a, b = runs
    np.testing.assert_array_equal(a.f_fct, b.f_fct)
    np.testing.assert_array_equal(a.pq, b.pq)
    assert a.pq.shape == (2, D.RuleParams().prequal_pool)
    live = a.pq["server"] >= 0
    assert live.any()
    assert (a.pq["server"][live] < a.num_servers).all()
    assert (a.pq["t_ns"][live] <= np.uint64(sc.duration * 1e9)).all()
    assert np.isfinite(a.fct()).all() and a.rejected == 0


def test_prequal_probe_rate_changes_the_run() -> None:
    sc = two_lbs()
    fcts = []
    for probes in (1.0, 3.0):
        engine = Engine(sc, rule="prequal", rule_params=D.RuleParams(prequal_probes=probes))
        while not engine.done:
            engine.step(copy=False)
        fcts.append(engine.f_fct.copy())
    assert not np.array_equal(fcts[0], fcts[1], equal_nan=True)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("peak_ewma_tau", 0.0),
        ("prequal_pool", 33),
        ("prequal_pool", 8.5),
        ("prequal_probes", -1.0),
        ("prequal_q_rif", 1.5),
        ("prequal_max_age", float("inf")),
        ("prequal_max_uses", 0),
    ],
)
def test_bad_rule_params_are_named(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"rule params: {key} = "):
        D.RuleParams(**{key: value})
