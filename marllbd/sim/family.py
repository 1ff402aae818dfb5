"""Scenario families: TOML files that describe many scenarios, and the sampler that draws them.

A family gives, for each scenario field, a fixed value, a choice or a range:

    duration = 45.0                                   # fixed
    lb_nodes = {choice = [1, 2, 4], weights = [2, 1, 1]}
    [servers]
    count = {range = [4, 32], log = true}             # integers for integer fields
    workers = {range = [1, 8]}                        # drawn once per server
    [trace]
    kind = {choice = ["poisson", "wiki"]}
    load = {range = [0.5, 0.95]}
    [faults.drift]                                    # capacity changes mid-run
    events = {range = [2, 4]}

`Family.sample(seed)` draws one concrete Scenario from numpy's Generator on
SeedSequence(seed) and validates it through `scenario.from_dict`; the same seed gives
the same scenario, to the bytes of its `scenario_toml`.  A family may instead draw
from other families (`families = {choice = ["stationary", "drift"]}`); the shipped
families live in marllbd/sim/families/ (configs/families links there).  The keys,
their defaults and their bounds are the table `_FIELDS` below; docs/design.md
describes the format and the shipped families.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marllbd.dataplane.dispatch import RULE_NAMES
from marllbd.errors import MarllbdError
from marllbd.ipc.layout import DEFAULT_K, MAX_K
from marllbd.sim import traces
from marllbd.sim.scenario import (
    DEFAULT_BACKLOG,
    DEFAULT_MP_LEVEL,
    MAX_LOAD,
    Scenario,
    ScenarioError,
    from_dict,
)

FAMILIES_DIR = Path(__file__).parent / "families"
"""Shipped families, package data (configs/families links here)."""
TRACE_KINDS = ("poisson", "steps", "mmpp", "wiki")
"""Arrival processes a family may draw (a trace file is one fixed scenario, not a family)."""
MAX_SERVERS = 64
MAX_WORKERS = 8
MAX_LB_NODES = 8
SIGNIFICANT_DIGITS = 4
"""Drawn real numbers keep this many significant digits, so sampled TOML stays readable."""
TIME_DECIMALS = 3
"""Fault times are drawn to the millisecond."""
STEP_GRID = 1000
"""Load-step times fall on duration × k / STEP_GRID (k = 1 .. STEP_GRID - 1), distinct."""
REDRAWS = 16
"""A drift event redraws a server's new worker count up to this often to make it differ."""


class FamilyError(MarllbdError, ValueError):
    """A family is invalid; the message names the file, the key path and the bad value."""


