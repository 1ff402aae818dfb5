"""A small, obviously-correct processor-sharing simulator to check the engine against.

Every event updates every in-service flow's remaining work directly (no virtual
time, no heaps): slow and plain.  Dispatch uses the same rule functions as the
engine (marllbd.dataplane.dispatch), over each LB's own active-flow counts.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from marllbd.dataplane import dispatch as D
from marllbd.sim.engine import REJECT_PENALTY


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
) -> tuple[np.ndarray, np.ndarray]:
    """Return (server of each flow, FCT of each flow)."""
    n = len(workers)
    w = [float(x) for x in workers]
    up = np.ones(n, dtype=np.uint8)
    nl = weights.shape[0]
    active = np.zeros((nl, n), dtype=np.uint64)
    service: list[list[list[float]]] = [[] for _ in range(n)]  # [flow, remaining]
    queue: list[deque[int]] = [deque() for _ in range(n)]
    server = np.full(len(arrival), -1)
    fct = np.full(len(arrival), np.nan)
    faults = sorted(faults, key=lambda f: f[0])
    t, i, fi = 0.0, 0, 0
    while True:
        rates = [min(w[s] / len(service[s]), 1.0) if service[s] else 0.0 for s in range(n)]
        t_cmp, s_cmp, f_cmp = np.inf, -1, -1
        for s in range(n):
            for flow, rem in service[s]:
                tc = t + rem / rates[s]
                if tc < t_cmp or (tc == t_cmp and flow < f_cmp):
                    t_cmp, s_cmp, f_cmp = tc, s, flow
        t_arr = arrival[i] if i < len(arrival) else np.inf
        t_fault = faults[fi][0] if fi < len(faults) else np.inf
        t_next = min(t_cmp, t_arr, t_fault)
        if t_next == np.inf:
            break
        for s in range(n):
            for entry in service[s]:
                entry[1] -= (t_next - t) * rates[s]
        t = t_next
        if t_cmp <= t_fault and t_cmp <= t_arr:
            service[s_cmp] = [e for e in service[s_cmp] if e[0] != f_cmp]
            fct[f_cmp] = t - arrival[f_cmp] + rtt
            active[f_lb[f_cmp], s_cmp] -= np.uint64(1)
            while queue[s_cmp] and len(service[s_cmp]) < w[s_cmp] * mp_level[s_cmp]:
                nxt = queue[s_cmp].popleft()
                service[s_cmp].append([nxt, float(work[nxt])])
        elif t_fault <= t_arr:
            _, s, kind, value = faults[fi]
            fi += 1
            if kind in ("down", "up"):
                up[s] = 1 if kind == "up" else 0
            else:
                w[s] = value
                while queue[s] and len(service[s]) < w[s] * mp_level[s]:
                    nxt = queue[s].popleft()
                    service[s].append([nxt, float(work[nxt])])
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
            if len(service[s]) < w[s] * mp_level[s]:
                service[s].append([flow, float(work[flow])])
                active[lb, s] += np.uint64(1)
            elif len(queue[s]) < backlog[s]:
                queue[s].append(flow)
                active[lb, s] += np.uint64(1)
            else:
                fct[flow] = REJECT_PENALTY
    return server, fct
