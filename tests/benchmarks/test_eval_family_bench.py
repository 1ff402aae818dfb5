"""eval_family: registered, and its scenario list is what it claims (a 16-server family's
distinct samples of varied load, reproducible)."""

from __future__ import annotations

from marllbd.benchmarks import registry
from marllbd.benchmarks.eval_family import POLICIES, SERVERS, eval_family, scenarios
from marllbd.policies import load


def test_registered() -> None:
    assert registry()["eval_family"] is eval_family


def test_scenarios_are_distinct_sixteen_server_samples_of_varied_load() -> None:
    scs = scenarios(20)
    assert len({sc.name for sc in scs}) == 20
    assert all(len(sc.servers) == SERVERS and sc.duration == 60.0 for sc in scs)
    loads = [sc.trace.load for sc in scs]
    assert min(loads) >= 0.5 and max(loads) <= 0.9 and max(loads) - min(loads) > 0.2
    assert any(sc.faults for sc in scs) and not all(sc.faults for sc in scs)
    assert scenarios(20) == scs  # the same samples every run


def test_policies_load() -> None:
    for spec in POLICIES:
        load(spec)
