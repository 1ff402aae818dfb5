"""The engine is a faithful flow-level simulation: checked against a plain reference
simulator, against physics (no flow beats its own work), and against the expected
effect of weights, faults and dispatch rules."""

from __future__ import annotations

import numpy as np
import pytest

from marllbd.dataplane.dispatch import DISPATCH_NAMES
from marllbd.sim import traces
from marllbd.sim.engine import REJECT_PENALTY, RULE_CODES, Engine
from marllbd.sim.scenario import Scenario, from_dict, load_scenario
from tests.sim import reference


def _small(
    rule: str = "sed", lb_nodes: int = 2, faults: list | None = None, **kw: object
) -> Scenario:
    data = {
        "name": "small",
        "duration": 6.0,
        "seed": 3,
        "dispatch": rule,
        "lb_nodes": lb_nodes,
        "control_interval": 0.25,
        "servers": [
            {"workers": 1, "mp_level": 2, "backlog": 3},
            {"workers": 2, "mp_level": 2, "backlog": 3},
            {"workers": 1, "mp_level": 1, "backlog": 2},
        ],
        "trace": {"kind": "poisson", "load": 1.1, "mean_work": 0.2},
        "faults": faults or [],
    }
    data.update(kw)
    return from_dict(data)


def _run_all(e: Engine, limit: int = 100_000) -> None:
    steps = 0
    while not (e.done and e.drained) and steps < limit:
        e.step()
        steps += 1


@pytest.mark.parametrize("rule", ["sed", "lsq", "ecmp"])
@pytest.mark.parametrize(
    "faults",
    [
        [],
        [
            {"time": 1.0, "server": 1, "kind": "down"},
            {"time": 3.0, "server": 1, "kind": "up"},
            {"time": 2.0, "server": 0, "kind": "capacity", "workers": 3},
        ],
        [
            {"time": 0.5, "server": 0, "kind": "speed", "speed": 0.5},
            {"time": 1.5, "server": 1, "kind": "speed", "speed": 2.5},
            {"time": 2.0, "server": 0, "kind": "capacity", "workers": 3},
            {"time": 3.0, "server": 0, "kind": "speed", "speed": 1.0},
            {"time": 4.0, "server": 2, "kind": "speed", "speed": 0.25},
        ],
    ],
    ids=["none", "down-up-capacity", "speed"],
)
def test_engine_agrees_with_reference(rule: str, faults: list) -> None:
    sc = _small(rule, faults=faults)
    e = Engine(sc)
    weights = np.array([[1.0, 2.0, 1.0], [1.0, 1.5, 2.0]])
    for lb in range(2):
        e.set_weights(lb, weights[lb])
    _run_all(e)
    args = dict(
        arrival=e.arrival, work=e.work, f_lb=e.f_lb, fhash=e.fhash,
        workers=[1, 2, 1], mp_level=[2, 2, 1], backlog=[3, 3, 2], rtt=sc.rtt,
        rule=rule, weights=weights,
        faults=[(f.time, f.server, f.kind, float(f.speed or f.workers or 0)) for f in sc.faults],
        interval=sc.control_interval,
    )  # fmt: skip
    assert len(e.arrival) > 20
    assert e.rejected > 0  # load 1.1 with small backlogs exercises rejection too
    # The virtual-clock reference does the engine's arithmetic: identical, bit for bit.
    v_server, v_fct = reference.simulate(**args, model=reference.Virtual)  # type: ignore[arg-type]
    np.testing.assert_array_equal(e.f_server, v_server)
    np.testing.assert_array_equal(e.f_fct, v_fct)
    # Updating every flow's remaining work (no virtual time) agrees up to rounding.
    d_server, d_fct = reference.simulate(**args, model=reference.Direct)  # type: ignore[arg-type]
    np.testing.assert_array_equal(e.f_server, d_server)
    np.testing.assert_allclose(e.f_fct, d_fct, rtol=0, atol=1e-9)


