"""Scenarios: the servers, load balancers, traffic and faults of one simulated run.

A scenario is written in TOML (presets live in marllbd/sim/scenarios/, which
configs/scenarios/ links to) and parsed into frozen dataclasses. `load_scenario`,
`from_dict` and `Scenario.replace` validate everything and name the offending key
path; the constructors trust their arguments.
"""

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from marllbd.dataplane.dispatch import RULE_NAMES
from marllbd.errors import MarllbdError
from marllbd.ipc.layout import DEFAULT_K, MAX_K, MAX_SERVERS
from marllbd.sim import traces

FAULT_KINDS = ("down", "up", "capacity", "speed")
MAX_SPEED = 4.0
"""Highest speed a `speed` fault may set: four times the configured per-worker speed."""
PRESETS_DIR = Path(__file__).parent / "scenarios"
"""Preset scenarios, package data (configs/scenarios links here)."""
MAX_LOAD = 2.0
"""Highest target load accepted: beyond twice the capacity a run only measures overflow."""
DEFAULT_MP_LEVEL = 4
DEFAULT_BACKLOG = 256
TRACE_STREAM = 0
"""Spawn key of the trace's random stream under SeedSequence(seed); other users take others."""


class ScenarioError(MarllbdError, ValueError):
    """A scenario is invalid; the message names the file, the key path and what would be right."""


@dataclass(frozen=True)
class Server:
    """One backend: `workers` run at full speed; up to workers × mp_level flows are in
    service at once (sharing the workers) and up to `backlog` more wait for a slot."""

    workers: int
    mp_level: int = DEFAULT_MP_LEVEL
    backlog: int = DEFAULT_BACKLOG

    @property
    def slots(self) -> int:
        """Most flows in service at once."""
        return self.workers * self.mp_level

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "mp_level": self.mp_level, "backlog": self.backlog}


@dataclass(frozen=True)
class PoissonTrace:
    """Poisson arrivals whose rate gives `load` (offered work over total workers)."""

    kind: ClassVar[str] = "poisson"
    load: float = 0.9
    work: str = "exp"
    mean_work: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "load": self.load,
            "work": self.work,
            "mean_work": self.mean_work,
        }


@dataclass(frozen=True)
class WikiTrace:
    """Wiki-like diurnal traffic: the `hours` of the day are compressed onto the run's
    duration and the rates scaled so the expected offered load is `load`."""

    kind: ClassVar[str] = "wiki"
    load: float = 0.9
    hours: tuple[float, float] = (18.0, 22.0)
    peak: float = 800.0
    trough: float = 500.0
    peak_hour: float = 20.0
    mix: traces.WikiMix = field(default_factory=traces.WikiMix)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "load": self.load,
            "hours": list(self.hours),
            "peak": self.peak,
            "trough": self.trough,
            "peak_hour": self.peak_hour,
            "static_fraction": self.mix.static_fraction,
            "static_work": self.mix.static_work,
            "dynamic_work": self.mix.dynamic_work,
            "dynamic_alpha": self.mix.dynamic_alpha,
        }


@dataclass(frozen=True)
class FileTrace:
    """A trace file (see traces.load); with `load`, its time axis is rescaled to that load."""

    kind: ClassVar[str] = "file"
    path: Path
    load: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "path": str(self.path)}
        if self.load is not None:
            out["load"] = self.load
        return out


@dataclass(frozen=True)
class StepsTrace:
    """Piecewise-constant Poisson load: offered load `loads[i]` from `times[i]` seconds
    until the next time (the last until the end of the run); times start at 0."""

    kind: ClassVar[str] = "steps"
    times: tuple[float, ...] = (0.0,)
    loads: tuple[float, ...] = (0.9,)
    work: str = "exp"
    mean_work: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "times": list(self.times),
            "loads": list(self.loads),
            "work": self.work,
            "mean_work": self.mean_work,
        }


@dataclass(frozen=True)
class MmppTrace:
    """A Markov-modulated Poisson process: in state i the offered load is `loads[i]`;
    the state lasts an exponential time of mean `dwell[i]` seconds, then jumps to a
    uniformly chosen other state. The run starts in state 0."""

    kind: ClassVar[str] = "mmpp"
    loads: tuple[float, ...] = (0.5, 1.3)
    dwell: tuple[float, ...] = (8.0, 2.0)
    work: str = "exp"
    mean_work: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "loads": list(self.loads),
            "dwell": list(self.dwell),
            "work": self.work,
            "mean_work": self.mean_work,
        }


