"""eval_family: registered, and its scenario list is what it claims (distinct, varied loads)."""

from __future__ import annotations

from marllbd.benchmarks import registry
from marllbd.benchmarks.eval_family import POLICIES, SERVERS, eval_family, scenarios
from marllbd.policies import load


def test_registered() -> None:
    assert registry()["eval_family"] is eval_family


def test_scenarios_are_distinct_sixteen_server_runs_of_varied_load() -> None:
    scs = scenarios(20)
    assert len({sc.name for sc in scs}) == 20
    assert all(len(sc.servers) == SERVERS and sc.duration == 60.0 for sc in scs)
    loads = [sc.trace.load for sc in scs]
    assert min(loads) == 0.5 and max(loads) == 0.95 and len(set(loads)) == 10
    assert scenarios(20) == scs  # a fixed list


def test_policies_load() -> None:
    for spec in POLICIES:
        load(spec)