def test_same_seed_same_run() -> None:
    sc = load_scenario("paper-7").replace(duration=10.0)
    a, b = Engine(sc), Engine(sc)
    _run_all(a)
    _run_all(b)
    np.testing.assert_array_equal(a.f_fct, b.f_fct)
    c = Engine(sc.replace(seed=1))
    _run_all(c)
    assert not np.array_equal(np.sort(a.f_fct)[:100], np.sort(c.f_fct)[:100])


def test_flow_hashes_are_the_generators_full_range_draws() -> None:
    """The raw PCG64 words equal Generator.integers over all of uint64 (the original form)."""
    from marllbd.sim.engine import _flow_hashes

    for seed in (0, 1, 12345, 2**31 - 2):
        for n in (0, 1, 9, 4097):
            ss = np.random.SeedSequence(seed, spawn_key=(1,))
            want = np.random.default_rng(ss).integers(
                0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True
            )
            got = _flow_hashes(seed, n)
            assert got.dtype == np.uint64
            np.testing.assert_array_equal(got, want)


def test_fct_never_below_work_plus_rtt() -> None:
    sc = load_scenario("paper-7").replace(duration=10.0)
    e = Engine(sc)
    _run_all(e)
    done = e.f_fct != REJECT_PENALTY
    assert (e.f_fct[done] >= e.work[done] + sc.rtt - 1e-12).all()
    assert np.isfinite(e.f_fct).all()


def test_weights_shift_dispatch_shares() -> None:
    sc = _small("wcmp", lb_nodes=1, trace={"kind": "poisson", "load": 0.5, "mean_work": 0.05})
    shares = []
    for w in ([1.0, 1.0, 1.0], [1.0, 1.0, 8.0]):
        e = Engine(sc)
        e.set_weights(0, np.array(w))
        _run_all(e)
        shares.append(np.bincount(e.f_server[e.f_server >= 0], minlength=3) / len(e.arrival))
    assert shares[1][2] > shares[0][2] + 0.3
    assert abs(shares[0][2] - 1 / 3) < 0.1


def test_the_engine_runs_every_rule_and_only_those() -> None:
    """One code per name in the one list, distinct: the compiled _pick branches on them."""
    assert sorted(RULE_CODES) == sorted(DISPATCH_NAMES)
    assert sorted(RULE_CODES.values()) == list(range(len(DISPATCH_NAMES)))
    with pytest.raises(ValueError, match=r"unknown dispatch rule 'sde': expected one of sed, "):
        Engine(_small("sed"), rule="sde")
    e = Engine(_small("sed"))
    with pytest.raises(ValueError, match="unknown dispatch rule 'fastest'"):
        e.set_rule(0, "fastest")


def test_down_server_receives_no_new_flows() -> None:
    faults = [{"time": 2.0, "server": 1, "kind": "down"}, {"time": 4.0, "server": 1, "kind": "up"}]
    for rule in DISPATCH_NAMES:
        e = Engine(_small("sed", faults=faults), rule=rule)
        _run_all(e)
        during = (e.arrival > 2.0) & (e.arrival < 4.0)
        assert during.sum() > 5
        assert not (e.f_server[during] == 1).any(), rule
        after = e.arrival > 4.0
        assert (e.f_server[after] == 1).any(), rule


def test_capacity_drift_changes_service() -> None:
    sc = _small(
        "sed", lb_nodes=1, faults=[{"time": 0.0, "server": 1, "kind": "capacity", "workers": 1}]
    )
    slow = Engine(sc)
    fast = Engine(_small("sed", lb_nodes=1))
    _run_all(slow)
    _run_all(fast)
    assert slow.f_fct.mean() > fast.f_fct.mean()


