"""The simulator backend: runs `marllbd sim` as a child data plane, restarting it if it dies."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import numpy as np
import structlog

from marllbd.backends.config import BackendConfig
from marllbd.sim.publisher import region_names
from marllbd.sim.scenario import load_scenario

log = structlog.get_logger("marllbd.backend.sim")


class SimBackend:
    kind = "sim"

    def __init__(self, config: BackendConfig):
        self.config = config
        scenario = load_scenario(config.sim.scenario)  # raises ScenarioError naming the problem
        if config.lb >= scenario.lb_nodes:
            raise ValueError(
                f"backend.lb: scenario {scenario.name!r} has {scenario.lb_nodes} LB node(s), "
                f"got {config.lb}"
            )
        self.scenario = scenario
        self.region_name = region_names(config.region, scenario.lb_nodes)[config.lb]
        self.capacities: np.ndarray | None = scenario.capacities
        self.child_restarts = 0
        self.spawn_failures = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def _argv(self) -> list[str]:
        sim = self.config.sim
        return [
            sys.executable, "-m", "marllbd.cli", "sim",
            "--scenario", sim.scenario, "--region", self.config.region, "--speed", str(sim.speed),
            "--exit-with-parent",
        ]  # fmt: skip

    async def start(self) -> None:
        if self.config.sim.spawn:
            self._task = asyncio.create_task(self._supervise(), name="sim-backend")

    async def _supervise(self) -> None:
        """Keep the child running; back off 0.25 s, 0.5 s, ... up to 5 s between restarts."""
        backoff = 0.25
        while not self._stopping:
            argv = self._argv()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
                )
            except OSError as exc:  # e.g. an interpreter this user may not execute
                self.spawn_failures += 1
                log.error("sim_spawn_failed", argv0=argv[0], error=str(exc), retry_in=backoff)
            else:
                log.info("sim_started", pid=self._proc.pid, scenario=self.config.sim.scenario)
                code = await self._proc.wait()
                if self._stopping:
                    return
                self.child_restarts += 1
                log.warning("sim_exited", code=code, restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def stop(self) -> None:
        """Stop supervising, then stop the child (SIGTERM, SIGKILL after 15 s)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15.0):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def publish_extra(self, weights: np.ndarray) -> None:
        """The simulator reads the slot itself: nothing else to send."""
