"""Prometheus metrics of the daemon and their HTTP endpoint (served on the event loop).

Names follow the official conventions: `marllbd_` prefix, base units
(seconds), `_total` for counters, `_info` for build and configuration facts.
Every labelled series whose label values are known is exported at 0 from start-up
(the per-server series from the attach that tells the server count), so a healthy
daemon's dashboards and rates show 0, not "no data".
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from marllbd import __version__
from marllbd.daemon.fallback import Reason
from marllbd.ipc.ring import FrameError

LATENCY_BUCKETS = (
    *(float(f"{m}e{e}") for e in range(-5, 0) for m in (1, 1.5, 2, 3, 5, 7)),
    1.0,
)
"""10 µs to 1 s, six bounds a decade (1, 1.5, 2, 3, 5, 7): neighbours at most 1.67x
apart, so a p99 read off the buckets can tell "stable within 2x", and the 2 ms
latency budget is a bound of its own."""


class ReloadResult(StrEnum):
    """The `result` label of marllbd_reloads_total."""

    OK = "ok"
    REFUSED = "refused"


class Metrics:
    """Every metric the daemon exports, on a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.frames = Counter(
            "marllbd_frames_read_total", "Complete frames read from the ring", registry=r
        )
        self.torn = Counter(
            "marllbd_torn_reads_total",
            "Frame copies dropped because the writer overlapped",
            registry=r,
        )
        self.overruns = Counter(
            "marllbd_ring_overruns_total", "Times the reader fell a whole ring behind", registry=r
        )
        self.missed = Counter(
            "marllbd_frames_skipped_total",
            "Frames published but never decided (only the newest is read and decided)",
            registry=r,
        )
        self.stale = Counter(
            "marllbd_stale_frames_total",
            "Frames skipped because the producer was stalled",
            registry=r,
        )
        self.invalid = Counter(
            "marllbd_invalid_frames_total", "Frames rejected by validation", ["field"], registry=r
        )
        self.restarts = Counter(
            "marllbd_producer_restarts_total",
            "Data-plane restarts detected (new epoch or new region)",
            registry=r,
        )
        self.attaches = Counter(
            "marllbd_region_attaches_total", "Successful attaches to a region", registry=r
        )
        self.decisions = Counter("marllbd_decisions_total", "Weight vectors published", registry=r)
        self.decision_latency = Histogram(
            "marllbd_decision_latency_seconds",
            "Frame read to weights published",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "marllbd_inference_duration_seconds",
            "Features and policy for one frame",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.frame_age = Gauge(
            "marllbd_frame_age_seconds", "Age of the newest frame at its decision", registry=r
        )
        self.producer_age = Gauge(
            "marllbd_producer_heartbeat_age_seconds",
            "Time since the data plane last published",
            registry=r,
        )
        self.stalled = Gauge(
            "marllbd_data_plane_stalled",
            "1 while the data plane's heartbeat is older than stale_after",
            registry=r,
        )
        self.attached = Gauge("marllbd_attached", "1 while attached to a valid region", registry=r)
        self.fallbacks = Counter(
            "marllbd_fallbacks_total",
            "Decisions made by the fallback policy",
            ["reason"],
            registry=r,
        )
        self.fallback_active = Gauge(
            "marllbd_fallback_active", "1 while the fallback policy decides", registry=r
        )
        self.watchdog_withheld = Counter(
            "marllbd_watchdog_withheld_total",
            "Watchdog pings withheld because a task stopped making progress",
            registry=r,
        )
        self.swaps = Counter("marllbd_backend_swaps_total", "Backend changes by reload", registry=r)
        self.reloads = Counter(
            "marllbd_reloads_total", "Configuration reloads", ["result"], registry=r
        )
        self.weights_refused = Counter(
            "marllbd_weights_refused_total", "Weight vectors refused before publishing", registry=r
        )
        self.last_decision = Gauge(
            "marllbd_last_decision_timestamp_seconds", "Unix time of the last decision", registry=r
        )
        self.weight = Gauge("marllbd_server_weight", "Published weight", ["server"], registry=r)
        self.active_flows = Gauge(
            "marllbd_server_active_flows", "Active flows seen by this LB", ["server"], registry=r
        )
        self.duration = Gauge(
            "marllbd_server_flow_duration_decayed_seconds",
            "Decayed mean flow duration",
            ["server"],
            registry=r,
        )
        self.jain = Gauge(
            "marllbd_flow_duration_jain_index",
            "Jain's index of the decayed mean flow duration",
            registry=r,
        )
        self.build = Info("marllbd_build", "Build information", registry=r)
        self.build.info({"version": __version__})
        self.backend = Info("marllbd_backend", "The active backend", registry=r)
        self.policy = Info("marllbd_policy", "The active policy", registry=r)
        for counter, label, values in (
            (self.invalid, "field", FrameError.FIELDS),
            (self.fallbacks, "reason", tuple(Reason)),
            (self.reloads, "result", tuple(ReloadResult)),
        ):
            for v in values:
                counter.labels(**{label: v})
        self.servers: list[tuple[Any, Any, Any]] = []
        """Per server index, its (weight, active flows, duration) gauge children."""

    def set_servers(self, n: int) -> None:
        """Export the per-server gauges of servers 0..n-1 (at 0 until the first decision)
        and no longer those of a larger region attached before."""
        for i in range(n, len(self.servers)):
            for gauge in (self.weight, self.active_flows, self.duration):
                gauge.remove(str(i))
        del self.servers[n:]
        while len(self.servers) < n:
            s = str(len(self.servers))
            self.servers.append(
                (self.weight.labels(server=s), self.active_flows.labels(server=s),
                 self.duration.labels(server=s))
            )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """A minimal HTTP/1.1 server for GET /metrics on the daemon's event loop."""

    def __init__(self, metrics: Metrics, address: str, port: int):
        self.metrics = metrics
        self.address = address
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind now (so a taken port fails at start-up, not later)."""
        self._server = await asyncio.start_server(self._handle, self.address, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def serve(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                request = await reader.readuntil(b"\r\n\r\n")
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(line) >= 2 and line[0] == "GET" and line[1].split("?")[0] in ("/metrics", "/"):
                body, status, ctype = self.metrics.render(), "200 OK", CONTENT_TYPE_LATEST
            else:
                body, status, ctype = b"not found\n", "404 Not Found", "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()