def test_observations_are_per_lb_and_consistent() -> None:
    sc = load_scenario("paper-7").replace(duration=5.0)
    e = Engine(sc)
    total_new = np.zeros(7, dtype=np.uint64)
    for _ in range(8):
        step = e.step()
    assert len(step.observations) == 2
    for obs in step.observations:
        assert obs.num_servers == 7 and obs.dur_values.shape == (7, sc.reservoir_k)
        assert (obs.n_dur <= sc.reservoir_k).all() and (
            obs.n_dur == np.minimum(obs.dur_seen, 128)
        ).all()
        assert (obs.active_flows == obs.new_flows - obs.completed_flows).all()
        total_new += obs.new_flows
        for q in ("dur", "fct"):
            vals = getattr(obs, f"{q}_values")
            n = getattr(obs, f"n_{q}")
            for s in range(7):
                assert (vals[s, : n[s]] > 0).all()
    dispatched = (e.f_server >= 0) & (e.arrival <= e.t)
    assert int(total_new.sum()) == int(dispatched.sum())
    # Ground truth: utilization in [0, 1]; at 0.9 load the servers are busy.
    assert ((step.truth.utilization >= 0) & (step.truth.utilization <= 1 + 1e-9)).all()


def test_p90_orders_ecmp_wcmp_sed_on_paper7() -> None:
    """The classic ordering on MARLLB's testbed at load 0.9, over several seeds."""
    for seed in (1, 2, 3):
        sc = load_scenario("paper-7").replace(duration=30.0, seed=seed)
        p90 = {}
        for rule in ("ecmp", "wcmp", "sed"):
            e = Engine(sc, rule=rule)
            _run_all(e)
            p90[rule] = float(np.percentile(e.fct(), 90))
        assert p90["ecmp"] > p90["wcmp"] > p90["sed"], (seed, p90)


def test_bad_inputs() -> None:
    sc = _small()
    with pytest.raises(ValueError, match="unknown dispatch rule 'fastest'"):
        Engine(sc, rule="fastest")
    e = Engine(sc)
    with pytest.raises(ValueError, match=r"expected shape \(3,\)"):
        e.set_weights(0, np.ones(2))
    with pytest.raises(ValueError, match="finite values > 0"):
        e.set_weights(0, np.array([1.0, np.nan, 1.0]))


def test_trace_from_file_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tr = traces.poisson(20.0, 3.0, "exp", 0.05, seed=5)
    e = Engine(_small(), trace=tr)
    _run_all(e)
    assert len(e.fct()) == len(tr.arrival)


def test_advance_through_the_entry_point_matches_the_dispatcher() -> None:
    """advance calls _interval's compiled entry point after its first call; the same run
    through the dispatcher on every call (_call reset), with feats swapped midway and a
    numpy integer first_lb, ends in the same state."""
    sc = load_scenario("paper-7").replace(duration=6.0)
    fast, slow = Engine(sc), Engine(sc)
    n = fast.num_servers
    fa, sa = np.zeros((1, n, 12)), np.zeros((1, n, 12))
    for i in range(int(6.0 / sc.control_interval)):
        if i == 10:
            fa = np.zeros((1, n, 12))  # a new feats array: resolved again
        slow._call = None
        tf = fast.advance(fa, first_lb=np.int64(0))
        ts = slow.advance(sa, first_lb=0)
        np.testing.assert_array_equal(tf, ts)
        np.testing.assert_array_equal(fa, sa)
    assert fast._call is not None and not hasattr(fast._call, "py_func")
    np.testing.assert_array_equal(fast.f_fct, slow.f_fct)
    np.testing.assert_array_equal(fast.rv, slow.rv)
    assert fast.totals == slow.totals


def test_entry_point_falls_back_to_the_dispatcher() -> None:
    """A numba without the attributes used, or arguments never compiled for: the
    dispatcher itself is called, as before."""
    from marllbd.sim.engine import _entry_point, _interval

    class Bare:
        pass

    bare = Bare()
    assert _entry_point(bare, (1.0,)) is bare
    assert _entry_point(_interval, ("not", "compiled", "for", "strings")) is _interval


