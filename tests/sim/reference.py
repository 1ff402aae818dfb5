"""Small, obviously-correct processor-sharing simulators to check the engine against.

One plain event loop (linear scans, no heaps, Python lists) with two server models:

- `Direct`: every event updates every in-service flow's remaining work
  (no virtual time at all).  Independent of the engine's arithmetic, it
  checks the model: the engine must agree within float rounding.
- `Virtual`: each server keeps a virtual clock V that advances at the
  per-flow rate when something happens at that server (and at each control
  interval's end); a flow admitted at V0 with work w ends when V reaches
  V0 + w.  It performs the engine's float operations in the engine's order,
  so the engine must agree with it exactly, bit for bit.

A server's per-flow rate is speed × min(workers / in_service, 1), speed 1 until a
speed fault sets it.  Dispatch uses the same rule functions as the engine
(marllbd.dataplane.dispatch), over each LB's own active-flow counts.  Events at
equal times run as completion, then fault, then arrival.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from marllbd.dataplane import dispatch as D
from marllbd.sim.engine import REJECT_PENALTY


class Direct:
    """Remaining work per flow, brought up to date on every server at every event."""

    lazy = False

    def __init__(self, n: int) -> None:
        self.flows: list[dict[int, float]] = [{} for _ in range(n)]  # flow -> remaining work
        self.last = [0.0] * n

    def advance(self, s: int, t: float, w: float, speed: float) -> None:
        if self.flows[s]:
            rate = speed * min(w / len(self.flows[s]), 1.0)
            for flow in self.flows[s]:
                self.flows[s][flow] -= (t - self.last[s]) * rate
        self.last[s] = t

    def next_completion(self, w: list[float], speed: list[float]) -> tuple[float, int, int]:
        best = (np.inf, -1, -1)
        for s, flows in enumerate(self.flows):
            for flow, rem in flows.items():
                t = self.last[s] + rem / (speed[s] * min(w[s] / len(flows), 1.0))
                if (t, flow) < (best[0], best[2]):
                    best = (t, s, flow)
        return best

    def admit(self, s: int, flow: int, work: float) -> None:
        self.flows[s][flow] = work


class Virtual:
    """A virtual clock per server and a finishing tag V0 + work per flow."""

    lazy = True

    def __init__(self, n: int) -> None:
        self.flows: list[dict[int, float]] = [{} for _ in range(n)]  # flow -> finishing tag
        self.last = [0.0] * n
        self.v = [0.0] * n

    def advance(self, s: int, t: float, w: float, speed: float) -> None:
        dt = t - self.last[s]
        if dt > 0.0:
            if self.flows[s]:
                self.v[s] += dt * (speed * min(w / len(self.flows[s]), 1.0))
            self.last[s] = t

    def next_completion(self, w: list[float], speed: list[float]) -> tuple[float, int, int]:
        best = (np.inf, -1, -1)
        for s, flows in enumerate(self.flows):
            if flows:
                tag, flow = min((tag, flow) for flow, tag in flows.items())
                rate = speed[s] * min(w[s] / len(flows), 1.0)
                t = self.last[s] + max(tag - self.v[s], 0.0) / rate
                if t < best[0]:  # ties between servers: the lower index
                    best = (t, s, flow)
        return best

    def admit(self, s: int, flow: int, work: float) -> None:
        self.flows[s][flow] = self.v[s] + work


def simulate(
    arrival: np.ndarray,
    work: np.ndarray,
    f_lb: np.ndarray,
    fhash: np.ndarray,
    workers: list[float],
    mp_level: list[int],
    backlog: list[int],
    rtt: float,
    rule: str,
    weights: np.ndarray,
    faults: list[tuple[float, int, str, float]] = (),  # type: ignore[assignment]
    interval: float = 0.25,
    model: type[Direct] | type[Virtual] = Direct,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (server of each flow, FCT of each flow)."""
    n = len(workers)
    w = [float(x) for x in workers]
    speed = [1.0] * n
    up = np.ones(n, dtype=np.uint8)
    nl = weights.shape[0]
    active = np.zeros((nl, n), dtype=np.uint64)
    servers = model(n)
    queue: list[deque[int]] = [deque() for _ in range(n)]
    server = np.full(len(arrival), -1)
    fct = np.full(len(arrival), np.nan)
    faults = sorted(faults, key=lambda f: f[0])
    i, fi, t_end = 0, 0, interval

    def touch(s: int, t: float) -> None:
        if servers.lazy:
            servers.advance(s, t, w[s], speed[s])
        else:
            for x in range(n):
                servers.advance(x, t, w[x], speed[x])

    def fill(s: int) -> None:
        while queue[s] and len(servers.flows[s]) < w[s] * mp_level[s]:
            nxt = queue[s].popleft()
            servers.admit(s, nxt, float(work[nxt]))

    while True:
        t_cmp, s_cmp, f_cmp = servers.next_completion(w, speed)
        t_arr = arrival[i] if i < len(arrival) else np.inf
        t_fault = faults[fi][0] if fi < len(faults) else np.inf
        t_next = min(t_cmp, t_arr, t_fault)
        if t_next == np.inf:
            break
        if t_next > t_end:  # the control interval ends: every server's clock catches up
            for s in range(n):
                servers.advance(s, t_end, w[s], speed[s])
            t_end = t_end + interval
            continue
        if t_cmp <= t_fault and t_cmp <= t_arr:
            touch(s_cmp, t_cmp)
            del servers.flows[s_cmp][f_cmp]
            fct[f_cmp] = t_cmp - arrival[f_cmp] + rtt
            active[f_lb[f_cmp], s_cmp] -= np.uint64(1)
            fill(s_cmp)
        elif t_fault <= t_arr:
            _, s, kind, value = faults[fi]
            fi += 1
            if kind in ("down", "up"):
                up[s] = 1 if kind == "up" else 0
            elif kind == "speed":
                touch(s, t_fault)
                speed[s] = value
            else:
                touch(s, t_fault)
                w[s] = value
                fill(s)
        else:
            flow, lb = i, int(f_lb[i])
            i += 1
            if rule == "sed":
                s = D.sed_pick(active[lb], weights[lb], up)
            elif rule == "lsq":
                s = D.lsq_pick(active[lb], up)
            else:
                s = D.maglev_pick(D.maglev_build(up, 251), fhash[flow])
            if s < 0:
                fct[flow] = REJECT_PENALTY
                continue
            server[flow] = s
            if len(servers.flows[s]) < w[s] * mp_level[s]:
                touch(s, t_arr)
                servers.admit(s, flow, float(work[flow]))
                active[lb, s] += np.uint64(1)
            elif len(queue[s]) < backlog[s]:
                queue[s].append(flow)
                active[lb, s] += np.uint64(1)
            else:
                fct[flow] = REJECT_PENALTY
    return server, fct
