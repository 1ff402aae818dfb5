"""The daemon's configuration: TOML validated into frozen dataclasses.

Unknown keys and bad values are errors that name the key path and what
would be right, e.g. `backend.sim.speed: must be a number > 0, got -1`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from marllbd.backends.config import BACKENDS, BackendConfig, SimBackendConfig, VppPapiConfig

# The [backend] tables are defined with the backends; this module reads them from TOML.
from marllbd.errors import MarllbdError
from marllbd.ipc.layout import MAX_SERVERS

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "marllbd.toml"
SYSTEM_CONFIG = Path("/etc/marllbd/marllbd.toml")
"""Where `make install` puts the config: the default outside a checkout."""
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(MarllbdError, ValueError):
    """An invalid configuration; the message names the file and the key path."""


@dataclass(frozen=True)
class PolicyConfig:
    name: str = "sed"
    """Policy spec: a registered name, or name:ARG (e.g. sac-gru:/var/lib/marllbd/policy)."""
    fallback: str = "sed"
    """Heuristic used while the policy fails or overruns its budget."""
    budget: float = 0.05
    """Seconds a decision may take before the fallback answers instead."""
    retry_after: float = 5.0
    """Seconds before a failed policy is tried again."""
    capacities: tuple[float, ...] = ()
    """Static capacity per server (default: from the sim scenario, else all 1)."""


@dataclass(frozen=True)
class DaemonConfig:
    poll_period: float = 0.005
    """Seconds between two looks at the ring: 0 (busy poll, one core at 100 %) or 0.001..1."""
    stale_after: float = 2.0
    """A producer whose heartbeat is older than this is stalled; its frames are stale."""
    attach_backoff_max: float = 2.0
    """Longest wait between two attach attempts while the region is absent."""
    warm_lead: float = 0.001
    """Seconds before a frame is due (by the region's publish period) from which the poller
    does not sleep: each loop iteration runs the decision path on the last frame, results
    unused, and looks at the ring, until the frame lands or as long again after it was
    due.  On a shared or virtual machine a decision after an idle spell otherwise runs
    several times slower.  0 turns this off."""


@dataclass(frozen=True)
class MetricsConfig:
    address: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = DaemonConfig()
    backend: BackendConfig = field(default_factory=BackendConfig)
    policy: PolicyConfig = PolicyConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    source: str = field(default="<defaults>", compare=False)


class _Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")

    def table(self, data: object, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(key or "<top>", f"must be a table, got {data!r}")
        for k in data:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key; expected one of {', '.join(allowed)}")
        return data

    def number(
        self, v: object, key: str, lo: float, hi: float = math.inf, *, open_lo: bool = True
    ) -> float:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if ok and ((v > lo) if open_lo else (v >= lo)) and v <= hi:  # type: ignore[operator]
            return float(v)  # type: ignore[arg-type]
        bound = f"> {lo:g}" if open_lo else f">= {lo:g}"
        upper = f" and <= {hi:g}" if hi != math.inf else ""
        raise self.fail(key, f"must be a number {bound}{upper}, got {v!r}")

    def poll_period(self, v: object) -> float:
        """0 (busy poll) or 1 ms .. 1 s: the event loop's timers have 1 ms resolution, and a
        shorter sleep returns at once, which would be a busy poll nobody asked for."""
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if ok and (v == 0 or 0.001 <= v <= 1):  # type: ignore[operator]
            return float(v)  # type: ignore[arg-type]
        raise self.fail(
            "daemon.poll_period",
            f"must be 0 for a busy poll or a number >= 0.001 and <= 1 "
            f"(event-loop timers have 1 ms resolution), got {v!r}",
        )

    def integer(self, v: object, key: str, lo: int, hi: int) -> int:
        if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
            return v
        raise self.fail(key, f"must be an integer in {lo}..{hi}, got {v!r}")

    def string(self, v: object, key: str, choices: tuple[str, ...] = ()) -> str:
        if isinstance(v, str) and v and (not choices or v in choices):
            return v
        want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
        raise self.fail(key, f"must be {want}, got {v!r}")

    def boolean(self, v: object, key: str) -> bool:
        if isinstance(v, bool):
            return v
        raise self.fail(key, f"must be true or false, got {v!r}")

    def config(self, data: Mapping[str, Any]) -> Config:
        top = self.table(data, "", ("daemon", "backend", "policy", "metrics", "logging"))
        d = self.table(
            top.get("daemon", {}),
            "daemon",
            ("poll_period", "stale_after", "attach_backoff_max", "warm_lead"),
        )
        dd = DaemonConfig()
        daemon = DaemonConfig(
            poll_period=self.poll_period(d.get("poll_period", dd.poll_period)),
            stale_after=self.number(
                d.get("stale_after", dd.stale_after), "daemon.stale_after", 0, 3600
            ),
            attach_backoff_max=self.number(
                d.get("attach_backoff_max", dd.attach_backoff_max),
                "daemon.attach_backoff_max",
                0,
                60,
            ),
            warm_lead=self.number(
                d.get("warm_lead", dd.warm_lead), "daemon.warm_lead", 0, 0.1, open_lo=False
            ),
        )
        return Config(
            daemon=daemon,
            backend=self.backend(top.get("backend", {})),
            policy=self.policy(top.get("policy", {})),
            metrics=self.metrics(top.get("metrics", {})),
            logging=self.logging(top.get("logging", {})),
            source=self.source,
        )

    def backend(self, data: object) -> BackendConfig:
        b = self.table(data, "backend", ("kind", "region", "lb", "sim", "papi", "expected_uids"))
        s = self.table(b.get("sim", {}), "backend.sim", ("scenario", "speed", "spawn"))
        sd = SimBackendConfig()
        sim = SimBackendConfig(
            scenario=self.string(s.get("scenario", sd.scenario), "backend.sim.scenario"),
            speed=self.number(s.get("speed", sd.speed), "backend.sim.speed", 0, 10_000),
            spawn=self.boolean(s.get("spawn", sd.spawn), "backend.sim.spawn"),
        )
        p = self.table(
            b.get("papi", {}),
            "backend.papi",
            ("enabled", "vip", "protocol", "port", "servers", "min_interval"),
        )
        servers = p.get("servers", [])
        if not (isinstance(servers, list) and all(isinstance(x, str) and x for x in servers)):
            raise self.fail("backend.papi.servers", f"must be a list of addresses, got {servers!r}")
        papi = VppPapiConfig(
            enabled=self.boolean(p.get("enabled", False), "backend.papi.enabled"),
            vip=str(p.get("vip", "")),
            protocol=self.integer(p.get("protocol", 6), "backend.papi.protocol", 0, 255),
            port=self.integer(p.get("port", 80), "backend.papi.port", 0, 65535),
            servers=tuple(servers),
            min_interval=self.number(
                p.get("min_interval", 1.0), "backend.papi.min_interval", 0, 3600, open_lo=False
            ),
        )
        if papi.enabled and not (papi.vip and papi.servers):
            raise self.fail("backend.papi", "enabled needs vip and servers")
        uids = b.get("expected_uids", [])
        if not (isinstance(uids, list) and all(isinstance(u, int) and u >= 0 for u in uids)):
            raise self.fail("backend.expected_uids", f"must be a list of uids, got {uids!r}")
        region = self.string(b.get("region", "marllbd"), "backend.region")
        if not all(c.isalnum() or c in "_.-" for c in region):
            raise self.fail(
                "backend.region", f"must use letters, digits, '_', '.', '-', got {region!r}"
            )
        return BackendConfig(
            kind=self.string(b.get("kind", "sim"), "backend.kind", BACKENDS),
            region=region,
            lb=self.integer(b.get("lb", 0), "backend.lb", 0, 1023),
            sim=sim,
            papi=papi,
            expected_uids=tuple(uids),
        )

    def policy(self, data: object) -> PolicyConfig:
        p = self.table(data, "policy", ("name", "fallback", "budget", "retry_after", "capacities"))
        pd = PolicyConfig()
        caps = p.get("capacities", [])
        if not (
            isinstance(caps, list)
            and len(caps) <= MAX_SERVERS
            and all(
                isinstance(c, int | float)
                and not isinstance(c, bool)
                and math.isfinite(c)
                and c > 0
                for c in caps
            )
        ):
            raise self.fail(
                "policy.capacities", f"must be a list of positive numbers, got {caps!r}"
            )
        return PolicyConfig(
            name=self.string(p.get("name", pd.name), "policy.name"),
            fallback=self.string(p.get("fallback", pd.fallback), "policy.fallback"),
            budget=self.number(p.get("budget", pd.budget), "policy.budget", 0, 10),
            retry_after=self.number(
                p.get("retry_after", pd.retry_after), "policy.retry_after", 0, 3600
            ),
            capacities=tuple(float(c) for c in caps),
        )

    def metrics(self, data: object) -> MetricsConfig:
        m = self.table(data, "metrics", ("address", "port"))
        return MetricsConfig(
            address=self.string(m.get("address", "127.0.0.1"), "metrics.address"),
            port=self.integer(m.get("port", 9464), "metrics.port", 0, 65535),
        )

    def logging(self, data: object) -> LoggingConfig:
        lg = self.table(data, "logging", ("level", "format"))
        return LoggingConfig(
            level=self.string(lg.get("level", "info"), "logging.level", LOG_LEVELS),
            format=self.string(lg.get("format", "auto"), "logging.format", LOG_FORMATS),
        )


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    return _Reader(source).config(data)


def load(path: str | Path | None) -> Config:
    """Read a config file (default: the checkout's configs/marllbd.toml, else the
    installed /etc/marllbd/marllbd.toml, else the built-in defaults)."""
    if path is None:
        path = next((p for p in (REPO_CONFIG, SYSTEM_CONFIG) if p.is_file()), None)
        if path is None:
            return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    config = from_dict(data, source=str(p))
    return replace(config, policy=_relative_to(config.policy, p.parent))


def _relative_to(policy: PolicyConfig, base: Path) -> PolicyConfig:
    """A policy argument that is a relative path names a file beside the config."""
    name, sep, arg = policy.name.partition(":")
    if sep and arg and not Path(arg).is_absolute() and (base / arg).exists():
        return replace(policy, name=f"{name}:{(base / arg).resolve()}")
    return policy