TraceSpec = PoissonTrace | WikiTrace | FileTrace | StepsTrace | MmppTrace


@dataclass(frozen=True)
class Fault:
    """At `time`, server `server` goes down, comes back up, changes to `workers` workers
    (kind "capacity"), or runs at `speed` × its configured per-worker speed (kind
    "speed"; 1 restores it). Workers and speed are independent: the server's real
    capacity is workers × speed."""

    time: float
    server: int
    kind: str
    workers: int | None = None
    speed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "server": self.server, "kind": self.kind}
        if self.workers is not None:
            out["workers"] = self.workers
        if self.speed is not None:
            out["speed"] = self.speed
        return out


@dataclass(frozen=True)
class Scenario:
    """Everything one simulated run needs, times in seconds.

    groups partition the server indices (one agent per group in the grouped layout);
    faults are sorted by time; rtt is the LB → server round-trip time.
    """

    name: str
    servers: tuple[Server, ...]
    groups: tuple[tuple[int, ...], ...]
    lb_nodes: int = 1
    trace: TraceSpec = PoissonTrace()
    duration: float = 60.0
    control_interval: float = 0.25
    dispatch: str = "sed"
    rtt: float = 5e-4
    reservoir_k: int = DEFAULT_K
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    source: str = field(default="<dict>", compare=False)

    @property
    def capacity(self) -> int:
        """Total workers at the start of the run."""
        return sum(server.workers for server in self.servers)

    @property
    def capacities(self) -> np.ndarray:
        """Each server's configured capacity (its workers), float64: the static weights."""
        return np.array([server.workers for server in self.servers], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The scenario as plain data that `from_dict` accepts (default groups left out)."""
        out: dict[str, Any] = {
            "name": self.name,
            "duration": self.duration,
            "seed": self.seed,
            "control_interval": self.control_interval,
            "dispatch": self.dispatch,
            "rtt": self.rtt,
            "reservoir_k": self.reservoir_k,
            "lb_nodes": self.lb_nodes,
            "servers": [server.to_dict() for server in self.servers],
            "trace": self.trace.to_dict(),
            "faults": [fault.to_dict() for fault in self.faults],
        }
        if self.groups != (tuple(range(len(self.servers))),):
            out["groups"] = [list(group) for group in self.groups]
        return out

    def replace(self, **changes: Any) -> "Scenario":
        """A validated copy with top-level keys changed; values may be dataclasses or plain data."""
        data = self.to_dict()
        data.update({key: _plain(value) for key, value in changes.items()})
        return from_dict(data, source=self.source)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class _Checker:
    """Turns plain data into validated values, naming the key path in every error."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {key}: {problem}")

    def table(self, value: object, key: str, allowed: Sequence[str]) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.fail(key or "<top>", f"must be a table, got {_show(value)}")
        for name in value:
            if name not in allowed:
                path = f"{key}.{name}" if key else str(name)
                raise self.fail(path, f"unknown key; valid keys here: {', '.join(allowed)}")
        return value

    def integer(self, value: object, key: str, lo: int, hi: int | None = None) -> int:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and lo <= value
            and (hi is None or value <= hi)
        ):
            return value
        if hi is not None:
            wanted = f"an integer in {lo}..{hi}"
        elif lo == 1:
            wanted = "a positive integer"
        else:
            wanted = f"an integer ≥ {lo}"
        raise self.fail(key, f"must be {wanted}, got {_show(value)}")

    def number(
        self,
        value: object,
        key: str,
        lo: float,
        hi: float = math.inf,
        *,
        open_lo: bool = False,
        open_hi: bool = False,
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            x = float(value)
            above = x > lo if open_lo else x >= lo
            below = x < hi if open_hi else x <= hi
            if math.isfinite(x) and above and below:
                return x
        if hi == math.inf:
            wanted = f"> {lo:g}" if open_lo else f"≥ {lo:g}"
        else:
            wanted = f"in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise self.fail(key, f"must be a finite number {wanted}, got {_show(value)}")

    def choice(self, value: object, key: str, choices: Sequence[str]) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise self.fail(key, f"must be one of {', '.join(choices)}; got {_show(value)}")

    def array(self, value: object, key: str) -> list[object]:
        if not isinstance(value, list | tuple):
            raise self.fail(key, f"must be an array, got {_show(value)}")
        return list(value)

    def scenario(self, data: Mapping[str, object], default_name: str) -> Scenario:
        top = self.table(data, "", _TOP_KEYS)
        name = top.get("name", default_name)
        if not (isinstance(name, str) and name):
            raise self.fail("name", f"must be a non-empty string, got {_show(name)}")
        duration = self.number(top.get("duration", 60.0), "duration", 0.0, open_lo=True)
        control = self.number(
            top.get("control_interval", 0.25), "control_interval", 0.0, duration, open_lo=True
        )
        # A round trip as long as a control period would make every decision stale.
        rtt = self.number(top.get("rtt", 5e-4), "rtt", 0.0, control, open_hi=True)
        if "servers" not in top:
            raise self.fail("servers", "is required: list the servers or give a compact table")
        servers = self.servers(top["servers"])
        n = len(servers)
        return Scenario(
            name=name,
            servers=servers,
            groups=self.groups(top.get("groups", [list(range(n))]), n),
            lb_nodes=self.integer(top.get("lb_nodes", 1), "lb_nodes", 1),
            trace=self.trace(top.get("trace", {}), duration),
            duration=duration,
            control_interval=control,
            dispatch=self.choice(top.get("dispatch", "sed"), "dispatch", RULE_NAMES),
            rtt=rtt,
            reservoir_k=self.integer(top.get("reservoir_k", DEFAULT_K), "reservoir_k", 1, MAX_K),
            faults=self.faults(top.get("faults", []), n, duration),
            seed=self.integer(top.get("seed", 0), "seed", 0),
            source=self.source,
        )

    def servers(self, value: object) -> tuple[Server, ...]:
        if isinstance(value, Mapping):
            servers = self.compact_servers(value)
        elif not isinstance(value, list | tuple):
            raise self.fail(
                "servers",
                f"must be a table (compact form) or an array of tables, got {_show(value)}",
            )
        else:
            servers = []
            for i, entry in enumerate(self.array(value, "servers")):
                key = f"servers[{i}]"
                table = self.table(entry, key, ("count", "workers", "mp_level", "backlog"))
                if "workers" not in table:
                    raise self.fail(f"{key}.workers", "is required")
                server = Server(
                    self.integer(table["workers"], f"{key}.workers", 1),
                    self.integer(table.get("mp_level", DEFAULT_MP_LEVEL), f"{key}.mp_level", 1),
                    self.integer(table.get("backlog", DEFAULT_BACKLOG), f"{key}.backlog", 0),
                )
                servers += [server] * self.integer(table.get("count", 1), f"{key}.count", 1)
        if not 1 <= len(servers) <= MAX_SERVERS:
            raise self.fail(
                "servers", f"must describe 1..{MAX_SERVERS} servers, got {len(servers)}"
            )
        return tuple(servers)

    def compact_servers(self, value: Mapping[str, object]) -> list[Server]:
        table = self.table(value, "servers", ("count", "workers", "mp_level", "backlog"))
        if "workers" not in table:
            raise self.fail("servers.workers", "is required (one integer, or one per server)")
        workers = table["workers"]
        if isinstance(workers, list | tuple):
            n = len(workers)
            if "count" in table and table["count"] != n:
                raise self.fail(
                    "servers.count",
                    f"must equal the length of servers.workers ({n}), got {_show(table['count'])}",
                )
        elif "count" in table:
            n = self.integer(table["count"], "servers.count", 1, MAX_SERVERS)
        else:
            raise self.fail("servers.count", "is required when servers.workers is one integer")
        columns = {
            name: self.per_server(table.get(name, default), f"servers.{name}", n, lo)
            for name, default, lo in (
                ("workers", None, 1),
                ("mp_level", DEFAULT_MP_LEVEL, 1),
                ("backlog", DEFAULT_BACKLOG, 0),
            )
        }
        return [
            Server(columns["workers"][i], columns["mp_level"][i], columns["backlog"][i])
            for i in range(n)
        ]

    def per_server(self, value: object, key: str, n: int, lo: int) -> list[int]:
        if not isinstance(value, list | tuple):
            return [self.integer(value, key, lo)] * n
        if len(value) != n:
            raise self.fail(key, f"must have {n} entries (one per server), got {len(value)}")
        return [self.integer(item, f"{key}[{i}]", lo) for i, item in enumerate(value)]

    def groups(self, value: object, n: int) -> tuple[tuple[int, ...], ...]:
        owner: dict[int, int] = {}
        groups = []
        for g, entry in enumerate(self.array(value, "groups")):
            members = self.array(entry, f"groups[{g}]")
            if not members:
                raise self.fail(f"groups[{g}]", "must not be empty")
            group = []
            for j, item in enumerate(members):
                index = self.integer(item, f"groups[{g}][{j}]", 0, n - 1)
                if index in owner:
                    raise self.fail(
                        f"groups[{g}][{j}]",
                        f"server {index} is already in groups[{owner[index]}]; "
                        "groups must partition the servers",
                    )
                owner[index] = g
                group.append(index)
            groups.append(tuple(group))
        missing = sorted(set(range(n)) - set(owner))
        if missing:
            raise self.fail(
                "groups",
                f"servers {', '.join(map(str, missing))} are in no group; "
                "groups must partition the servers",
            )
        return tuple(groups)

    def trace(self, value: object, duration: float) -> TraceSpec:
        if not isinstance(value, Mapping):
            raise self.fail("trace", f"must be a table, got {_show(value)}")
        kind = self.choice(value.get("kind", "poisson"), "trace.kind", tuple(_TRACE_KEYS))
        table = self.table(value, "trace", _TRACE_KEYS[kind])
        load = None
        if "load" in table:
            load = self.number(table["load"], "trace.load", 0.0, MAX_LOAD, open_lo=True)
        if kind in ("poisson", "steps", "mmpp"):
            work = self.choice(table.get("work", "exp"), "trace.work", traces.WORK_DISTRIBUTIONS)
            mean_work = self.number(
                table.get("mean_work", 0.1), "trace.mean_work", 0.0, open_lo=True
            )
            if kind == "steps":
                times, loads = self.steps(table, duration)
                return StepsTrace(times=times, loads=loads, work=work, mean_work=mean_work)
            if kind == "mmpp":
                loads, dwell = self.mmpp(table)
                return MmppTrace(loads=loads, dwell=dwell, work=work, mean_work=mean_work)
            return PoissonTrace(load=0.9 if load is None else load, work=work, mean_work=mean_work)
        if kind == "wiki":
            return self.wiki(table, 0.9 if load is None else load)
        if "path" not in table:
            raise self.fail("trace.path", "is required for kind 'file'")
        raw_path = table["path"]
        if not isinstance(raw_path, str | Path):
            raise self.fail("trace.path", f"must be a file path string, got {_show(raw_path)}")
        path = (self.base / raw_path).resolve()
        if not path.is_file():
            raise self.fail("trace.path", f"no such file: {path}")
        return FileTrace(path=path, load=load)

    def numbers(
        self, table: Mapping[str, object], name: str, lo: float, hi: float = math.inf
    ) -> tuple[float, ...]:
        """trace.<name>: a required non-empty array of finite numbers in (lo, hi]."""
        key = f"trace.{name}"
        if name not in table:
            raise self.fail(key, f"is required for kind {table.get('kind')!r}")
        items = self.array(table[name], key)
        if not items:
            raise self.fail(key, "must not be empty")
        return tuple(
            self.number(item, f"{key}[{i}]", lo, hi, open_lo=True) for i, item in enumerate(items)
        )

    def steps(
        self, table: Mapping[str, object], duration: float
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if "times" not in table:
            raise self.fail("trace.times", "is required for kind 'steps'")
        raw = self.array(table["times"], "trace.times")
        if not raw:
            raise self.fail("trace.times", "must not be empty")
        times: list[float] = []
        for i, item in enumerate(raw):
            key = f"trace.times[{i}]"
            if i == 0:
                if self.number(item, key, 0.0) != 0.0:
                    raise self.fail(key, f"must be 0 (the first step starts the run), got {item!r}")
                times.append(0.0)
            else:
                times.append(
                    self.number(item, key, times[-1], duration, open_lo=True, open_hi=True)
                )
        loads = self.numbers(table, "loads", 0.0, MAX_LOAD)
        if len(loads) != len(times):
            raise self.fail(
                "trace.loads",
                f"must have {len(times)} entries (one per trace.times entry), got {len(loads)}",
            )
        return tuple(times), loads

    def mmpp(self, table: Mapping[str, object]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        loads = self.numbers(table, "loads", 0.0, MAX_LOAD)
        if len(loads) < 2:
            raise self.fail("trace.loads", f"must have at least 2 states, got {len(loads)}")
        dwell = self.numbers(table, "dwell", 0.0)
        if len(dwell) != len(loads):
            raise self.fail(
                "trace.dwell",
                f"must have {len(loads)} entries (one per trace.loads entry), got {len(dwell)}",
            )
        return loads, dwell

    def wiki(self, table: Mapping[str, object], load: float) -> WikiTrace:
        default = WikiTrace()
        hours = table.get("hours", list(default.hours))
        if isinstance(hours, int | float) and not isinstance(hours, bool):
            hours = [hours, hours + 1]
        pair = self.array(hours, "trace.hours")
        if len(pair) != 2:
            raise self.fail("trace.hours", f"must be an hour or [start, end], got {_show(hours)}")
        start = self.number(pair[0], "trace.hours[0]", 0.0, 24.0, open_hi=True)
        end = self.number(pair[1], "trace.hours[1]", start, start + 24.0, open_lo=True)
        peak = self.number(table.get("peak", default.peak), "trace.peak", 0.0, open_lo=True)
        defaults = default.mix
        return WikiTrace(
            load=load,
            hours=(start, end),
            peak=peak,
            trough=self.number(
                table.get("trough", min(default.trough, peak)),
                "trace.trough",
                0.0,
                peak,
                open_lo=True,
            ),
            peak_hour=self.number(
                table.get("peak_hour", default.peak_hour),
                "trace.peak_hour",
                0.0,
                24.0,
                open_hi=True,
            ),
            mix=traces.WikiMix(
                static_fraction=self.number(
                    table.get("static_fraction", defaults.static_fraction),
                    "trace.static_fraction",
                    0.0,
                    1.0,
                ),
                static_work=self.number(
                    table.get("static_work", defaults.static_work),
                    "trace.static_work",
                    0.0,
                    open_lo=True,
                ),
                dynamic_work=self.number(
                    table.get("dynamic_work", defaults.dynamic_work),
                    "trace.dynamic_work",
                    0.0,
                    open_lo=True,
                ),
                dynamic_alpha=self.number(
                    table.get("dynamic_alpha", defaults.dynamic_alpha),
                    "trace.dynamic_alpha",
                    1.0,
                    open_lo=True,
                ),
            ),
        )

    def faults(self, value: object, n: int, duration: float) -> tuple[Fault, ...]:
        faults = []
        for i, entry in enumerate(self.array(value, "faults")):
            key = f"faults[{i}]"
            table = self.table(entry, key, ("time", "server", "kind", "workers", "speed"))
            for required in ("time", "server", "kind"):
                if required not in table:
                    raise self.fail(f"{key}.{required}", "is required")
            kind = self.choice(table["kind"], f"{key}.kind", FAULT_KINDS)
            workers, speed = table.get("workers"), table.get("speed")
            for name, owner in (("workers", "capacity"), ("speed", "speed")):
                if kind == owner and table.get(name) is None:
                    raise self.fail(f"{key}.{name}", f"is required for kind {owner!r}")
                if kind != owner and table.get(name) is not None:
                    raise self.fail(
                        f"{key}.{name}", f"only applies to kind {owner!r}, not {kind!r}"
                    )
            if workers is not None:
                workers = self.integer(workers, f"{key}.workers", 1)
            if speed is not None:
                speed = self.number(speed, f"{key}.speed", 0.0, MAX_SPEED, open_lo=True)
            faults.append(
                Fault(
                    time=self.number(table["time"], f"{key}.time", 0.0, duration),
                    server=self.integer(table["server"], f"{key}.server", 0, n - 1),
                    kind=kind,
                    workers=workers,
                    speed=speed,
                )
            )
        return tuple(sorted(faults, key=lambda fault: fault.time))


_TOP_KEYS = (
    "name",
    "duration",
    "seed",
    "control_interval",
    "dispatch",
    "rtt",
    "reservoir_k",
    "lb_nodes",
    "servers",
    "groups",
    "trace",
    "faults",
)
_TRACE_KEYS = {
    "poisson": ("kind", "load", "work", "mean_work"),
    "wiki": (
        "kind",
        "load",
        "hours",
        "peak",
        "trough",
        "peak_hour",
        "static_fraction",
        "static_work",
        "dynamic_work",
        "dynamic_alpha",
    ),
    "file": ("kind", "path", "load"),
    "steps": ("kind", "times", "loads", "work", "mean_work"),
    "mmpp": ("kind", "loads", "dwell", "work", "mean_work"),
}


def from_dict(
    data: Mapping[str, object],
    *,
    source: str = "<dict>",
    base: Path | None = None,
    name: str = "custom",
) -> Scenario:
    """Validate plain data (TOML's shape) into a Scenario.

    `source` names the origin in errors, relative trace paths resolve against `base`
    (default: the working directory), and `name` is used when the data has none.
    """
    return _Checker(source, Path.cwd() if base is None else base).scenario(data, name)


def presets() -> tuple[str, ...]:
    """Names of the preset scenarios."""
    return tuple(sorted(path.stem for path in PRESETS_DIR.glob("*.toml")))


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Read a scenario from a TOML file, or from the preset of that name (e.g. 'paper-7')."""
    text = str(path_or_name)
    if isinstance(path_or_name, Path) or text.endswith(".toml") or "/" in text:
        path = Path(path_or_name)
    else:
        path = PRESETS_DIR / f"{text}.toml"
        if not path.is_file():
            raise ScenarioError(
                f"unknown scenario preset {text!r}; presets: {', '.join(presets())} "
                "(or give a path to a .toml file)"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from None
    return from_dict(data, source=str(path), base=path.parent, name=path.stem)


def build_trace(scenario: Scenario) -> traces.Trace:
    """The flows of the run: the scenario's trace at its target load, cut at its duration.

    The load targets the capacity at the start of the run. Randomness comes from
    SeedSequence(seed, spawn_key=(TRACE_STREAM,)), independent of other streams.
    """
    seed = np.random.SeedSequence(scenario.seed, spawn_key=(TRACE_STREAM,))
    spec = scenario.trace
    capacity = scenario.capacity
    if isinstance(spec, PoissonTrace):
        rate = spec.load * capacity / spec.mean_work
        return traces.poisson(rate, scenario.duration, spec.work, spec.mean_work, seed)
    if isinstance(spec, StepsTrace | MmppTrace):
        rates = tuple(load * capacity / spec.mean_work for load in spec.loads)
        if isinstance(spec, StepsTrace):
            return traces.steps(
                spec.times, rates, scenario.duration, spec.work, spec.mean_work, seed
            )
        return traces.mmpp(rates, spec.dwell, scenario.duration, spec.work, spec.mean_work, seed)
    if isinstance(spec, WikiTrace):
        start, end = spec.hours
        offered = traces.mean_diurnal_rate(spec.hours, spec.peak, spec.trough, spec.peak_hour)
        return traces.wiki(
            spec.hours,
            seed=seed,
            peak=spec.peak,
            trough=spec.trough,
            peak_hour=spec.peak_hour,
            mix=spec.mix,
            time_scale=(end - start) * 3600.0 / scenario.duration,
            rate_scale=spec.load * capacity / (offered * spec.mix.mean_work),
        )
    trace = traces.load(spec.path)
    if spec.load is not None:
        trace = traces.load_scaled(trace, spec.load, capacity)
    return trace.until(scenario.duration)


def synthetic(
    num_servers: int,
    *,
    lb_nodes: int = 1,
    group_size: int | None = None,
    trace: str = "poisson",
    duration: float = 60.0,
    seed: int = 0,
) -> Scenario:
    """A heterogeneous scenario of any size, for callers that give only a server count.

    Workers cycle 1, 1, 2, 2, 4 (so capacities differ by up to 4x); with
    `group_size`, consecutive servers form groups of that size.
    """
    if num_servers < 1:
        raise ScenarioError(f"num_servers: must be a positive integer, got {num_servers}")
    pattern = (1, 1, 2, 2, 4)
    data: dict[str, object] = {
        "name": f"synthetic-{num_servers}",
        "duration": duration,
        "seed": seed,
        "lb_nodes": lb_nodes,
        "servers": {"workers": [pattern[i % len(pattern)] for i in range(num_servers)]},
        "trace": {"kind": trace, "load": 0.9} if trace == "poisson" else {"kind": trace},
    }
    if group_size is not None:
        if group_size < 1 or num_servers % group_size:
            raise ScenarioError(
                f"servers_per_agent: must divide num_servers ({num_servers}), got {group_size}"
            )
        data["groups"] = [list(range(g, g + group_size)) for g in range(0, num_servers, group_size)]
    return from_dict(data, source="<synthetic>")