# -- value specs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """What one field accepts: integers or reals in [lo, hi] (lo excluded if `open_lo`),
    or one of `names`."""

    kind: str  # "int", "float" or "str"
    lo: float = 0.0
    hi: float = math.inf
    open_lo: bool = False
    names: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "str":
            return f"one of {', '.join(self.names)}"
        if self.kind == "int":
            top = "" if self.hi == math.inf else f"{self.hi:g}"
            return f"an integer in {self.lo:g}..{top}"
        if self.hi == math.inf:
            return f"a number {'>' if self.open_lo else '≥'} {self.lo:g}"
        return f"a number in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}]"

    def bounds(self) -> str:
        if self.kind == "int":
            return f"{self.lo:g}..{'' if self.hi == math.inf else f'{self.hi:g}'}"
        hi = "inf)" if self.hi == math.inf else f"{self.hi:g}]"
        return f"{'(' if self.open_lo else '['}{self.lo:g}, {hi}"

    def accepts(self, value: object) -> bool:
        if self.kind == "str":
            return isinstance(value, str) and value in self.names
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        x = float(value)
        above = x > self.lo if self.open_lo else x >= self.lo
        return math.isfinite(x) and above and x <= self.hi


@dataclass(frozen=True)
class Fixed:
    """Always this value; draws nothing from the generator."""

    value: Any

    def draw(self, rng: np.random.Generator) -> Any:
        return self.value


@dataclass(frozen=True)
class Choice:
    """One of `values`, uniformly or by `weights` (relative, not necessarily summing to 1)."""

    values: tuple[Any, ...]
    weights: tuple[float, ...] | None = None

    def draw(self, rng: np.random.Generator) -> Any:
        p = None
        if self.weights is not None:
            total = sum(self.weights)
            p = [w / total for w in self.weights]
        return self.values[int(rng.choice(len(self.values), p=p))]


@dataclass(frozen=True)
class Range:
    """Uniform over [lo, hi] (log-uniform if `log`); integers inclusive of both ends."""

    lo: float
    hi: float
    integer: bool
    log: bool = False

    def draw(self, rng: np.random.Generator) -> Any:
        if self.integer:
            lo, hi = int(self.lo), int(self.hi)
            if not self.log:
                return int(rng.integers(lo, hi + 1))
            x = math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))
            return min(int(x), hi)
        if self.log:
            x = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            x = float(rng.uniform(self.lo, self.hi))
        return min(max(_round_sig(x), self.lo), self.hi)


Spec = Fixed | Choice | Range
PerLevel = Spec | tuple[Spec, ...]
"""A spec drawn once per load level / MMPP state, or one spec per level."""


def _round_sig(x: float) -> float:
    if x == 0.0:
        return 0.0
    return round(x, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(x))))


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# -- the family schema ------------------------------------------------------------------

_FRACTION = Domain("float", 0.0, 1.0)
_FIELDS: dict[str, tuple[Domain, Any]] = {
    "duration": (Domain("float", 0.0, open_lo=True), 60.0),
    "control_interval": (Domain("float", 0.0, open_lo=True), 0.25),
    "dispatch": (Domain("str", names=RULE_NAMES), "sed"),
    "rtt": (Domain("float", 0.0), 5e-4),
    "reservoir_k": (Domain("int", 1, MAX_K), DEFAULT_K),
    "lb_nodes": (Domain("int", 1, MAX_LB_NODES), 1),
    "servers.count": (Domain("int", 1, MAX_SERVERS), None),
    "servers.workers": (Domain("int", 1, MAX_WORKERS), None),
    "servers.mp_level": (Domain("int", 1), DEFAULT_MP_LEVEL),
    "servers.backlog": (Domain("int", 0), DEFAULT_BACKLOG),
    "trace.kind": (Domain("str", names=TRACE_KINDS), "poisson"),
    "trace.load": (Domain("float", 0.0, MAX_LOAD, open_lo=True), 0.9),
    "trace.work": (Domain("str", names=traces.WORK_DISTRIBUTIONS), "exp"),
    "trace.mean_work": (Domain("float", 0.0, open_lo=True), 0.1),
    "trace.steps.levels": (Domain("int", 2, STEP_GRID), 3),
    "trace.steps.loads": (Domain("float", 0.0, MAX_LOAD, open_lo=True), Range(0.3, 1.3, False)),
    "trace.mmpp.states": (Domain("int", 2, 16), 2),
    "trace.mmpp.loads": (Domain("float", 0.0, MAX_LOAD, open_lo=True), Range(0.3, 1.3, False)),
    "trace.mmpp.dwell": (Domain("float", 0.0, open_lo=True), Range(1.0, 10.0, False)),
    "faults.drift.events": (Domain("int", 0, 64), 2),
    "faults.drift.servers": (Domain("int", 0, MAX_SERVERS), 2),
    "faults.drift.workers": (Domain("int", 1, MAX_WORKERS), Range(1, MAX_WORKERS, True)),
    "faults.drift.at": (_FRACTION, Range(0.2, 0.8, False)),
    "faults.degraded.servers": (Domain("int", 0, MAX_SERVERS), 1),
    "faults.degraded.speed": (Domain("float", 0.0, 4.0, open_lo=True), Range(0.3, 0.7, False)),
    "faults.degraded.at": (_FRACTION, Range(0.0, 0.1, False)),
    "faults.outage.events": (Domain("int", 0, MAX_SERVERS), 1),
    "faults.outage.at": (_FRACTION, Range(0.2, 0.6, False)),
    "faults.outage.length": (_FRACTION, Range(0.1, 0.3, False)),
}
"""Every family key: its domain and its default (None: required).  Times of faults
(`at`, `length`) are fractions of the duration."""
_PER_LEVEL = {
    "trace.steps.loads": "levels",
    "trace.mmpp.loads": "states",
    "trace.mmpp.dwell": "states",
}
_TABLES = {
    "": ("description", "families", "duration", "control_interval", "dispatch", "rtt",
         "reservoir_k", "lb_nodes", "servers", "trace", "faults"),
    "servers": ("count", "workers", "mp_level", "backlog"),
    "trace": ("kind", "load", "work", "mean_work", "steps", "mmpp"),
    "trace.steps": ("levels", "loads"),
    "trace.mmpp": ("states", "loads", "dwell"),
    "faults": ("drift", "degraded", "outage"),
    "faults.drift": ("events", "servers", "workers", "at"),
    "faults.degraded": ("servers", "speed", "at"),
    "faults.outage": ("events", "at", "length"),
}  # fmt: skip
"""The tables of a family file and the keys each allows."""


class _Parser:
    """Reads a family file's data into specs, naming the file and key path in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> FamilyError:
        return FamilyError(f"{self.source}: {key}: {problem}")

    def tables(self, data: Mapping[str, object]) -> tuple[dict[str, Any], set[str]]:
        """The file's leaves by dotted key path and the tables it has, after checking
        every table's keys."""
        leaves: dict[str, Any] = {}
        seen: set[str] = set()

        def walk(value: object, path: str) -> None:
            if not isinstance(value, Mapping):
                raise self.fail(path or "<top>", f"must be a table, got {_show(value)}")
            seen.add(path)
            allowed = _TABLES[path]
            for name, item in value.items():
                key = f"{path}.{name}" if path else name
                if name not in allowed:
                    raise self.fail(key, f"unknown key; valid keys here: {', '.join(allowed)}")
                if key in _TABLES:
                    walk(item, key)
                else:
                    leaves[key] = item

        walk(data, "")
        return leaves, seen

    def spec(self, value: object, key: str, domain: Domain) -> Spec:
        if not isinstance(value, Mapping):
            self.check(value, key, domain)
            return Fixed(value)
        for name in value:
            if name not in ("choice", "weights", "range", "log"):
                raise self.fail(
                    f"{key}.{name}", "unknown key; a spec is {choice = [...], weights = [...]} "
                    "or {range = [lo, hi], log = true}"
                )  # fmt: skip
        if ("choice" in value) == ("range" in value):
            raise self.fail(key, "a spec table needs exactly one of choice or range")
        if "choice" in value:
            return self.choice(value, key, domain)
        return self.range(value, key, domain)

    def check(self, value: object, key: str, domain: Domain) -> None:
        if not domain.accepts(value):
            sep = ";" if domain.kind == "str" else ","
            raise self.fail(key, f"must be {domain.describe()}{sep} got {_show(value)}")

    def choice(self, table: Mapping[str, object], key: str, domain: Domain) -> Choice:
        if "log" in table:
            raise self.fail(f"{key}.log", "only applies to a range")
        values = table["choice"]
        if not isinstance(values, list) or not values:
            raise self.fail(f"{key}.choice", f"must be a non-empty array, got {_show(values)}")
        for i, item in enumerate(values):
            self.check(item, f"{key}.choice[{i}]", domain)
        if "weights" not in table:
            return Choice(tuple(values))
        weights = table["weights"]
        if (
            not isinstance(weights, list)
            or len(weights) != len(values)
            or not all(_Parser.real(w) and w >= 0 for w in weights)
            or not sum(weights) > 0
        ):
            raise self.fail(
                f"{key}.weights",
                f"must be {len(values)} numbers ≥ 0 (one per choice, not all 0), "
                f"got {_show(weights)}",
            )
        return Choice(tuple(values), tuple(float(w) for w in weights))

    def range(self, table: Mapping[str, object], key: str, domain: Domain) -> Range:
        if "weights" in table:
            raise self.fail(f"{key}.weights", "only applies to a choice")
        if domain.kind == "str":
            raise self.fail(f"{key}.range", f"a name has no range; give a choice of {domain.names}")
        pair = table["range"]
        kind = "integers" if domain.kind == "int" else "numbers"
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(_Parser.real(x) for x in pair)
            or (domain.kind == "int" and not all(isinstance(x, int) for x in pair))
            or not pair[0] <= pair[1]
        ):
            raise self.fail(f"{key}.range", f"must be [lo, hi], {kind} lo ≤ hi; got {_show(pair)}")
        if not (domain.accepts(pair[0]) and domain.accepts(pair[1])):
            raise self.fail(f"{key}.range", f"must be within {domain.bounds()}, got {_show(pair)}")
        log = table.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(f"{key}.log", f"must be true or false, got {_show(log)}")
        if log and not pair[0] > 0:
            raise self.fail(f"{key}.log", f"a log-uniform range needs lo > 0, got {_show(pair)}")
        return Range(pair[0], pair[1], domain.kind == "int", log)

    @staticmethod
    def real(x: object) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    def per_level(self, value: object, key: str, domain: Domain) -> PerLevel:
        if not isinstance(value, list):
            return self.spec(value, key, domain)
        block = key.rsplit(".", 1)[0]
        most = int(_FIELDS[f"{block}.{_PER_LEVEL[key]}"][0].hi)
        if not 2 <= len(value) <= most:
            raise self.fail(key, f"must list 2..{most} levels (one spec each), got {_show(value)}")
        return tuple(self.spec(item, f"{key}[{i}]", domain) for i, item in enumerate(value))

    def members(self, value: object) -> Choice:
        """`families`: one family name or path, or {choice = [...], weights = [...]}."""
        if isinstance(value, str) and value:
            return Choice((value,))
        named = value.get("choice") if isinstance(value, Mapping) else None
        if not isinstance(named, list) or not all(isinstance(v, str) and v for v in named):
            raise self.fail(
                "families", f"must be a family name or {{choice = [names]}}, got {_show(value)}"
            )
        assert isinstance(value, Mapping)
        spec = self.spec(value, "families", Domain("str", names=tuple(named)))
        assert isinstance(spec, Choice)
        return spec

    def plan(self, leaves: Mapping[str, Any], seen: set[str]) -> dict[str, Any]:
        """Every field's spec (defaults filled in); a fault block only if its table is given."""
        out: dict[str, Any] = {}
        for key, (domain, default) in _FIELDS.items():
            if key.startswith("faults.") and key.rsplit(".", 1)[0] not in seen:
                continue
            if key in leaves:
                value = leaves[key]
                out[key] = (
                    self.per_level(value, key, domain) if key in _PER_LEVEL
                    else self.spec(value, key, domain)
                )  # fmt: skip
            elif default is None:
                raise self.fail(key, "is required")
            else:
                out[key] = default if isinstance(default, Range) else Fixed(default)
        for key, count in _PER_LEVEL.items():
            count_key = key.rsplit(".", 1)[0] + "." + count
            if isinstance(out[key], tuple) and count_key in leaves:
                raise self.fail(
                    count_key, f"is set by the length of {key}; give one of the two, not both"
                )
        mmpp_loads, mmpp_dwell = out["trace.mmpp.loads"], out["trace.mmpp.dwell"]
        if (
            isinstance(mmpp_loads, tuple)
            and isinstance(mmpp_dwell, tuple)
            and len(mmpp_loads) != len(mmpp_dwell)
        ):
            raise self.fail(
                "trace.mmpp.dwell",
                f"must have one entry per state of trace.mmpp.loads ({len(mmpp_loads)}), "
                f"got {len(mmpp_dwell)}",
            )
        return out


