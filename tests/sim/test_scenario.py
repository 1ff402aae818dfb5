"""Scenarios: presets load, every invalid value is refused by key path, data round-trips."""

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marllbd.sim import scenario as sc
from marllbd.sim import traces
from marllbd.sim.scenario import Fault, ScenarioError, Server

DATA = Path(__file__).parent / "data"
PRESETS = ("drift-7", "paper-24", "paper-7", "seed-16")

BASE: dict[str, Any] = {
    "duration": 30.0,
    "servers": {"workers": [1, 1, 2, 2]},
    "faults": [{"time": 5.0, "server": 2, "kind": "down"}],
}


def with_change(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value
    return data


def test_presets_are_discovered() -> None:
    assert sc.presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_loads_and_builds_its_trace(name: str) -> None:
    scenario = sc.load_scenario(name)
    assert scenario.name == name
    assert scenario.source.endswith(f"{name}.toml")
    trace = sc.build_trace(scenario)
    assert trace.arrival[-1] < scenario.duration
    assert traces.utilisation(trace, scenario.capacity) == pytest.approx(0.9, rel=0.05)
    again = sc.build_trace(sc.load_scenario(name))
    np.testing.assert_array_equal(trace.arrival, again.arrival)


def test_preset_contents() -> None:
    paper7 = sc.load_scenario("paper-7")
    assert [s.workers for s in paper7.servers] == [1, 1, 1, 1, 2, 2, 2]
    assert paper7.lb_nodes == 2 and paper7.groups == (tuple(range(7)),)
    assert paper7.trace == sc.PoissonTrace(load=0.9, work="exp", mean_work=0.1)
    paper24 = sc.load_scenario("paper-24")
    assert [s.workers for s in paper24.servers] == [2] * 12 + [4] * 12
    assert paper24.lb_nodes == 6
    seed16 = sc.load_scenario("seed-16")
    assert len(seed16.servers) == 16 and seed16.lb_nodes == 1
    assert [len(g) for g in seed16.groups] == [4, 4, 4, 4]
    drift = sc.load_scenario("drift-7")
    assert drift.servers == paper7.servers
    assert {(f.server, f.workers) for f in drift.faults} == {(4, 1), (5, 1), (0, 2), (1, 2)}
    assert all(f.time == 20.0 and f.kind == "capacity" for f in drift.faults)


def test_load_scenario_by_path_and_relative_trace_file() -> None:
    scenario = sc.load_scenario(DATA / "file-trace.toml")
    assert isinstance(scenario.trace, sc.FileTrace)
    assert scenario.trace.path == (DATA / "small.csv").resolve()
    trace = sc.build_trace(scenario)
    assert traces.utilisation(trace, scenario.capacity) == pytest.approx(0.5)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario preset 'paper-8'.*paper-7"):
        sc.load_scenario("paper-8")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("duration = = 3\n")
    with pytest.raises(ScenarioError, match=f"^{path}: invalid TOML"):
        sc.load_scenario(path)


def test_errors_from_files_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[servers]\nworkers = [1, 2, 0]\n")
    with pytest.raises(ScenarioError) as info:
        sc.load_scenario(path)
    assert str(info.value) == f"{path}: servers.workers[2]: must be a positive integer, got 0"


BAD = [
    (("servers", "workers", 3), 0, "servers.workers[3]: must be a positive integer, got 0"),
    (("servers", "workers", 1), True, "servers.workers[1]: must be a positive integer, got true"),
    (("servers", "mp_level"), [1, 2], "servers.mp_level: must have 4 entries"),
    (("servers", "backlog"), -1, "servers.backlog: must be an integer ≥ 0, got -1"),
    (("servers", "count"), 5, "servers.count: must equal the length of servers.workers (4)"),
    (("servers", "speed"), 2, "servers.speed: unknown key"),
    (("servers",), [], "servers: must describe 1..1024 servers, got 0"),
    (("servers",), [{"count": 2}], "servers[0].workers: is required"),
    (("servers",), [{"workers": 1, "count": 0}], "servers[0].count: must be a positive integer"),
    (("duration",), -1.0, "duration: must be a finite number > 0, got -1.0"),
    (("duration",), float("inf"), "duration: must be a finite number > 0, got inf"),
    (("control_interval",), 40.0, "control_interval: must be a finite number in (0, 30]"),
    (("rtt",), 0.25, "rtt: must be a finite number in [0, 0.25)"),
    (("dispatch",), "random", "dispatch: must be one of sed, wcmp, ecmp, lsq, lsq2, sed2"),
    (("lb_nodes",), 0, "lb_nodes: must be a positive integer, got 0"),
    (("reservoir_k",), 5000, "reservoir_k: must be an integer in 1..4096, got 5000"),
    (("seed",), -3, "seed: must be an integer ≥ 0, got -3"),
    (("seed",), 1.5, "seed: must be an integer ≥ 0, got 1.5"),
    (("name",), "", "name: must be a non-empty string"),
    (("colour",), "red", "colour: unknown key; valid keys here: name, duration"),
    (("groups",), [[0, 1], [1, 2, 3]], "groups[1][0]: server 1 is already in groups[0]"),
    (("groups",), [[0, 1], [2]], "groups: servers 3 are in no group"),
    (("groups",), [[0, 1, 2, 3], []], "groups[1]: must not be empty"),
    (("groups",), [[0, 1, 2, 4]], "groups[0][3]: must be an integer in 0..3, got 4"),
    (("trace",), "poisson", "trace: must be a table, got 'poisson'"),
    (
        ("trace", "kind"),
        "zipf",
        ("trace.kind: must be one of poisson, wiki, file, steps, mmpp; got 'zipf'"),
    ),
    (("trace", "load"), 0.0, "trace.load: must be a finite number in (0, 2], got 0.0"),
    (("trace", "work"), "uniform", "trace.work: must be one of exp, lognormal"),
    (("trace", "hours"), [1, 2], "trace.hours: unknown key; valid keys here: kind, load"),
    (("trace", "path"), "x.csv", "trace.path: unknown key"),
    (("faults", 0, "server"), 4, "faults[0].server: must be an integer in 0..3, got 4"),
    (("faults", 0, "time"), 31.0, "faults[0].time: must be a finite number in [0, 30], got 31.0"),
    (("faults", 0, "kind"), "reboot", "faults[0].kind: must be one of down, up, capacity"),
    (("faults", 0, "workers"), 2, "faults[0].workers: only applies to kind 'capacity'"),
    (("faults", 0, "kind"), "capacity", "faults[0].workers: is required for kind 'capacity'"),
    (("faults", 0, "when"), 1.0, "faults[0].when: unknown key"),
    (("faults", 0, "kind"), "speed", "faults[0].speed: is required for kind 'speed'"),
    (("faults", 0, "speed"), 0.5, "faults[0].speed: only applies to kind 'speed', not 'down'"),
]

SPEED_FAULT = {"time": 5.0, "server": 2, "kind": "speed", "speed": 0.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"speed": 0}, "faults[0].speed: must be a finite number in (0, 4], got 0"),
        ({"speed": 4.5}, "faults[0].speed: must be a finite number in (0, 4], got 4.5"),
        ({"speed": True}, "faults[0].speed: must be a finite number in (0, 4], got true"),
        ({"speed": "half"}, "faults[0].speed: must be a finite number in (0, 4], got 'half'"),
        ({"workers": 2}, "faults[0].workers: only applies to kind 'capacity', not 'speed'"),
    ],
)
def test_speed_fault_validation(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        sc.from_dict({**BASE, "faults": [{**SPEED_FAULT, **change}]}, source="case.toml")
    assert str(info.value) == f"case.toml: {message}"


def test_speed_fault_keeps_its_value() -> None:
    faults = sc.from_dict({**BASE, "faults": [SPEED_FAULT]}).faults
    assert faults == (Fault(5.0, 2, "speed", speed=0.5),)
    assert faults[0].to_dict() == SPEED_FAULT
    assert sc.from_dict({**BASE, "faults": [{**SPEED_FAULT, "speed": 4}]}).faults[0].speed == 4.0


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[m.split(":")[0] for *_, m in BAD])
def test_validation_errors_name_the_key_path(
    path: tuple[Any, ...], value: Any, message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        sc.from_dict(with_change(path, value), source="case.toml")
    assert str(info.value).startswith(f"case.toml: {message}")


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        (
            {"kind": "wiki", "hours": [20, 19]},
            "trace.hours[1]: must be a finite number in (20, 44]",
        ),
        ({"kind": "wiki", "hours": 24}, "trace.hours[0]: must be a finite number in [0, 24)"),
        ({"kind": "wiki", "hours": [1, 2, 3]}, "trace.hours: must be an hour or [start, end]"),
        ({"kind": "wiki", "trough": 900}, "trace.trough: must be a finite number in (0, 800]"),
        ({"kind": "wiki", "dynamic_alpha": 1}, "trace.dynamic_alpha: must be a finite number > 1"),
        ({"kind": "wiki", "static_fraction": 2}, "trace.static_fraction: must be a finite number"),
        ({"kind": "file"}, "trace.path: is required for kind 'file'"),
        ({"kind": "file", "path": "missing.csv"}, "trace.path: no such file"),
        ({"kind": "file", "path": 3}, "trace.path: must be a file path string"),
        ({"kind": "steps", "loads": [0.5]}, "trace.times: is required for kind 'steps'"),
        ({"kind": "steps", "times": [], "loads": []}, "trace.times: must not be empty"),
        ({"kind": "steps", "times": 0, "loads": [0.5]}, "trace.times: must be an array, got 0"),
        (
            {"kind": "steps", "times": [1.0], "loads": [0.5]},
            "trace.times[0]: must be 0 (the first step starts the run), got 1.0",
        ),
        (
            {"kind": "steps", "times": [0, 10, 10], "loads": [0.5, 0.6, 0.7]},
            "trace.times[2]: must be a finite number in (10, 30), got 10",
        ),
        (
            {"kind": "steps", "times": [0, 30], "loads": [0.5, 0.6]},
            "trace.times[1]: must be a finite number in (0, 30), got 30",
        ),
        ({"kind": "steps", "times": [0, 10]}, "trace.loads: is required for kind 'steps'"),
        (
            {"kind": "steps", "times": [0, 10], "loads": [0.5, 0]},
            "trace.loads[1]: must be a finite number in (0, 2], got 0",
        ),
        (
            {"kind": "steps", "times": [0, 10], "loads": [0.5]},
            "trace.loads: must have 2 entries (one per trace.times entry), got 1",
        ),
        (
            {"kind": "steps", "times": [0], "loads": [0.5], "load": 0.5},
            "trace.load: unknown key; valid keys here: kind, times, loads, work, mean_work",
        ),
        ({"kind": "mmpp", "dwell": [1, 1]}, "trace.loads: is required for kind 'mmpp'"),
        (
            {"kind": "mmpp", "loads": [0.5], "dwell": [1]},
            "trace.loads: must have at least 2 states, got 1",
        ),
        (
            {"kind": "mmpp", "loads": [0.5, 3], "dwell": [1, 1]},
            "trace.loads[1]: must be a finite number in (0, 2], got 3",
        ),
        ({"kind": "mmpp", "loads": [0.5, 1.3]}, "trace.dwell: is required for kind 'mmpp'"),
        (
            {"kind": "mmpp", "loads": [0.5, 1.3], "dwell": [8, -1]},
            "trace.dwell[1]: must be a finite number > 0, got -1",
        ),
        (
            {"kind": "mmpp", "loads": [0.5, 1.3], "dwell": [8, 2, 1]},
            "trace.dwell: must have 2 entries (one per trace.loads entry), got 3",
        ),
        (
            {"kind": "mmpp", "loads": [0.5, 1.3], "dwell": [8, 2], "work": "zipf"},
            "trace.work: must be one of exp, lognormal, pareto, bimodal; got 'zipf'",
        ),
    ],
)
def test_trace_table_validation(trace: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        sc.from_dict({**BASE, "trace": trace}, source="t", base=DATA)
    assert str(info.value).startswith(f"t: {message}")


def test_compact_and_listed_servers_agree() -> None:
    compact = sc.from_dict(
        {"servers": {"count": 3, "workers": 2, "mp_level": [1, 2, 3], "backlog": 8}}
    )
    listed = sc.from_dict(
        {
            "servers": [
                {"workers": 2, "mp_level": 1, "backlog": 8},
                {"workers": 2, "mp_level": 2, "backlog": 8},
                {"workers": 2, "mp_level": 3, "backlog": 8},
            ]
        }
    )
    assert compact == listed
    assert [s.slots for s in compact.servers] == [2, 4, 6]
    assert compact.capacity == 6


def test_defaults() -> None:
    scenario = sc.from_dict({"servers": {"workers": [1, 2]}})
    assert scenario.control_interval == 0.25
    assert scenario.reservoir_k == 128
    assert scenario.dispatch == "sed"
    assert scenario.groups == ((0, 1),)
    assert scenario.trace == sc.PoissonTrace()
    assert scenario.faults == ()
    assert scenario.servers[0] == Server(1, sc.DEFAULT_MP_LEVEL, sc.DEFAULT_BACKLOG)


def test_missing_servers_is_an_error() -> None:
    with pytest.raises(ScenarioError, match="<dict>: servers: is required"):
        sc.from_dict({"duration": 10.0})


def test_faults_are_sorted_by_time_stably() -> None:
    data = {
        "servers": {"workers": [1, 1, 1]},
        "faults": [
            {"time": 9.0, "server": 0, "kind": "up"},
            {"time": 3.0, "server": 1, "kind": "capacity", "workers": 3},
            {"time": 9.0, "server": 2, "kind": "down"},
            {"time": 0, "server": 0, "kind": "down"},
        ],
    }
    faults = sc.from_dict(data).faults
    assert faults == (
        Fault(0.0, 0, "down"),
        Fault(3.0, 1, "capacity", 3),
        Fault(9.0, 0, "up"),
        Fault(9.0, 2, "down"),
    )


def test_round_trip_through_plain_data() -> None:
    data = {
        "name": "custom",
        "duration": 20.0,
        "seed": 4,
        "control_interval": 0.5,
        "dispatch": "lsq2",
        "rtt": 0.001,
        "reservoir_k": 64,
        "lb_nodes": 2,
        "servers": [{"workers": 1, "mp_level": 2, "backlog": 16}] * 4,
        "groups": [[0, 1], [2, 3]],
        "trace": {
            "kind": "wiki",
            "load": 0.7,
            "hours": [10.0, 14.0],
            "peak": 900.0,
            "trough": 300.0,
            "peak_hour": 12.0,
            "static_fraction": 0.5,
            "static_work": 0.001,
            "dynamic_work": 0.02,
            "dynamic_alpha": 2.0,
        },
        "faults": [{"time": 2.0, "server": 3, "kind": "capacity", "workers": 2}],
    }
    scenario = sc.from_dict(data)
    assert scenario.to_dict() == data
    assert sc.from_dict(scenario.to_dict()) == scenario


@pytest.mark.parametrize(
    "trace",
    [
        {"kind": "steps", "times": [0.0, 5.0, 12.5], "loads": [0.6, 0.95, 0.7]},
        {"kind": "mmpp", "loads": [0.5, 1.3, 0.9], "dwell": [8.0, 2.0, 1.0]},
    ],
)
def test_new_trace_kinds_and_speed_faults_round_trip(trace: dict[str, Any]) -> None:
    data = {
        **BASE,
        "trace": {**trace, "work": "pareto", "mean_work": 0.02},
        "faults": [SPEED_FAULT, {"time": 6.0, "server": 2, "kind": "speed", "speed": 1.0}],
    }
    scenario = sc.from_dict(data)
    assert scenario.to_dict()["trace"] == data["trace"]
    assert scenario.to_dict()["faults"] == data["faults"]
    assert sc.from_dict(scenario.to_dict()) == scenario
    if trace["kind"] == "steps":  # a step time must fall inside the run
        with pytest.raises(
            ScenarioError, match=r"trace.times\[2\]: must be a finite number in \(5, 10\)"
        ):
            scenario.replace(duration=10.0)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip(name: str) -> None:
    scenario = sc.load_scenario(name)
    assert sc.from_dict(scenario.to_dict()) == scenario


def test_replace_validates_and_accepts_dataclasses() -> None:
    base = sc.load_scenario("paper-7")
    faster = base.replace(control_interval=0.5, trace=sc.PoissonTrace(load=0.5))
    assert faster.control_interval == 0.5 and faster.trace.load == 0.5
    assert faster.servers == base.servers
    smaller = base.replace(servers=[Server(2), Server(2)])
    assert smaller.groups == ((0, 1),)
    with pytest.raises(ScenarioError, match=r"paper-7.toml: duration: must be a finite number > 0"):
        base.replace(duration=0)
    drift = sc.load_scenario("drift-7")
    with pytest.raises(ScenarioError, match=r"faults\[0\].server: must be an integer in 0..1"):
        drift.replace(servers=[Server(1), Server(1)])


def test_wiki_scenario_builds_a_trace_at_the_target_load() -> None:
    scenario = sc.from_dict(
        {"duration": 20.0, "servers": {"workers": [2, 2]}, "trace": {"kind": "wiki", "load": 0.6}}
    )
    trace = sc.build_trace(scenario)
    assert trace.arrival[-1] < 20.0 and trace.cls is not None
    # Heavy-tailed work makes the realised load noisy; the expected load is exact.
    assert traces.utilisation(trace, scenario.capacity) == pytest.approx(0.6, rel=0.25)


def test_trace_stream_differs_from_plain_seed() -> None:
    scenario = sc.load_scenario("paper-7")
    trace = sc.build_trace(scenario)
    rate = 0.9 * scenario.capacity / 0.1
    plain = traces.poisson(rate, scenario.duration, seed=scenario.seed)
    assert not np.array_equal(trace.arrival[:10], plain.arrival[:10])


def test_steps_scenario_builds_each_steps_rate_at_the_start_capacity() -> None:
    times, loads = [0.0, 10.0, 25.0], [0.6, 1.2, 0.3]
    scenario = sc.from_dict(
        {
            **BASE,
            "seed": 2,
            "trace": {"kind": "steps", "times": times, "loads": loads, "mean_work": 0.01},
        }
    )
    trace = sc.build_trace(scenario)
    counts = np.histogram(trace.arrival, bins=[*times, scenario.duration])[0]
    spans = np.diff([*times, scenario.duration])
    for count, load, span in zip(counts, loads, spans, strict=True):
        mean = load * scenario.capacity / 0.01 * span
        assert abs(count - mean) < 4 * np.sqrt(mean), (count, mean)
    assert not np.array_equal(trace.arrival, sc.build_trace(scenario.replace(seed=3)).arrival)


def test_mmpp_scenario_is_seeded_from_the_trace_stream() -> None:
    data = {**BASE, "trace": {"kind": "mmpp", "loads": [0.5, 1.3], "dwell": [8.0, 2.0]}}
    a = sc.build_trace(sc.from_dict({**data, "seed": 4}))
    b = sc.build_trace(sc.from_dict({**data, "seed": 4}))
    c = sc.build_trace(sc.from_dict({**data, "seed": 5}))
    np.testing.assert_array_equal(a.arrival, b.arrival)
    np.testing.assert_array_equal(a.work, b.work)
    assert not np.array_equal(a.arrival[:50], c.arrival[:50])
    seed = np.random.SeedSequence(4, spawn_key=(sc.TRACE_STREAM,))
    rates = [load * 6 / 0.1 for load in (0.5, 1.3)]  # BASE's 6 workers, mean work 0.1 s
    want = traces.mmpp(rates, (8.0, 2.0), 30.0, "exp", 0.1, seed)
    np.testing.assert_array_equal(a.arrival, want.arrival)
