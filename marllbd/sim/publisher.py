"""The simulator as a standalone data plane: it owns shared-memory regions,
publishes one frame per LB node per control interval and applies the weights
it reads from each region's slot to that LB's new flows.

Like a real data plane it never stops on its own: when a run's trace is over
it starts the next run (seed + 1) and keeps its regions, frame numbers and
weights.  Frame and sample timestamps are on the simulated clock, anchored at
the wall-clock time the publisher started; with speed X the simulated clock
runs X times faster than the wall clock.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from types import FrameType

import numpy as np
import structlog

from marllbd.ipc.region import Region
from marllbd.ipc.ring import FrameWriter
from marllbd.ipc.weights import WeightsReader, WeightsStatus
from marllbd.sim.engine import Engine, Observation, compile_kernels
from marllbd.sim.scenario import Scenario
from marllbd.sim.traces import Trace

log = structlog.get_logger("marllbd.sim")


def region_names(base: str, lb_nodes: int) -> list[str]:
    """One region per LB node: `base` alone, or `base-0`, `base-1`, ... for several."""
    return [base] if lb_nodes == 1 else [f"{base}-{lb}" for lb in range(lb_nodes)]


@dataclass
class PublisherStats:
    frames: int = 0
    runs: int = 1
    weights_accepted: int = 0
    weights_refused: int = 0
    late_ticks: int = 0
    per_lb_weights: list[np.ndarray] = field(default_factory=list)


class Publisher:
    """Run `scenario` in real time (or `speed` times faster) behind shm regions."""

    def __init__(
        self,
        scenario: Scenario,
        region: str,
        *,
        speed: float = 1.0,
        mode: int = 0o600,
        ring_len: int = 8,
        trace: Trace | None = None,
    ):
        if not speed > 0:
            raise ValueError(f"speed: expected a positive number, got {speed}")
        self.scenario = scenario
        self.speed = speed
        self.names = region_names(region, scenario.lb_nodes)
        n = len(scenario.servers)
        # Compile first (numba may need seconds on a cold cache): a stop requested
        # meanwhile finds no region to clean up yet, and the first frame is on time.
        compile_kernels()
        self.engine = Engine(scenario, trace)
        period_ns = int(scenario.control_interval / speed * 1e9)
        self.regions = [
            Region.create(
                name, n, k=scenario.reservoir_k, ring_len=ring_len, mode=mode,
                publish_period_ns=period_ns,
            )
            for name in self.names
        ]  # fmt: skip
        self.writers = [FrameWriter(r) for r in self.regions]
        self.readers = [WeightsReader(r) for r in self.regions]
        self.stats = PublisherStats(
            per_lb_weights=[self.engine.lb_w[lb].copy() for lb in range(scenario.lb_nodes)]
        )
        self._base_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
        self._offset_s = 0.0  # simulated time of the current run's start
        self._stop = False
        log.info("regions_created", regions=self.names, servers=n, speed=speed)

    def request_stop(self, *_: object) -> None:
        self._stop = True

    def apply_weights(self) -> None:
        """Read each region's slot; new valid weights take effect for new flows."""
        for lb, reader in enumerate(self.readers):
            status = reader.read()
            if status is WeightsStatus.NEW:
                self.engine.set_weights(lb, reader.weights)
                self.stats.per_lb_weights[lb] = reader.weights.copy()
                self.stats.weights_accepted += 1
            elif status in (WeightsStatus.INVALID, WeightsStatus.TORN):
                self.stats.weights_refused += 1
                log.warning("weights_refused", region=self.names[lb], status=status.name,
                            reason=reader.last_error)  # fmt: skip

    def tick(self) -> None:
        """One control interval: apply weights, simulate, publish every LB's frame."""
        self.apply_weights()
        if self.engine.done:
            self._next_run()
        step = self.engine.step(copy=False)
        for lb, obs in enumerate(step.observations):
            self._publish(self.writers[lb], obs)
        self.stats.frames += 1

    def _next_run(self) -> None:
        self._offset_s += self.engine.t
        self.scenario = self.scenario.replace(seed=self.scenario.seed + 1)
        weights = [w.copy() for w in self.stats.per_lb_weights]
        self.engine = Engine(self.scenario)
        for lb, w in enumerate(weights):
            self.engine.set_weights(lb, w)
        self.stats.runs += 1
        log.info("run_started", run=self.stats.runs, seed=self.scenario.seed)

    def _publish(self, writer: FrameWriter, obs: Observation) -> None:
        base = self._base_ns + int(self._offset_s * 1e9)
        n = obs.num_servers
        rec = writer.begin()
        rec["ts_ns"] = base + obs.ts_ns
        rec["window_start_ns"] = base + obs.ts_ns - int(self.scenario.control_interval * 1e9)
        rec["num_servers"] = n
        rec["flags"] = 1  # MARLLB_FRAME_F_WINDOW_RESET: reservoirs cover this window only
        srv = rec["servers"]
        srv["active"][:n] = obs.active
        srv["active_flows"][:n] = obs.active_flows
        srv["new_flows"][:n] = obs.new_flows
        srv["completed_flows"][:n] = obs.completed_flows
        srv["n_dur"][:n] = obs.n_dur
        srv["n_fct"][:n] = obs.n_fct
        srv["dur_seen"][:n] = obs.dur_seen
        srv["fct_seen"][:n] = obs.fct_seen
        srv["dur"]["value"][:n] = obs.dur_values
        srv["dur"]["t_ns"][:n] = obs.dur_t_ns + np.uint64(base)
        srv["fct"]["value"][:n] = obs.fct_values
        srv["fct"]["t_ns"][:n] = obs.fct_t_ns + np.uint64(base)
        writer.commit(rec)

    def run(self, max_frames: int | None = None, parent: int | None = None) -> PublisherStats:
        """Publish until stopped (SIGTERM/SIGINT or request_stop), max_frames, or until
        the process `parent` is no longer our parent (it died)."""
        period = self.scenario.control_interval / self.speed
        deadline = time.monotonic()
        while not self._stop and (max_frames is None or self.stats.frames < max_frames):
            if parent is not None and os.getppid() != parent:
                log.warning("parent_exited", parent=parent)
                break
            self.tick()
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.stats.late_ticks += 1
                if delay < -10 * period:  # far behind (suspended?): do not burst to catch up
                    deadline = time.monotonic()
        return self.stats

    def close(self) -> None:
        """Remove the regions this process created."""
        for r in self.regions:
            r.unlink()
            r.close()
        log.info("regions_removed", regions=self.names)


def serve(
    scenario: Scenario,
    region: str,
    *,
    speed: float = 1.0,
    mode: int = 0o600,
    exit_with_parent: bool = False,
    trace: Trace | None = None,
) -> int:
    """The `marllbd sim` command: publish until SIGTERM/SIGINT (or, with exit_with_parent,
    until the process that started us dies), then clean up; returns the exit code."""
    parent = os.getppid() if exit_with_parent else None
    stop: list[bool] = []
    pub: Publisher | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(True)
        if pub is not None:
            pub.request_stop()

    # Handlers first: a SIGTERM that arrives while the regions are being created
    # must still lead to their removal.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pub = Publisher(scenario, region, speed=speed, mode=mode, trace=trace)
    try:
        if not stop:
            pub.run(parent=parent)
    finally:
        pub.close()
    return 0