def test_engines_share_the_resolved_entry_point() -> None:
    """A new engine (every env reset) finds the entry point resolved by an earlier one;
    an argument of another type (a read-only array) is not taken for it."""
    from marllbd.sim import engine as E

    sc = load_scenario("paper-7").replace(duration=2.0)
    first, second = Engine(sc), Engine(sc.replace(seed=sc.seed + 1))
    n = first.num_servers
    first.advance(np.zeros((1, n, 12)))
    first.advance(np.zeros((1, n, 12)))
    second.advance(np.zeros((1, n, 12)))
    second.advance(np.zeros((1, n, 12)))
    assert first._call is second._call and first._call is not E._interval
    key = E._arg_key(np.zeros((1, n, 12)))
    ro = np.zeros((1, n, 12))
    ro.flags.writeable = False
    assert E._arg_key(ro) != key and E._arg_key(np.zeros((1, n, 12)).T) != key
    assert E._arg_key(1) != E._arg_key(1.0) != E._arg_key(True)


def _one_server(workers: int = 1, faults: list | None = None, **kw: object) -> Scenario:
    data: dict[str, object] = {
        "name": "one",
        "duration": 4.0,
        "control_interval": 0.5,
        "rtt": 1e-3,
        "servers": [{"workers": workers, "mp_level": 4, "backlog": 4}],
        "faults": faults or [],
    }
    data.update(kw)
    return from_dict(data)


def _flows(arrival: list[float], work: list[float]) -> traces.Trace:
    return traces.Trace(np.array(arrival), np.array(work), None, "hand")


@pytest.mark.parametrize(
    ("fault_time", "want"),
    [
        (0.5, 2 * 0.3),  # slowed before the flow arrives: the whole work at half speed
        (1.1, 0.1 + 2 * 0.2),  # slowed mid-flow: 0.1 s at full speed, the rest at half
    ],
)
def test_a_flow_alone_at_half_speed_takes_twice_its_work(fault_time: float, want: float) -> None:
    sc = _one_server(faults=[{"time": fault_time, "server": 0, "kind": "speed", "speed": 0.5}])
    e = Engine(sc, _flows([1.0], [0.3]))
    _run_all(e)
    assert e.f_fct[0] == pytest.approx(want + sc.rtt, rel=1e-12)
    # Two workers at half speed serve two flows side by side, each at half speed.
    sc2 = _one_server(2, faults=[{"time": 0.0, "server": 0, "kind": "speed", "speed": 0.5}])
    e2 = Engine(sc2, _flows([1.0, 1.0], [0.3, 0.2]))
    _run_all(e2)
    np.testing.assert_allclose(e2.f_fct, [0.6 + sc2.rtt, 0.4 + sc2.rtt], rtol=1e-12)


def test_utilization_is_the_fraction_of_workers_busy_whatever_the_speed() -> None:
    sc = _one_server(2, faults=[{"time": 0.0, "server": 0, "kind": "speed", "speed": 0.25}])
    e = Engine(sc, _flows([0.0], [1.0]))  # one flow on one of two workers for 4 s
    truth = e.step().truth
    assert truth.utilization[0] == pytest.approx(0.5)
    assert truth.capacities[0] == pytest.approx(0.5)


def test_mm1_ps_sojourn_time_at_reduced_speed() -> None:
    """M/M/1-PS at speed s: mean sojourn 1/(s·mu − lambda), whatever the service order.

    Independent seeded runs give the standard error of the grand mean; the bound is
    four of them (the runs start empty, a bias under 0.1 % at this length).
    """
    speed, mean_work, rho = 0.5, 0.1, 0.6
    mu, lam = 1.0 / mean_work, rho * speed / mean_work
    want = 1.0 / (speed * mu - lam)
    means = []
    for seed in range(20):
        sc = from_dict(
            {
                "name": "mm1",
                "duration": 10_000.0,
                "control_interval": 50.0,
                "rtt": 0.0,
                "seed": seed,
                "servers": [{"workers": 1, "mp_level": 512, "backlog": 0}],
                # Load relative to the start capacity (1 worker at speed 1).
                "trace": {"kind": "poisson", "load": lam * mean_work, "mean_work": mean_work},
                "faults": [{"time": 0.0, "server": 0, "kind": "speed", "speed": speed}],
            }
        )
        e = Engine(sc)
        _run_all(e)
        assert e.rejected == 0
        means.append(e.f_fct.mean())
    se = np.std(means, ddof=1) / np.sqrt(len(means))
    assert se < 0.01 * want  # the bound is tight enough to tell speeds apart
    assert abs(np.mean(means) - want) < 4 * se, (np.mean(means), want, se)


