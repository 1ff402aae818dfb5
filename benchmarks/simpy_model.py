"""The simulator's server model written the usual SimPy way: the sim_engine benchmark's baseline.

The same model as marllbd.sim.engine, for one LB node with static weights
and no faults: each server is processor sharing over its workers (each of
n flows in service progresses at min(workers / n, 1)), with workers ×
mp_level slots (a simpy.Resource) whose request queue is the FIFO backlog;
a flow that finds the backlog full is rejected and charged the 40 s
timeout.  The LB dispatches each new flow by SED over its own active-flow
counts: argmin (active + 1) / weight, lowest index on ties.  FCT =
completion − arrival + rtt.

Each flow is a process; each server is a process that sleeps until its next
completion or until a flow joins (which changes every flow's rate).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import simpy

REJECT_PENALTY = 40.0
"""Seconds charged to a rejected flow (the same timeout as the engine's)."""


class PSServer:
    """Processor sharing over `workers` workers with workers × mp_level slots and a backlog."""

    def __init__(self, env: simpy.Environment, workers: int, mp_level: int, backlog: int) -> None:
        self.env = env
        self.workers = workers
        self.backlog = backlog
        self.slots = simpy.Resource(env, capacity=workers * mp_level)
        self.jobs: list[list[Any]] = []  # [remaining work, done event]
        self.last = 0.0
        self.joined = env.event()
        env.process(self._run())

    def full(self) -> bool:
        """Every slot is taken and the backlog is full: a new flow would be refused."""
        return self.slots.count >= self.slots.capacity and len(self.slots.queue) >= self.backlog

    def serve(self, work: float) -> simpy.Event:
        """An event that fires once `work` seconds of service are done (the caller holds a slot)."""
        self._advance()
        done = self.env.event()
        self.jobs.append([work, done])
        if not self.joined.triggered:
            self.joined.succeed()
        return done

    def _rate(self) -> float:
        return min(self.workers / len(self.jobs), 1.0)

    def _advance(self) -> None:
        """Charge every job in service for the time since the last change."""
        if self.jobs:
            served = (self.env.now - self.last) * self._rate()
            for job in self.jobs:
                job[0] -= served
        self.last = self.env.now

    def _run(self) -> Generator[simpy.Event, Any, None]:
        while True:
            if not self.jobs:
                yield self.joined
            else:
                first = min(self.jobs, key=lambda job: job[0])
                finish = self.env.timeout(max(first[0], 0.0) / self._rate())
                yield finish | self.joined
                self._advance()
                if finish.processed:
                    # Only `first` is due; rounding may leave it a hair above zero.
                    self.jobs.remove(first)
                    first[1].succeed()
            if self.joined.triggered:
                self.joined = self.env.event()


def simulate(
    arrival: npt.NDArray[np.float64],
    work: npt.NDArray[np.float64],
    workers: Sequence[int],
    mp_level: Sequence[int],
    backlog: Sequence[int],
    rtt: float,
) -> npt.NDArray[np.float64]:
    """Every flow's FCT in arrival order (REJECT_PENALTY for a rejected flow); weights = workers."""
    env = simpy.Environment()
    servers = [PSServer(env, w, m, b) for w, m, b in zip(workers, mp_level, backlog, strict=True)]
    weights = [float(w) for w in workers]
    active = [0] * len(servers)
    fct = np.full(len(arrival), np.nan)

    def flow(i: int, start: float) -> Generator[simpy.Event, Any, None]:
        s = min(range(len(servers)), key=lambda k: (active[k] + 1.0) / weights[k])
        server = servers[s]
        if server.full():
            fct[i] = REJECT_PENALTY
            return
        active[s] += 1
        with server.slots.request() as slot:
            yield slot
            yield server.serve(float(work[i]))
        active[s] -= 1
        fct[i] = env.now - start + rtt

    def source() -> Generator[simpy.Event, Any, None]:
        for i, t in enumerate(arrival.tolist()):
            yield env.timeout(t - env.now)
            env.process(flow(i, t))

    env.process(source())
    env.run()
    return fct
