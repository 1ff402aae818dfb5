"""The marllbd daemon: poll → infer → write back over the shared-memory region.

One asyncio.TaskGroup runs the poller (newest frame every poll period,
re-attaching when the producer restarts), the inference task (features and
policy on each new frame; stale frames are dropped, never queued), the
write-back task (validates and publishes weights), the metrics server, the
watchdog and the reload handler.  Tasks hand over through latest-value
mailboxes.  Setup and cleanup are explicit; cleanup runs in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import structlog

from marllbd import fairness, features
from marllbd.backends import Backend
from marllbd.backends import create as create_backend
from marllbd.daemon import config as cfg
from marllbd.daemon.channels import Latest
from marllbd.daemon.decider import Decider, load_policies
from marllbd.daemon.fallback import Reason
from marllbd.daemon.metrics import Metrics, MetricsServer, ReloadResult
from marllbd.daemon.sdnotify import Notifier
from marllbd.ipc.region import Region, RegionError
from marllbd.ipc.ring import Frame, FrameError, FrameReader
from marllbd.ipc.weights import WeightsError, WeightsWriter
from marllbd.policies import PolicyContext

log = structlog.get_logger("marllbd")

_DUR_DECAYED = features.FEATURE_NAMES.index("dur_decayed_mean")
_IDLE_WAKE = 0.25  # seconds: tasks wake at least this often to prove the loop is alive
_REPLACE_CHECK_NS = 10_000_000  # a producer restart (new file at the path) shows within 10 ms


class _Stop(Exception):
    """Raised inside the task group to end it."""


@dataclass
class _Decision:
    weights: np.ndarray
    frame_no: int
    t_read: float
    feats: np.ndarray
    fallback: Reason | None


def policy_id(spec: str) -> int:
    """A stable 32-bit id for a policy spec, written into the weights slot."""
    return zlib.crc32(spec.encode())


class Daemon:
    def __init__(
        self, config: cfg.Config, config_path: Path | None = None, notifier: Notifier | None = None
    ):
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.backend: Backend = create_backend(config.backend)
        self.decider = Decider(config.policy, self.metrics)
        self.region: Region | None = None
        self.reader: FrameReader | None = None
        self.writer: WeightsWriter | None = None
        self.capacities = np.ones(0)
        self.prev_weights = np.ones(0)
        self.frames: Latest[tuple[Frame, float, float]] = Latest()
        self.decisions: Latest[_Decision] = Latest()
        self.alive: dict[str, float] = {}
        self.latencies: deque[float] = deque(maxlen=100_000)
        """Recent decision latencies in seconds (for benchmarks; metrics has the histogram)."""
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.ready = asyncio.Event()
        self.metrics_server = MetricsServer(
            self.metrics, config.metrics.address, config.metrics.port
        )
        self._reader_seen = (0, 0, 0)
        self._stalled = False
        self._swapping = False
        self._restarted = False
        self._last_frame: Frame | None = None
        self._replace_check_ns = 0
        """Not before this monotonic ns does the poller stat() the region's path again."""
        self._due_ns = 0
        """When the next frame is due (monotonic ns), 0 when unknown."""
        self._publish_ns = 0
        self._set_info()

    # -- setup ----------------------------------------------------------

    def _set_info(self) -> None:
        self.metrics.backend.info(
            {"kind": self.config.backend.kind, "region": self.backend.region_name}
        )
        self.metrics.policy.info(
            {"name": self.config.policy.name, "fallback": self.config.policy.fallback}
        )

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        try:
            await self.metrics_server.start()
        except OSError as exc:
            log.error("metrics_bind_failed", address=self.config.metrics.address,
                      port=self.config.metrics.port,
                      error=exc.strerror)  # fmt: skip
            return 1
        log.info(
            "metrics_listening",
            url=f"http://{self.config.metrics.address}:{self.metrics_server.port}/metrics",
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
        try:
            # In a thread: the loop keeps serving /metrics while numba compiles.
            await loop.run_in_executor(None, self._warm_up)
            # Everything loaded so far (numpy, numba, torch, the policies) lives as long as
            # the daemon: out of the collector's sight, full collections stay short.
            gc.freeze()
            await self.backend.start()
            self.notifier.ready(f"serving {self.config.policy.name} on {self.backend.region_name}")
            self.ready.set()
            log.info("started", backend=self.backend.kind, region=self.backend.region_name,
                     policy=self.config.policy.name)  # fmt: skip
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._poller(), name="poller")
                    tg.create_task(self._inference(), name="inference")
                    tg.create_task(self._writeback(), name="writeback")
                    tg.create_task(self.metrics_server.serve(), name="metrics")
                    tg.create_task(self._watchdog(), name="watchdog")
                    tg.create_task(self._reloader(), name="reloader")
                    tg.create_task(self._until_stop(), name="stop")
            except* _Stop:
                pass
        finally:
            self.notifier.stopping()
            log.info("stopping")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.backend.stop()
            self._detach()
            await self.metrics_server.close()
            self.decider.close()
            self.notifier.close()
        log.info("stopped")
        return 0

    def _warm_up(self) -> None:
        """Compile the feature kernel (numba) and exercise the policies before READY=1,
        so the first frame does not stall the event loop."""
        n, k = 2, 4
        obs = SimpleNamespace(
            num_servers=n, ts_ns=0, active=np.ones(n, bool), active_flows=np.zeros(n, np.uint64),
            n_dur=np.zeros(n, np.uint32), n_fct=np.zeros(n, np.uint32),
            dur_values=np.zeros((n, k)), fct_values=np.zeros((n, k)),
            dur_t_ns=np.zeros((n, k), np.uint64), fct_t_ns=np.zeros((n, k), np.uint64),
        )  # fmt: skip
        features.compute(obs, np.ones(n))

    async def _until_stop(self) -> None:
        await self.stop_event.wait()
        raise _Stop

    # -- region ----------------------------------------------------------

    def _attach(self) -> None:
        """Attach to the backend's region; after a producer restart, every frame of the
        new producer counts (read, or skipped)."""
        name = self.backend.region_name
        uids = self.config.backend.expected_uids or None
        region = Region.attach(name, allowed_uids=uids)
        n = region.geometry.num_servers
        caps = self.config.policy.capacities or (
            tuple(self.backend.capacities) if self.backend.capacities is not None else ()
        )
        if caps and len(caps) != n:
            log.error("capacities_mismatch", configured=len(caps), region_servers=n)
            caps = ()
        self.capacities = np.array(caps, dtype=np.float64) if caps else np.ones(n)
        from_start = self._restarted
        self.region, self.writer = region, WeightsWriter(region)
        self.reader = FrameReader(region, from_start=from_start)
        self._restarted = False
        self._reader_seen = (0, 0, 0)
        self.prev_weights = self.capacities.copy()
        self.metrics.set_servers(n)
        self._reset_policies()
        self.frames.clear()
        self._last_frame, self._due_ns = None, 0
        self._publish_ns = int(region.hdr["publish_period_ns"])
        self.metrics.attached.set(1)
        self.metrics.attaches.inc()
        log.info(
            "attached",
            region=name,
            servers=n,
            epoch=region.epoch,
            producer_pid=int(region.hdr["producer_pid"]),
        )

    def _reset_policies(self) -> None:
        """Start both policies on the region's servers (see Decider.reset)."""
        ctx = PolicyContext(
            num_servers=len(self.capacities), capacities=self.capacities.copy(), seed=0
        )
        self.decider.reset(ctx)

    def _detach(self) -> None:
        if self.region is not None:
            self.region.close()
            log.info("detached", region=self.backend.region_name)
        self.region = self.reader = self.writer = None
        self.metrics.attached.set(0)

    # -- tasks ----------------------------------------------------------

    async def _poller(self) -> None:
        backoff = 0.01
        period = self.config.daemon.poll_period
        while True:
            self.alive["poller"] = time.monotonic()
            if self._swapping:
                await asyncio.sleep(period)
                continue
            if self.region is None:
                try:
                    self._attach()
                    backoff = 0.01
                except RegionError as exc:
                    if backoff >= self.config.daemon.attach_backoff_max / 2:
                        log.debug("attach_waiting", reason=str(exc))
                    await self._idle("poller", backoff)
                    backoff = min(backoff * 2, self.config.daemon.attach_backoff_max)
                    continue
            fresh = self._poll_once()
            await asyncio.sleep(self._pace(fresh, period))

    async def _idle(self, task: str, seconds: float) -> None:
        """Sleep, still showing the watchdog every _IDLE_WAKE that the task is alive:
        waiting for a data plane is not a stuck loop."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, _IDLE_WAKE))
            self.alive[task] = time.monotonic()

    def _pace(self, fresh: bool, period: float) -> float:
        """Seconds until the next look at the ring.  With `daemon.warm_lead` > 0, the
        poller wakes that long before the next frame is due (the producer's heartbeat at
        the last frame plus its publish period); from then until the frame lands, or as
        long again after it was due, each loop iteration warms the decision path and looks
        at the ring.  A later frame waits for the ordinary poll period."""
        lead = self.config.daemon.warm_lead
        region = self.region
        if lead <= 0 or period == 0 or region is None:
            return period
        now = time.monotonic_ns()
        if fresh:
            last = min(region.heartbeat_ns(), now)  # at or after the frame's commit
            self._due_ns = last + self._publish_ns if self._publish_ns > 0 else 0
        if self._due_ns == 0:
            return period
        until = (self._due_ns - now) / 1e9
        if until > lead:
            return min(period, until - lead)
        if until < -lead:
            return period
        self._warm()
        return 0.0

    def _warm(self) -> None:
        """Run the decision path on the last frame, results unused: features and
        Decider.warm.  Failures are ignored here; the real decision reports them."""
        frame = self._last_frame
        if frame is None or frame.num_servers != len(self.prev_weights):
            return
        try:
            feats = features.compute(frame, self.prev_weights)
            self.decider.warm(feats, frame.active, self._max_ratio())
        except Exception as exc:
            log.debug("warm_failed", error=repr(exc))

    def _poll_once(self) -> bool:
        """Look at the ring once; True when a new frame went to the inference task."""
        region, reader = self.region, self.reader
        assert region is not None and reader is not None
        now_ns = time.monotonic_ns()
        if now_ns >= self._replace_check_ns and region.replaced():
            self.metrics.restarts.inc()
            log.warning("producer_restarted", region=self.backend.region_name)
            self.metrics.missed.inc(reader.account_unread())
            self._restarted = True
            self._detach()
            return False
        if now_ns >= self._replace_check_ns:  # a stat() per look costs more than the read
            self._replace_check_ns = now_ns + _REPLACE_CHECK_NS
        age = max(now_ns - region.heartbeat_ns(), 0) / 1e9
        self.metrics.producer_age.set(age)
        stalled = age > self.config.daemon.stale_after
        if stalled != self._stalled:
            if stalled:
                log.warning("data_plane_stalled", age=round(age, 3))
            else:
                log.info("data_plane_resumed")
            self._stalled = stalled
            self.metrics.stalled.set(1 if stalled else 0)
        try:
            frame = reader.read_newest()
        except FrameError as exc:
            self.metrics.invalid.labels(field=exc.field).inc()
            log.warning("frame_rejected", reason=str(exc))
            frame = None
        s = reader.stats
        seen = (s.torn, s.overruns, s.missed)
        if seen != self._reader_seen:
            torn, overruns, missed = self._reader_seen
            self.metrics.torn.inc(s.torn - torn)
            self.metrics.overruns.inc(s.overruns - overruns)
            self.metrics.missed.inc(s.missed - missed)
            self._reader_seen = seen
        if frame is None:
            return False
        self.metrics.frames.inc()
        if stalled:
            self.metrics.stale.inc()
            return False
        if self.frames.put((frame, time.perf_counter(), age)):
            self.metrics.missed.inc()  # the previous frame was never decided
        self._last_frame = frame
        return True

    async def _inference(self) -> None:
        while True:
            self.alive["inference"] = time.monotonic()
            item = await self.frames.get(timeout=_IDLE_WAKE)
            if item is None or self.region is None:
                continue
            frame, t_read, age = item
            t0 = time.perf_counter()
            feats = features.compute(frame, self.prev_weights)
            weights, reason = await self.decider.decide(feats, frame.active, self._max_ratio())
            self.metrics.inference.observe(time.perf_counter() - t0)
            self.metrics.frame_age.set(age)
            if self.decisions.put(_Decision(weights, frame.frame_no, t_read, feats, reason)):
                self.metrics.missed.inc()  # a newer decision superseded an unpublished one

    def _max_ratio(self) -> float:
        return float(self.region.hdr["max_weight_ratio"]) if self.region is not None else 100.0

    async def _writeback(self) -> None:
        spec = self.config.policy.name
        while True:
            self.alive["writeback"] = time.monotonic()
            d = await self.decisions.get(timeout=_IDLE_WAKE)
            if d is None or self.writer is None:
                continue
            pid = policy_id(self.config.policy.fallback if d.fallback else spec)
            try:
                self.writer.write(d.weights, policy_id=pid, frame_no=d.frame_no)
            except WeightsError as exc:
                self.metrics.weights_refused.inc()
                log.error("weights_refused", error=str(exc))
                continue
            self.prev_weights = d.weights
            self.backend.publish_extra(d.weights)
            m = self.metrics
            m.decisions.inc()
            latency = time.perf_counter() - d.t_read
            m.decision_latency.observe(latency)
            self.latencies.append(latency)
            m.last_decision.set(time.time())
            dur = d.feats[:, _DUR_DECAYED]
            for (weight, flows, duration), w, f, t in zip(
                m.servers, d.weights.tolist(), d.feats[:, 0].tolist(), dur.tolist(), strict=False
            ):
                weight.set(w)
                flows.set(f)
                duration.set(t)
            m.jain.set(fairness.jain(dur))

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while every task has run recently (the loop is healthy)."""
        interval = self.notifier.watchdog_interval or 1.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            fresh = all(now - self.alive.get(t, 0.0) < max(interval, 2 * _IDLE_WAKE)
                        for t in ("poller", "inference", "writeback"))  # fmt: skip
            if fresh:
                self.notifier.watchdog()
            else:
                self.metrics.watchdog_withheld.inc()
                log.warning(
                    "watchdog_withheld", ages={t: round(now - v, 3) for t, v in self.alive.items()}
                )

    async def _reloader(self) -> None:
        while True:
            await self.reload_event.wait()
            self.reload_event.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Re-read the config; swap policy and backend; an invalid config changes nothing."""
        self.notifier.reloading()
        try:
            new = cfg.load(self.config_path)
            policy, fallback = load_policies(new.policy)
            backend = create_backend(new.backend) if new.backend != self.config.backend else None
        except Exception as exc:
            self.metrics.reloads.labels(result=ReloadResult.REFUSED).inc()
            log.error("reload_refused", error=str(exc))
            self.notifier.ready(f"reload refused: {exc}")
            return False
        if new.metrics != self.config.metrics:
            log.warning("metrics_change_needs_restart")
        if backend is not None:
            self._swapping = True  # the poller leaves the region alone meanwhile
            try:
                self._detach()
                old, self.backend = self.backend, backend
                await old.stop()
                await backend.start()
            finally:
                self._swapping = False
            self.metrics.swaps.inc()
        self.decider.swap(new.policy, policy, fallback)
        self.config = new
        if self.region is not None:  # else the attach resets them
            self._reset_policies()
        self._set_info()
        gc.freeze()  # the new policy's objects too (see run)
        self.metrics.reloads.labels(result=ReloadResult.OK).inc()
        log.info(
            "reloaded",
            backend=new.backend.kind,
            region=self.backend.region_name,
            policy=new.policy.name,
        )
        self.notifier.ready(f"serving {new.policy.name} on {self.backend.region_name}")
        return True


def main(config_path: Path | None) -> int:
    """Load the config, configure logging and run the daemon on uvloop."""
    import uvloop

    from marllbd.daemon.logs import configure

    config = cfg.load(config_path)
    configure(config.logging.level, config.logging.format)

    async def _run() -> int:
        return await Daemon(config, config_path).run()

    with (
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        return runner.run(_run())
    return 0