def test_speed_faults_change_the_reported_capacities() -> None:
    faults = [
        {"time": 1.0, "server": 0, "kind": "speed", "speed": 0.5},
        {"time": 2.0, "server": 0, "kind": "capacity", "workers": 3},
        {"time": 2.0, "server": 1, "kind": "speed", "speed": 4.0},
        {"time": 3.0, "server": 0, "kind": "speed", "speed": 1.0},
    ]
    e = Engine(_small(lb_nodes=1, faults=faults))
    seen = {}
    while not e.done:
        step = e.step()
        seen[step.t] = step.truth.capacities
        np.testing.assert_array_equal(step.truth.capacities, e.capacities)
    # (A step to t includes the events at t.)
    np.testing.assert_array_equal(seen[0.75], [1.0, 2.0, 1.0])
    np.testing.assert_array_equal(seen[1.0], [0.5, 2.0, 1.0])
    np.testing.assert_array_equal(seen[2.0], [1.5, 8.0, 1.0])  # 3 workers at half speed
    np.testing.assert_array_equal(seen[3.25], [3.0, 8.0, 1.0])  # speed 1 restores them
    np.testing.assert_array_equal(e.static_capacities, [1.0, 2.0, 1.0])


def test_the_oracle_divides_by_workers_times_speed() -> None:
    # Two idle 1-worker servers tie on workers; at speed 0.25 server 0 has a quarter of
    # the capacity, so the oracle sends the first three flows to server 1.
    sc = _one_server(
        servers=[{"workers": 1, "mp_level": 4, "backlog": 4}] * 2,
        faults=[{"time": 0.0, "server": 0, "kind": "speed", "speed": 0.25}],
    )
    e = Engine(sc, _flows([1.0, 1.0, 1.0, 1.0, 1.0], [10.0] * 5), rule="gsq")
    e.step()
    e.step()
    e.step()
    assert e.f_server.tolist() == [1, 1, 1, 0, 1]


def test_an_unpickled_engine_continues_the_run_and_its_views_follow_it() -> None:
    import pickle

    sc = _small(
        faults=[
            {"time": 0.6, "server": 1, "kind": "down"},
            {"time": 1.6, "server": 1, "kind": "up"},
            {"time": 1.1, "server": 0, "kind": "speed", "speed": 0.5},
        ]
    )
    orig = Engine(sc, rule=["sed", "wcmp"])
    fresh = pickle.loads(pickle.dumps(orig))  # before any interval: nothing compiled yet
    feats = np.zeros((2, 3, 12))
    for _ in range(3):
        orig.advance(feats)
    copy = pickle.loads(pickle.dumps(orig))  # mid-run, with a resolved entry point
    for e in (orig, copy, fresh):
        e.set_weights(1, np.array([1.0, 3.0, 0.5]))
    for _ in range(3):
        fresh.advance(np.zeros((2, 3, 12)))
    for _ in range(12):  # across the faults
        steps = [e.step(copy=False) for e in (orig, copy, fresh)]
        for s in steps[1:]:
            assert s.t == steps[0].t and (s.completed, s.rejected) == (
                steps[0].completed,
                steps[0].rejected,
            )
            np.testing.assert_array_equal(s.truth.utilization, steps[0].truth.utilization)
            # copy=False observations are the engines' views: they show the new interval.
            for a, b in zip(s.observations, steps[0].observations, strict=True):
                np.testing.assert_array_equal(a.fct_values, b.fct_values)
                np.testing.assert_array_equal(a.n_dur, b.n_dur)
                np.testing.assert_array_equal(a.active_flows, b.active_flows)
    assert copy.completed > 0
    for e in (copy, fresh):
        np.testing.assert_array_equal(e.fct(), orig.fct())  # through the f_fct view
        np.testing.assert_array_equal(e.fct_counts(0), orig.fct_counts(0))
        assert e.drained == orig.drained