# -- families ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A parsed family: `sample(seed)` draws one scenario named `{name}-{seed}`.

    Either `plan` (each field's spec) or `members` (a choice of other families) is set.
    """

    name: str
    source: str
    description: str
    plan: Mapping[str, Any] | None = None
    members: Choice | None = None

    def sample(self, seed: int) -> Scenario:
        """The scenario of sample `seed`, validated (FamilyError names the seed if invalid)."""
        data = self.sample_data(seed)
        try:
            return from_dict(data, source=f"{self.source} (seed {seed})")
        except ScenarioError as exc:
            raise FamilyError(str(exc)) from None

    def samples(self, n: int, seed: int = 0) -> list[Scenario]:
        """Samples `seed` .. `seed + n - 1`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FamilyError(f"samples: must be a positive integer, got {_show(n)}")
        return [self.sample(s) for s in range(seed, seed + n)]

    def sample_data(self, seed: int) -> dict[str, Any]:
        """Sample `seed` as plain data in `Scenario.to_dict`'s shape, not yet validated."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise FamilyError(f"seed: must be an integer ≥ 0, got {_show(seed)}")
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        data = self._draw(rng)
        data["name"] = f"{self.name}-{seed}"
        data["seed"] = seed
        return data

    def _draw(self, rng: np.random.Generator) -> dict[str, Any]:
        if self.members is not None:
            member: Family = self.members.draw(rng)
            return member._draw(rng)
        assert self.plan is not None
        return _draw_plan(self.plan, rng)


def families() -> tuple[str, ...]:
    """Names of the shipped families."""
    return tuple(sorted(path.stem for path in FAMILIES_DIR.glob("*.toml")))


def load_family(name_or_path: str | Path) -> Family:
    """A shipped family by name (e.g. 'drift') or a family TOML file."""
    return _load(name_or_path, Path.cwd(), ())


def _load(name_or_path: str | Path, base: Path, stack: tuple[Path, ...]) -> Family:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text:
        path = base / Path(name_or_path)
        source = text
        if not path.is_file():
            raise FamilyError(f"{text}: no such family file")
    else:
        path = FAMILIES_DIR / f"{text}.toml"
        source = f"{text}.toml"
        if not path.is_file():
            raise FamilyError(
                f"unknown family {text!r}; families: {', '.join(families())} "
                "(or give a path to a .toml file)"
            )
    path = path.resolve()
    if path in stack:
        raise FamilyError(f"{source}: families: a family cannot draw from itself (cycle)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise FamilyError(f"{source}: invalid TOML: {exc}") from None
    return _parse(data, path.stem, source, path.parent, (*stack, path))


def parse_family(
    data: Mapping[str, object],
    *,
    name: str = "custom",
    source: str = "<dict>",
    base: Path | None = None,
) -> Family:
    """A family from plain data (a family file's TOML shape); `source` names it in errors and
    member families given as paths resolve against `base` (default: the working directory)."""
    return _parse(data, name, source, Path.cwd() if base is None else base, ())


def _parse(
    data: Mapping[str, object], name: str, source: str, base: Path, stack: tuple[Path, ...]
) -> Family:
    parser = _Parser(source)
    leaves, seen = parser.tables(data)
    description = leaves.get("description", "")
    if not isinstance(description, str):
        raise parser.fail("description", f"must be a string, got {_show(description)}")
    if "families" not in leaves:
        return Family(name, source, description, plan=parser.plan(leaves, seen))
    others = sorted(set(leaves) - {"description", "families"})
    if others:
        raise parser.fail(others[0], "a family that draws from families takes no other keys")
    choice = parser.members(leaves["families"])
    members = []
    for i, member in enumerate(choice.values):
        try:
            members.append(_load(member, base, stack))
        except FamilyError as exc:
            raise parser.fail(f"families.choice[{i}]", str(exc)) from None
    return Family(name, source, description, members=Choice(tuple(members), choice.weights))


# -- drawing a scenario -----------------------------------------------------------------


def _draw_plan(plan: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One scenario's plain data; fields are drawn in a fixed order, so a seed fixes it."""

    def draw(key: str) -> Any:
        return plan[key].draw(rng)

    duration = float(draw("duration"))
    data: dict[str, Any] = {
        "duration": duration,
        "control_interval": float(draw("control_interval")),
        "dispatch": draw("dispatch"),
        "rtt": float(draw("rtt")),
        "reservoir_k": draw("reservoir_k"),
        "lb_nodes": draw("lb_nodes"),
    }
    n = draw("servers.count")
    workers = [draw("servers.workers") for _ in range(n)]
    data["servers"] = {
        "workers": workers,
        "mp_level": draw("servers.mp_level"),
        "backlog": draw("servers.backlog"),
    }
    data["trace"] = _draw_trace(plan, rng, duration)
    faults: list[dict[str, Any]] = []
    if "faults.drift.events" in plan:
        faults += _drift(plan, rng, duration, workers)
    if "faults.degraded.servers" in plan:
        faults += _degraded(plan, rng, duration, n)
    if "faults.outage.events" in plan:
        faults += _outage(plan, rng, duration, n)
    data["faults"] = sorted(faults, key=lambda fault: fault["time"])
    return data


def _levels(plan: Mapping[str, Any], rng: np.random.Generator, key: str, count: int) -> list[Any]:
    spec = plan[key]
    if isinstance(spec, tuple):
        return [float(item.draw(rng)) for item in spec]
    return [float(spec.draw(rng)) for _ in range(count)]


def _draw_trace(
    plan: Mapping[str, Any], rng: np.random.Generator, duration: float
) -> dict[str, Any]:
    kind = plan["trace.kind"].draw(rng)
    if kind == "wiki":
        return {"kind": "wiki", "load": float(plan["trace.load"].draw(rng))}
    body: dict[str, Any] = {"kind": kind}
    if kind == "poisson":
        body["load"] = float(plan["trace.load"].draw(rng))
    elif kind == "steps":
        loads = plan["trace.steps.loads"]
        levels = (
            len(loads) if isinstance(loads, tuple) else int(plan["trace.steps.levels"].draw(rng))
        )
        ticks = np.sort(rng.choice(STEP_GRID - 1, size=levels - 1, replace=False) + 1)
        body["times"] = [0.0] + [round(duration * int(k) / STEP_GRID, 9) for k in ticks]
        body["loads"] = _levels(plan, rng, "trace.steps.loads", levels)
    else:
        loads, dwell = plan["trace.mmpp.loads"], plan["trace.mmpp.dwell"]
        if isinstance(loads, tuple) or isinstance(dwell, tuple):
            states = len(loads) if isinstance(loads, tuple) else len(dwell)
        else:
            states = int(plan["trace.mmpp.states"].draw(rng))
        body["loads"] = _levels(plan, rng, "trace.mmpp.loads", states)
        body["dwell"] = _levels(plan, rng, "trace.mmpp.dwell", states)
    body["work"] = plan["trace.work"].draw(rng)
    body["mean_work"] = float(plan["trace.mean_work"].draw(rng))
    return body


def _at(spec: Spec, rng: np.random.Generator, duration: float) -> float:
    return min(round(float(spec.draw(rng)) * duration, TIME_DECIMALS), duration)


def _pick(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """k distinct servers of n (fewer if n is smaller), in increasing order."""
    return sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False))


def _drift(
    plan: Mapping[str, Any], rng: np.random.Generator, duration: float, workers: Sequence[int]
) -> list[dict[str, Any]]:
    """Capacity changes: at each event a few servers get a new worker count (a different one
    whenever the `workers` spec allows it within REDRAWS draws)."""
    events = plan["faults.drift.events"].draw(rng)
    times = sorted(_at(plan["faults.drift.at"], rng, duration) for _ in range(events))
    current = list(workers)
    out = []
    for time in times:
        for server in _pick(rng, len(current), plan["faults.drift.servers"].draw(rng)):
            new = plan["faults.drift.workers"].draw(rng)
            for _ in range(REDRAWS):
                if new != current[server]:
                    break
                new = plan["faults.drift.workers"].draw(rng)
            current[server] = new
            out.append({"time": time, "server": server, "kind": "capacity", "workers": new})
    return out


def _degraded(
    plan: Mapping[str, Any], rng: np.random.Generator, duration: float, n: int
) -> list[dict[str, Any]]:
    """Servers silently slower than their configured workers say (`speed` faults)."""
    out = []
    for server in _pick(rng, n, plan["faults.degraded.servers"].draw(rng)):
        time = _at(plan["faults.degraded.at"], rng, duration)
        speed = float(plan["faults.degraded.speed"].draw(rng))
        out.append({"time": time, "server": server, "kind": "speed", "speed": speed})
    return out


def _outage(
    plan: Mapping[str, Any], rng: np.random.Generator, duration: float, n: int
) -> list[dict[str, Any]]:
    """Distinct servers go down and come back up (if before the end); one always stays up."""
    out = []
    for server in _pick(rng, n, min(plan["faults.outage.events"].draw(rng), n - 1)):
        start = _at(plan["faults.outage.at"], rng, duration)
        end = round(start + float(plan["faults.outage.length"].draw(rng)) * duration, 3)
        out.append({"time": start, "server": server, "kind": "down"})
        if end < duration:
            out.append({"time": end, "server": server, "kind": "up"})
    return out


# -- writing a scenario as TOML ---------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def scenario_toml(scenario: Scenario, *, comment: str = "") -> str:
    """The scenario as TOML text that `load_scenario` reads back into an equal Scenario.

    Servers are written in the compact form (one `workers` array; `mp_level` and
    `backlog` as one number when every server has the same); `comment` becomes
    leading `#` lines.
    """
    data = scenario.to_dict()
    servers = data["servers"]
    compact: dict[str, Any] = {}
    for key in ("workers", "mp_level", "backlog"):
        column = [server[key] for server in servers]
        uniform = key != "workers" and len(set(column)) == 1
        compact[key] = column[0] if uniform else column
    data["servers"] = compact
    return toml_text(data, comment=comment)


def toml_text(data: Mapping[str, Any], *, comment: str = "") -> str:
    """TOML for plain data of the scenario's shape: scalars and arrays of scalars first,
    then each table as [table] and each non-empty array of tables as [[array]]."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    _emit_table(data, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit_table(data: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    tables, arrays = [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif (
            isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value)
        ):
            arrays.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables:
        name = f"{prefix}{_toml_key(key)}"
        lines += ["", f"[{name}]"]
        _emit_table(value, f"{name}.", lines)
    for key, entries in arrays:
        name = f"{prefix}{_toml_key(key)}"
        for entry in entries:
            lines += ["", f"[[{name}]]"]
            _emit_table(entry, f"{name}.", lines)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"scenario: cannot write the non-finite number {value} to TOML")
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"scenario: cannot write a {type(value).__name__} to TOML")
