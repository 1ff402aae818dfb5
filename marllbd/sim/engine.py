"""Flow-level discrete-event simulation of load balancers in front of PS servers.

Model (one control interval at a time, compiled with numba):
- The edge router spreads flows over the LB nodes by ECMP on the flow hash.
- Each LB node dispatches its new flows with its rule and weights (the same
  njit functions as marllbd.dataplane.dispatch, the Python twin of the C data
  path) over its *own* view: the flows it dispatched that have not finished.
- Each server is multi-worker processor sharing: up to workers × mp_level flows
  in service, each progressing at speed × min(workers / in_service, 1) (speed is
  1 unless a `speed` fault changed it, so the real capacity is workers × speed);
  its utilization is the fraction of its workers busy, whatever their speed; further flows
  wait in a FIFO backlog; a full backlog rejects the flow, which is charged
  MARLLB's 40 s timeout as its completion time.
- A flow's completion time (FCT) is completion − arrival + rtt.
- Each LB samples, per server, the completion times of its finished flows
  (at completion) and the age of its active flows (once per interval, at the
  frame's publication) into Algorithm R reservoirs of k samples; the
  reservoirs restart every interval (one publication window per frame).

Processor sharing uses virtual time: a server's virtual clock V advances at
the per-flow service rate, a flow admitted at V0 with work w finishes when V
reaches V0 + w, so the next completion is the smallest tag in a binary heap.
Events at equal times run as completion, then fault, then arrival.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from marllbd import features
from marllbd.dataplane import dispatch as D
from marllbd.dataplane.reservoir import NO_RUNTIME, make_rng_state
from marllbd.dataplane.reservoir import reservoir_add as _reservoir_add
from marllbd.policies.interface import GroundTruth
from marllbd.sim.scenario import Fault, Scenario, build_trace
from marllbd.sim.traces import Trace

REJECT_PENALTY = 40.0
"""Seconds charged to a rejected flow (MARLLB's client timeout)."""

_R = D.DispatchRule
RULE_CODES: dict[str, int] = {
    _R.SED: 0, _R.WCMP: 1, _R.ECMP: 2, _R.LSQ: 3, _R.LSQ2: 4, _R.SED2: 5, D.GSQ: 6,
    _R.PEAK_EWMA: 7, _R.PREQUAL: 8, _R.PREQUAL_W: 9,
}  # fmt: skip
"""The code _pick branches on for each rule in D.DISPATCH_NAMES (a test checks it has them
all); gsq (global shortest queue) is a simulator-only oracle."""


def first_weights(rule: str, capacities: np.ndarray) -> np.ndarray:
    """The weights an LB node on `rule` uses before its policy's first decision: the
    static capacities, or for prequal-w (whose weights multiply Prequal's scores) ones,
    with which it is Prequal.  (A copy.)"""
    caps = np.asarray(capacities, dtype=np.float64)
    return np.ones_like(caps) if rule == _R.PREQUAL_W else caps.copy()


_FAULT_CODES = {"down": 0, "up": 1, "capacity": 2, "speed": 3}
_F64 = np.dtype(np.float64)
_HASH_STREAM = 1  # SeedSequence spawn keys: trace 0 (scenario.TRACE_STREAM), hashes 1, reservoirs 2
_RES_STREAM = 2

# The event loop and its helpers allocate nothing and run without the numba runtime (the
# private `_nrt` option, as marllbd.dataplane.reservoir's scalar kernels): with it, each
# array view and each call taking arrays counts references atomically, which measured
# over a fifth of an environment step.
_event_kernel = numba.njit(cache=True, **NO_RUNTIME)
_event_helper = numba.njit(cache=True, inline="always", **NO_RUNTIME)
# The data path's pick functions and reservoir_add, compiled again without the runtime and
# inlined into the event loop: as they are, each call counts references on its arrays.
_inlined = numba.njit(inline="always", **NO_RUNTIME)
_sed_pick = _inlined(D.sed_pick.py_func)
_alias_pick = _inlined(D.alias_pick.py_func)
_maglev_pick = _inlined(D.maglev_pick.py_func)
_lsq_pick = _inlined(D.lsq_pick.py_func)
_p2_pick = _inlined(D.p2_pick.py_func)
_peak_ewma_pick = _inlined(D.peak_ewma_pick.py_func)
_peak_ewma_update = _inlined(D.peak_ewma_update.py_func)
_prequal = _inlined(D._prequal.py_func)  # prequal_pick and prequal_w_pick
_PEAK_EWMA, _PREQUAL = RULE_CODES[_R.PEAK_EWMA], RULE_CODES[_R.PREQUAL]
_PREQUAL_W = RULE_CODES[_R.PREQUAL_W]
reservoir_add = _inlined(_reservoir_add.py_func)

# Column indices of the per-server float state (_TNEXT: time of the next completion, inf
# when idle, recomputed by _refresh whenever the server's state changes; _SPEED: the
# per-worker speed, 1 unless a speed fault set it).
_W, _V, _LAST, _BUSY, _TNEXT, _SPEED = 0, 1, 2, 3, 4, 5
# Column indices of the per-server integer state.
_SLOTS, _MP, _BCAP, _NSERV, _BHEAD, _BLEN, _UP = 0, 1, 2, 3, 4, 5, 6
# Counters.
_C_NEXT_FLOW, _C_NEXT_FAULT, _C_REJECTED, _C_COMPLETED, _C_TABLES_DIRTY = 0, 1, 2, 3, 4
# Rows of the per-flow float state, of the per-flow integer state, of the per-LB flow
# counters, of the fault table's float and integer parts and of the reservoir counts.
_F_ARRIVAL, _F_WORK, _F_START, _F_DONE, _F_FCT = 0, 1, 2, 3, 4
_F_LB, _F_SERVER = 0, 1
_L_ACTIVE, _L_NEW, _L_DONE = 0, 1, 2
_X_TIME, _X_VALUE = 0, 1  # value: the workers of a capacity fault, the speed of a speed fault
_X_SERVER, _X_KIND = 0, 1
_R_N, _R_SEEN = 0, 1
# The stateful rules' parameters (rule_par), from D.RuleParams; times in ns.
_P_TAU_NS, _P_PROBES, _P_Q_RIF, _P_MAX_AGE_NS, _P_MAX_USES, _P_MEAN_WORK = 0, 1, 2, 3, 4, 5
_U32 = np.uint64(0xFFFFFFFF)


@_event_helper
def _heap_push(
    hf: np.ndarray, hid: np.ndarray, s: int, n: int, tag: float, flow: int
) -> None:  # pragma: no cover
    i = n
    while i > 0:
        p = (i - 1) >> 1
        # Ties on the tag go to the lower flow id, so the order is total and reproducible.
        if hf[s, p] < tag or (hf[s, p] == tag and hid[s, p] < flow):
            break
        hf[s, i] = hf[s, p]
        hid[s, i] = hid[s, p]
        i = p
    hf[s, i] = tag
    hid[s, i] = flow


@_event_helper
def _heap_pop(hf: np.ndarray, hid: np.ndarray, s: int, n: int) -> int:  # pragma: no cover
    """Remove the smallest (tag, flow) of a heap of n entries; returns the flow."""
    top = hid[s, 0]
    n -= 1
    tag, flow = hf[s, n], hid[s, n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and (
            hf[s, c + 1] < hf[s, c] or (hf[s, c + 1] == hf[s, c] and hid[s, c + 1] < hid[s, c])
        ):
            c += 1
        if tag < hf[s, c] or (tag == hf[s, c] and flow < hid[s, c]):
            break
        hf[s, i] = hf[s, c]
        hid[s, i] = hid[s, c]
        i = c
    hf[s, i] = tag
    hid[s, i] = flow
    return top


@_event_helper
def _advance(sf: np.ndarray, si: np.ndarray, s: int, t: float) -> None:  # pragma: no cover
    """Bring server s's virtual clock and busy integral up to time t."""
    dt = t - sf[s, _LAST]
    if dt > 0.0:
        n = si[s, _NSERV]
        if n > 0:
            w = sf[s, _W]
            rate = sf[s, _SPEED] * min(w / n, 1.0)
            sf[s, _V] += dt * rate
            sf[s, _BUSY] += dt * min(n, w) / w
        sf[s, _LAST] = t


@_event_helper
def _refresh(sf: np.ndarray, si: np.ndarray, hf: np.ndarray, s: int) -> None:  # pragma: no cover
    """Recompute server s's next completion time from its current state (inf when idle)."""
    n = si[s, _NSERV]
    if n > 0:
        rate = sf[s, _SPEED] * min(sf[s, _W] / n, 1.0)
        sf[s, _TNEXT] = sf[s, _LAST] + max(hf[s, 0] - sf[s, _V], 0.0) / rate
    else:
        sf[s, _TNEXT] = np.inf


@_event_helper
def _admit(sf, si, hf, hid, f_start, work, s, flow, t):  # type: ignore[no-untyped-def]  # pragma: no cover
    n = si[s, _NSERV]
    _heap_push(hf, hid, s, n, sf[s, _V] + work[flow], flow)
    si[s, _NSERV] = n + 1
    f_start[flow] = t


@_event_helper
def _admit_backlog(sf, si, hf, hid, bq, f_start, work, s, t):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Admit from server s's backlog while slots are free (capacity may have grown)."""
    while si[s, _BLEN] > 0 and si[s, _NSERV] < si[s, _SLOTS]:
        head = si[s, _BHEAD]
        nxt = bq[s, head]
        si[s, _BHEAD] = (head + 1) % bq.shape[1]
        si[s, _BLEN] -= 1
        _admit(sf, si, hf, hid, f_start, work, s, nxt, t)


@numba.njit(cache=True)
def _rebuild_tables(si, lb_w, al_prob, al_alias, maglev):  # type: ignore[no-untyped-def]  # pragma: no cover
    up = si[:, _UP].astype(np.uint8)
    for lb in range(lb_w.shape[0]):
        prob, alias = D.alias_build(lb_w[lb], up)
        al_prob[lb] = prob
        al_alias[lb] = alias
    maglev[:] = D.maglev_build(up, maglev.shape[0])


@_event_helper
def _probe(sf, si, pool, s, now_ns, mean_work):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Server s answers a Prequal probe at now_ns: its flows in service and backlogged
    over all LBs, and the latency it predicts for one more flow, (in flight + 1) × mean
    work / real capacity (workers × speed).  The answer takes the first empty slot, else
    the oldest's."""
    slot = 0
    for i in range(pool.shape[0]):
        if pool[i].server < 0:
            slot = i
            break
        if pool[i].t_ns < pool[slot].t_ns:
            slot = i
    rif = si[s, _NSERV] + si[s, _BLEN]
    cap = sf[s, _W] * sf[s, _SPEED]
    p = pool[slot]
    p.t_ns = now_ns
    p.latency = (rif + 1) * mean_work / cap if cap > 0.0 else np.inf
    p.rif = np.uint32(rif)
    p.server = s
    p.uses = np.uint32(0)


@_event_helper
def _prequal_refresh(sf, si, pool, h, now_ns, rule_par):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The probes a new flow's arrival sends, all answered at once: rule_par's rate per
    flow (its fractional part a probability), each to a uniform server drawn from the
    flow hash (so a run is deterministic); a down server does not answer."""
    n = si.shape[0]
    rate = rule_par[_P_PROBES]
    count = np.int64(rate)
    if np.float64(D._mix64(h) & _U32) < (rate - count) * 4294967296.0:
        count += 1
    for k in range(count):
        s = D._below(D._mix64(h + np.uint64(k + 1)) & _U32, n)
        if si[s, _UP] != 0:
            _probe(sf, si, pool, s, now_ns, rule_par[_P_MEAN_WORK])


@_event_helper
def _pick(rule, lb, h, t, sf, si, up, lb_w, active, al_prob, al_alias, maglev, pe, pq, rule_par):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The server LB node lb's rule picks for a new flow of hash h at time t; -1 if none."""
    if rule == 0:
        return _sed_pick(active, lb_w[lb], up)
    if rule == 1:
        return _alias_pick(al_prob[lb], al_alias[lb], h)
    if rule == 2:
        return _maglev_pick(maglev, h)
    if rule == 3:
        return _lsq_pick(active, up)
    if rule == 4:
        return _p2_pick(active, lb_w[lb], up, h, False)
    if rule == 5:
        return _p2_pick(active, lb_w[lb], up, h, True)
    if rule == _PEAK_EWMA:
        return _peak_ewma_pick(
            active, lb_w[lb], up, pe[lb], h, np.uint64(t * 1e9), rule_par[_P_TAU_NS]
        )
    if rule in (_PREQUAL, _PREQUAL_W):
        now_ns = np.uint64(t * 1e9)
        _prequal_refresh(sf, si, pq[lb], h, now_ns, rule_par)
        return _prequal(
            pq[lb], up, lb_w[lb], rule == _PREQUAL_W, h, now_ns,
            np.uint64(rule_par[_P_MAX_AGE_NS]), rule_par[_P_Q_RIF],
            np.int64(rule_par[_P_MAX_USES]),
        )  # fmt: skip
    # Oracle: fewest flows per unit of real capacity (workers × speed), ties to the lowest index.
    s = -1
    best = np.inf
    for i in range(sf.shape[0]):
        if si[i, _UP] != 0:
            score = (si[i, _NSERV] + si[i, _BLEN] + 1) / (sf[i, _W] * sf[i, _SPEED])
            if score < best:
                best = score
                s = i
    return s


@_event_kernel
def _run(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t_end,
    rtt,
    flows,
    f_int,
    fhash,
    sf,
    si,
    hf,
    hid,
    bq,
    lb_rule,
    lb_w,
    lb_counts,
    al_prob,
    al_alias,
    maglev,
    rv,
    rt,
    rc,
    rng,
    fault_f,
    fault_i,
    counters,
    pe,
    pq,
    rule_par,
    up,
):
    """Process every event with time <= t_end, then bring all servers to t_end; but
    return True right after a server goes down or up, for the caller to rebuild the
    dispatch tables (which allocates) and call again.  up mirrors si[:, _UP]."""
    n_srv = sf.shape[0]
    n_flows = flows.shape[1]
    n_faults = fault_f.shape[1]
    arrival, work, f_start = flows[_F_ARRIVAL], flows[_F_WORK], flows[_F_START]
    f_done, f_fct = flows[_F_DONE], flows[_F_FCT]
    f_lb, f_server = f_int[_F_LB], f_int[_F_SERVER]
    lb_active, lb_new, lb_done = lb_counts[_L_ACTIVE], lb_counts[_L_NEW], lb_counts[_L_DONE]
    fct_v, fct_t, fct_n, fct_seen = rv[1], rt[1], rc[_R_N, 1], rc[_R_SEEN, 1]
    while True:
        nf = counters[_C_NEXT_FLOW]
        t_arr = arrival[nf] if nf < n_flows else np.inf
        nft = counters[_C_NEXT_FAULT]
        t_fault = fault_f[_X_TIME, nft] if nft < n_faults else np.inf
        # The earliest completion, ties to the lowest server index.
        t_cmp = np.inf
        s_cmp = -1
        for s in range(n_srv):
            t = sf[s, _TNEXT]
            if t < t_cmp:
                t_cmp = t
                s_cmp = s
        t_next = min(t_cmp, t_fault, t_arr)
        if t_next > t_end:
            break
        if t_cmp <= t_fault and t_cmp <= t_arr:
            s = s_cmp
            _advance(sf, si, s, t_cmp)
            n = si[s, _NSERV]
            flow = _heap_pop(hf, hid, s, n)
            si[s, _NSERV] = n - 1
            f_done[flow] = t_cmp
            fct = t_cmp - arrival[flow] + rtt
            f_fct[flow] = fct
            lb = f_lb[flow]
            lb_active[lb, s] -= np.uint64(1)
            lb_done[lb, s] += np.uint64(1)
            counters[_C_COMPLETED] += 1
            t_ns = np.uint64(t_cmp * 1e9)
            reservoir_add(fct_v, fct_t, fct_n, fct_seen, lb * n_srv + s, fct, t_ns, rng)
            if lb_rule[lb] == _PEAK_EWMA:
                _peak_ewma_update(pe[lb], s, fct, t_ns, rule_par[_P_TAU_NS])
            _admit_backlog(sf, si, hf, hid, bq, f_start, work, s, t_cmp)
            _refresh(sf, si, hf, s)
        elif t_fault <= t_arr:
            s = fault_i[_X_SERVER, nft]
            kind = fault_i[_X_KIND, nft]
            counters[_C_NEXT_FAULT] = nft + 1
            if kind == 0 or kind == 1:
                si[s, _UP] = 1 if kind == 1 else 0
                up[s] = si[s, _UP]
                return True
            else:
                _advance(sf, si, s, t_fault)
                value = fault_f[_X_VALUE, nft]
                if kind == 2:
                    sf[s, _W] = value
                    si[s, _SLOTS] = np.int64(value) * si[s, _MP]
                    _admit_backlog(sf, si, hf, hid, bq, f_start, work, s, t_fault)
                else:  # speed: the slots, and so who is in service, stay as they are
                    sf[s, _SPEED] = value
                _refresh(sf, si, hf, s)
        else:
            flow = nf
            counters[_C_NEXT_FLOW] = nf + 1
            lb = f_lb[flow]
            s = _pick(
                lb_rule[lb], lb, fhash[flow], t_arr, sf, si, up, lb_w, lb_active[lb],
                al_prob, al_alias, maglev, pe, pq, rule_par,
            )  # fmt: skip
            if s < 0:
                f_fct[flow] = REJECT_PENALTY
                counters[_C_REJECTED] += 1
                continue
            f_server[flow] = s
            lb_new[lb, s] += np.uint64(1)
            if si[s, _NSERV] < si[s, _SLOTS]:
                lb_active[lb, s] += np.uint64(1)
                _advance(sf, si, s, t_arr)
                _admit(sf, si, hf, hid, f_start, work, s, flow, t_arr)
                _refresh(sf, si, hf, s)
            elif si[s, _BLEN] < si[s, _BCAP]:
                lb_active[lb, s] += np.uint64(1)
                tail = (si[s, _BHEAD] + si[s, _BLEN]) % bq.shape[1]
                bq[s, tail] = flow
                si[s, _BLEN] += 1
            else:
                # Backlog full: the server refuses the flow; the client times out.
                f_fct[flow] = REJECT_PENALTY
                lb_done[lb, s] += np.uint64(1)
                counters[_C_REJECTED] += 1
    for s in range(n_srv):
        _advance(sf, si, s, t_end)
        _refresh(sf, si, hf, s)
    return False


@_event_kernel
def _sample_ages(t, arrival, f_lb, si, hid, bq, rv, rt, rc, rng):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Offer the age of every active flow to its LB's duration reservoir for its server."""
    t_ns = np.uint64(t * 1e9)
    n = si.shape[0]
    values, stamps, counts, seen = rv[0], rt[0], rc[_R_N, 0], rc[_R_SEEN, 0]
    for s in range(n):
        for i in range(si[s, _NSERV]):
            flow = hid[s, i]
            reservoir_add(
                values, stamps, counts, seen, f_lb[flow] * n + s, t - arrival[flow], t_ns, rng
            )
        head = si[s, _BHEAD]
        for i in range(si[s, _BLEN]):
            flow = bq[s, (head + i) % bq.shape[1]]
            reservoir_add(
                values, stamps, counts, seen, f_lb[flow] * n + s, t - arrival[flow], t_ns, rng
            )


@numba.njit(cache=True)
def _interval(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t_end,
    ts_ns,
    interval,
    rtt,
    flows,
    f_int,
    fhash,
    sf,
    si,
    hf,
    hid,
    bq,
    lb_rule,
    lb_w,
    lb_counts,
    al_prob,
    al_alias,
    maglev,
    rv,
    rt,
    rc,
    rng,
    fault_f,
    fault_i,
    counters,
    pe,
    pq,
    rule_par,
    truth,
    tau,
    feats,
    first_lb,
):
    """One control interval in one call: run the events up to t_end, sample the active
    flows' ages, write the servers' (utilization, queue) into truth and the feature
    matrix of LB node first_lb + i's frame (stamped ts_ns) into feats[i], if any."""
    n = sf.shape[0]
    if (
        feats.shape[1] != n
        or feats.shape[2] != features.NUM_FEATURES
        or not 0 <= first_lb <= lb_w.shape[0] - feats.shape[0]
    ):
        raise ValueError("feats: expected (m, num_servers, 12) for LB nodes first_lb + i < num_lbs")
    rc[:] = 0  # a new publication window: the reservoirs start empty
    up = si[:, _UP].astype(np.uint8)
    while _run(
        t_end, rtt, flows, f_int, fhash, sf, si, hf, hid, bq, lb_rule, lb_w, lb_counts,
        al_prob, al_alias, maglev, rv, rt, rc, rng, fault_f, fault_i, counters, pe, pq,
        rule_par, up,
    ):  # fmt: skip
        _rebuild_tables(si, lb_w, al_prob, al_alias, maglev)
    _sample_ages(t_end, flows[_F_ARRIVAL], f_int[_F_LB], si, hid, bq, rv, rt, rc, rng)
    for s in range(n):
        truth[0, s] = sf[s, _BUSY] / interval
        truth[1, s] = np.float64(si[s, _NSERV] + si[s, _BLEN])
        sf[s, _BUSY] = 0.0
    for i in range(feats.shape[0]):
        lb = first_lb + i
        r = slice(lb * n, (lb + 1) * n)
        features.kernel(
            np.uint64(ts_ns), lb_counts[_L_ACTIVE, lb],
            rc[_R_N, 0, r], rv[0, r], rt[0, r], rc[_R_N, 1, r], rv[1, r], rt[1, r],
            lb_w[lb], tau, feats[i],
        )  # fmt: skip


@numba.njit(inline="always")
def _interval_of(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    i, t_end, ts_ns, interval, rtt, states, weights, wlb, truth, totals, n_fct, tau, feats,
    first_lb,
):  # fmt: skip
    """Engine i's part of _intervals."""
    st = states[i]
    if wlb >= 0:
        st[9][wlb, :] = weights[i]  # lb_w
    _interval(
        t_end[i], ts_ns[i], interval, rtt,
        st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7], st[8], st[9], st[10], st[11],
        st[12], st[13], st[14], st[15], st[16], st[17], st[18], st[19], st[20], st[21],
        st[22], st[23],
        truth[i], tau, feats[i], first_lb,
    )  # fmt: skip
    totals[i, 0] = st[20][_C_COMPLETED]  # counters
    totals[i, 1] = st[20][_C_REJECTED]
    n = truth.shape[2]
    n_fct[i, :] = st[16][_R_N, 1, first_lb * n : (first_lb + 1) * n]  # rc


@numba.njit(cache=True)
def _intervals(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t_end, ts_ns, interval, rtt, states, weights, wlb, truth, totals, n_fct, tau, feats, first_lb,
    only,
):  # fmt: skip
    """_interval for each engine i of a batch, in one call: states is a typed list of
    the engines' state tuples (Engine._state); weights[i] becomes the weights of LB
    node wlb first (none if wlb < 0); truth[i] and feats[i] are engine i's, totals[i]
    its (completed, rejected) after the interval and n_fct[i] LB node first_lb's FCT
    sample counts of the frame (Engine.fct_counts); only the engines i with only[i]."""
    for i in range(t_end.shape[0]):
        if only[i]:
            _interval_of(
                i, t_end, ts_ns, interval, rtt, states, weights, wlb, truth, totals, n_fct,
                tau, feats, first_lb,
            )  # fmt: skip


@numba.njit(cache=True, parallel=True)
def _intervals_parallel(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t_end, ts_ns, interval, rtt, states, weights, wlb, truth, totals, n_fct, tau, feats, first_lb,
    only,
):  # fmt: skip
    """_intervals on numba's threads: the engines share nothing, so the results are the
    same.  (A function of its own: numba's cache keys a function by its name, not by
    its compile options.)"""
    for j in numba.prange(t_end.shape[0]):
        if only[j]:
            _interval_of(
                np.int64(j), t_end, ts_ns, interval, rtt, states, weights, wlb, truth,
                totals, n_fct, tau, feats, first_lb,
            )  # fmt: skip


# The batch's typed list of state tuples, built and updated in compiled code that numba
# caches on disk: typed.List's own Python-level methods compile for each element type in
# every process (empty_list + append + setitem: ~2.2 s), these load in ~25 ms.
@numba.njit(cache=True)
def _states_of(first):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """A typed list holding one state tuple."""
    states = numba.typed.List()
    states.append(first)
    return states


@numba.njit(cache=True)
def _states_append(states, state):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    states.append(state)


@numba.njit(cache=True)
def _states_put(states, i, state):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    states[i] = state


def _arg_key(a: Any) -> Any:
    """What numba's type of an argument depends on: an array's dtype, dimensions,
    layout, writability and alignment; a scalar's Python type."""
    if isinstance(a, np.ndarray):
        f = a.flags
        return (a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
    return type(a)


_ENTRY_POINTS: dict[tuple[Any, ...], Any] = {}
"""(dispatcher, argument keys) -> compiled entry point, shared by every engine: numba
types 32 arguments in about 1.5 ms, once per new engine otherwise."""


def _entry_point(dispatcher: Any, args: tuple[Any, ...]) -> Any:
    """The compiled function a numba dispatcher runs for args' types (the dispatcher
    itself if it is not found), to call without the dispatch: typing _interval's 32
    arguments on every call costs about as much as unboxing them.  Valid for arguments
    of exactly these types only: the arrays of an engine's state keep theirs, and
    Engine.advance resolves it again for a new feats array."""
    key = (dispatcher, *map(_arg_key, args))
    entry = _ENTRY_POINTS.get(key)
    if entry is not None:
        return entry
    try:
        sig = tuple(dispatcher.typeof_pyval(a) for a in args)
        cres = dispatcher.overloads.get(sig)
    except AttributeError:  # a numba without these attributes: keep the dispatcher
        return dispatcher
    if cres is None:
        return dispatcher
    _ENTRY_POINTS[key] = cres.entry_point
    return cres.entry_point


@dataclass(frozen=True)
class Observation:
    """What one LB node publishes for one interval (the shape of a shm Frame)."""

    num_servers: int
    ts_ns: int
    frame_no: int
    active: np.ndarray  # bool[n]: server takes new flows
    active_flows: np.ndarray  # uint64[n]: this LB's flows not yet finished
    new_flows: np.ndarray  # uint64[n], cumulative
    completed_flows: np.ndarray  # uint64[n], cumulative (rejections included)
    n_dur: np.ndarray  # int64[n]
    n_fct: np.ndarray
    dur_seen: np.ndarray  # int64[n], values offered this window
    fct_seen: np.ndarray
    dur_values: np.ndarray  # float64[n, k], seconds
    dur_t_ns: np.ndarray  # uint64[n, k]
    fct_values: np.ndarray
    fct_t_ns: np.ndarray


@dataclass(frozen=True)
class Step:
    """The result of advancing one control interval."""

    t: float
    observations: tuple[Observation, ...]  # one per LB node
    truth: GroundTruth  # what the servers really did over the interval (reports, oracles)
    completed: int  # flows completed so far (all LBs)
    rejected: int


def _fault_value(fault: Fault) -> float:
    """The fault table's value row: a capacity fault's workers, a speed fault's speed."""
    if fault.kind == "speed":
        return float(fault.speed or 1.0)
    return float(fault.workers or 0)


def _flow_hashes(seed: int, n: int) -> np.ndarray:
    """n uniform 64-bit hashes: the raw PCG64 words, which is what Generator.integers
    returns over the full uint64 range (without its per-call bounds handling)."""
    bits = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_HASH_STREAM,)))
    return bits.random_raw(n)


class Engine:
    """A scenario's simulation, advanced one control interval at a time.

    weights and rules are per LB node; set them before each `step()`.
    """

    def __init__(
        self,
        scenario: Scenario,
        trace: Trace | None = None,
        *,
        rule: str | Sequence[str] | None = None,
        maglev_size: int = 251,
        rule_params: D.RuleParams | None = None,
    ):
        self.scenario = scenario
        self.rule_params = rule_params if rule_params is not None else D.RuleParams()
        self.trace = trace if trace is not None else build_trace(scenario)
        self.num_servers = len(scenario.servers)
        self.num_lbs = scenario.lb_nodes
        self.interval = scenario.control_interval
        self.duration = scenario.duration
        self._maglev_size = maglev_size
        rules = rule if rule is not None else scenario.dispatch
        self._rules = [rules] * self.num_lbs if isinstance(rules, str) else list(rules)
        if len(self._rules) != self.num_lbs:
            raise ValueError(
                f"rule: expected {self.num_lbs} rules (one per LB), got {len(self._rules)}"
            )
        for r in self._rules:
            D.check_dispatch_name(r)
        self.reset()

    def reset(self) -> None:
        sc, n, nl, k = self.scenario, self.num_servers, self.num_lbs, self.scenario.reservoir_k
        tr = self.trace
        nflows = tr.arrival.shape[0]
        # Per-flow state, one row per quantity; the named attributes are views of the rows.
        self.flows = np.empty((5, nflows))
        self.flows[_F_ARRIVAL] = tr.arrival
        self.flows[_F_WORK] = tr.work
        self.flows[_F_START:] = np.nan
        self.arrival, self.work = self.flows[_F_ARRIVAL], self.flows[_F_WORK]
        self.f_start, self.f_done = self.flows[_F_START], self.flows[_F_DONE]
        self.f_fct = self.flows[_F_FCT]
        self.fhash = _flow_hashes(sc.seed, nflows)
        self.f_int = np.empty((2, nflows), dtype=np.int64)
        # The edge router: ECMP over LB nodes on the high bits of the flow hash.
        if nl == 1:
            self.f_int[_F_LB] = 0  # (x % 1, without a 64-bit division per flow)
        else:
            self.f_int[_F_LB] = (self.fhash >> np.uint64(40)) % np.uint64(nl)
        self.f_int[_F_SERVER] = -1
        self.f_lb, self.f_server = self.f_int[_F_LB], self.f_int[_F_SERVER]

        workers = sc.capacities
        mp = np.array([s.mp_level for s in sc.servers], dtype=np.int64)
        bcap = np.array([s.backlog for s in sc.servers], dtype=np.int64)
        max_workers = workers.copy()
        for f in sc.faults:
            if f.kind == "capacity" and f.workers is not None:
                max_workers[f.server] = max(max_workers[f.server], f.workers)
        self.static_capacities = workers.copy()
        self.sf = np.zeros((n, 6))
        self.sf[:, _W] = workers
        self.sf[:, _TNEXT] = np.inf
        self.sf[:, _SPEED] = 1.0
        self.si = np.zeros((n, 7), dtype=np.int64)
        self.si[:, _SLOTS] = workers.astype(np.int64) * mp
        self.si[:, _MP] = mp
        self.si[:, _BCAP] = bcap
        self.si[:, _UP] = 1
        cmax = int((max_workers.astype(np.int64) * mp).max())
        self.hf = np.zeros((n, cmax))
        self.hid = np.zeros((n, cmax), dtype=np.int64)
        self.bq = np.zeros((n, max(int(bcap.max()), 1)), dtype=np.int64)

        self.lb_rule = np.array([RULE_CODES[r] for r in self._rules], dtype=np.int64)
        self.lb_w = np.stack([first_weights(r, workers) for r in self._rules])
        self.lb_counts = np.zeros((3, nl, n), dtype=np.uint64)
        self.lb_active = self.lb_counts[_L_ACTIVE]
        self.lb_new = self.lb_counts[_L_NEW]
        self.lb_done = self.lb_counts[_L_DONE]
        self.al_prob = np.zeros((nl, n), dtype=np.uint32)
        self.al_alias = np.zeros((nl, n), dtype=np.int32)
        self.maglev = np.zeros(self._maglev_size, dtype=np.int32)

        # Reservoirs per quantity (0 duration, 1 FCT), one per (LB, server) at lb * n + s;
        # their counts (valid samples rn, values offered rseen) restart every interval.
        self.rv = np.zeros((2, nl * n, k))
        self.rt = np.zeros((2, nl * n, k), dtype=np.uint64)
        self.rc = np.zeros((2, 2, nl * n), dtype=np.int64)
        self.rn, self.rseen = self.rc[_R_N], self.rc[_R_SEEN]
        res_seed = np.random.SeedSequence(sc.seed, spawn_key=(_RES_STREAM,)).generate_state(1)
        self.rng = make_rng_state(int(res_seed[0]))

        faults = sorted(sc.faults, key=lambda f: f.time)
        self.fault_f = np.array(
            [[f.time for f in faults], [_fault_value(f) for f in faults]], dtype=np.float64
        ).reshape(2, len(faults))
        self.fault_i = np.array(
            [[f.server for f in faults], [_FAULT_CODES[f.kind] for f in faults]], dtype=np.int64
        ).reshape(2, len(faults))
        self.counters = np.zeros(5, dtype=np.int64)
        # The stateful rules' per-LB state: peak-ewma's per server, Prequal's probe pools.
        rp = self.rule_params
        self.pe = np.zeros((nl, n), dtype=D.PEAK_EWMA_DTYPE)
        self.pe["ewma"] = D.PEAK_EWMA_NONE
        self.pq = np.zeros((nl, rp.prequal_pool), dtype=D.PROBE_DTYPE)
        self.pq["server"] = -1
        mean_work = float(tr.work.mean()) if nflows else 1.0
        self.rule_par = np.array(
            [rp.peak_ewma_tau * 1e9, rp.prequal_probes, rp.prequal_q_rif,
             rp.prequal_max_age * 1e9, rp.prequal_max_uses, mean_work]
        )  # fmt: skip
        # The clock: simulated seconds and frames published, in arrays of their own so
        # that an EngineBatch can hold every engine's in one of its own (t, frame_no).
        self._time = np.zeros(1)
        self._frames = np.zeros(1, dtype=np.int64)
        _rebuild_tables(self.si, self.lb_w, self.al_prob, self.al_alias, self.maglev)
        # Everything the interval kernel reads or updates, in its argument order.
        self._state = (
            self.flows, self.f_int, self.fhash, self.sf, self.si, self.hf, self.hid, self.bq,
            self.lb_rule, self.lb_w, self.lb_counts, self.al_prob, self.al_alias, self.maglev,
            self.rv, self.rt, self.rc, self.rng, self.fault_f, self.fault_i, self.counters,
            self.pe, self.pq, self.rule_par,
        )  # fmt: skip
        self._no_features = np.empty((0, n, features.NUM_FEATURES))
        self._feats_ok: np.ndarray | None = None  # the last feats array that passed the checks
        self._tau_ok = features.DEFAULT_TAU  # the last tau that passed the checks
        self._rtt = float(sc.rtt)
        self._views = [self._lb_views(lb) for lb in range(nl)]  # fixed: the arrays persist
        self._call: Any = None  # _interval's compiled entry point for these arguments' types

    # -- pickling --------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """The engine's state without what is bound to this process or derived: the
        compiled entry point, the checked-array cache, and the arrays that are views of
        other arrays of the state (pickle would copy them apart)."""
        state = self.__dict__.copy()
        for name in ("_call", "_feats_ok", "_state", "_views", "_no_features"):
            del state[name]
        owners = [v for v in state.values() if isinstance(v, np.ndarray)]
        views = [
            k
            for k, v in state.items()
            if isinstance(v, np.ndarray) and any(v.base is o for o in owners)
        ]
        for name in views:
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the arrays and their views as reset() lays them out, then fill them
        with the pickled values, so the views alias the arrays again."""
        self.__dict__.update(state)
        self.reset()
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                mine = getattr(self, name)
                if mine.shape != value.shape or mine.dtype != value.dtype:
                    raise ValueError(
                        f"Engine state: array {name!r} pickled as {value.dtype} "
                        f"{value.shape}, expected {mine.dtype} {mine.shape}"
                    )
                mine[...] = value
            else:
                setattr(self, name, value)

    # -- control ---------------------------------------------------------

    def set_weights(self, lb: int, weights: np.ndarray, *, checked: bool = True) -> None:
        """Weights for LB node `lb`'s new flows from now on (finite, > 0).

        checked=False skips the checks, for callers whose weights are valid by
        construction (the environments' actions).
        """
        if checked:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (self.num_servers,):
                raise ValueError(f"weights: expected shape ({self.num_servers},), got {w.shape}")
            if not (np.isfinite(w).all() and (w > 0).all()):
                raise ValueError(f"weights: expected finite values > 0, got {w}")
            weights = w
        self.lb_w[lb] = weights
        if self._rules[lb] == "wcmp":
            prob, alias = D.alias_build(self.lb_w[lb], self.si[:, _UP].astype(np.uint8))
            self.al_prob[lb] = prob
            self.al_alias[lb] = alias

    def set_rule(self, lb: int, rule: str) -> None:
        self._rules[lb] = D.check_dispatch_name(rule)
        self.lb_rule[lb] = RULE_CODES[rule]
        self.set_weights(lb, self.lb_w[lb])

    @property
    def t(self) -> float:
        """Simulated seconds so far (the end of the last interval)."""
        return float(self._time[0])

    @t.setter
    def t(self, value: float) -> None:
        self._time[0] = value

    @property
    def frame_no(self) -> int:
        """Intervals advanced (frames published per LB node) so far."""
        return int(self._frames[0])

    @frame_no.setter
    def frame_no(self, value: int) -> None:
        self._frames[0] = value

    @property
    def done(self) -> bool:
        """The run's duration has elapsed."""
        return self.t >= self.duration - 1e-12

    @property
    def drained(self) -> bool:
        """Every flow has arrived and finished (or was rejected)."""
        return bool(
            self.counters[_C_NEXT_FLOW] == self.arrival.shape[0] and not np.isnan(self.f_fct).any()
        )

    def advance(
        self,
        feats: np.ndarray | None = None,
        *,
        first_lb: int = 0,
        tau: float = features.DEFAULT_TAU,
    ) -> np.ndarray:
        """Advance one control interval without building observations (the environments'
        hot path); returns the servers' ground truth as rows (utilization, queue).

        With `feats`, a C-contiguous float64 array (m, num_servers, NUM_FEATURES), it
        also writes into feats[i] the feature matrix of LB node first_lb + i's frame,
        exactly `features.compute(obs, lb_w[first_lb + i], tau=tau)` on the observation
        `step()` would publish.  The frame's reservoir counts stay readable in `rn`
        until the next interval starts.
        """
        if feats is None:
            feats = self._no_features
        elif feats is not self._feats_ok:
            if not (
                type(feats) is np.ndarray
                and feats.ndim == 3
                and feats.dtype == _F64  # (equality: an unpickled array has its own dtype)
                and feats.flags.c_contiguous
            ):
                # (Anything else would compile another specialization of the kernel; the
                # kernel checks the shape.)
                raise ValueError("feats: expected a C-contiguous 3-d float64 numpy array")
            self._feats_ok = feats  # the environments pass the same array every step
            self._call = None  # (feats' type may differ: resolve the entry point again)
        if tau != self._tau_ok:
            features.check_tau(tau)
            self._tau_ok = tau = float(tau)
        if type(first_lb) is not int:
            first_lb = int(first_lb)  # (the entry point's type: a Python int)
        t_end = self.t + self.interval
        truth = np.empty((2, self.num_servers))
        args = (
            t_end, round(t_end * 1e9), self.interval, self._rtt, *self._state,
            truth, self._tau_ok, feats, first_lb,
        )  # fmt: skip
        if self._call is None:
            _interval(*args)
            self._call = _entry_point(_interval, args)
        else:
            self._call(*args)
        self.t = t_end
        self.frame_no += 1
        return truth

    def step(self, *, copy: bool = True) -> Step:
        """Advance one control interval and publish one observation per LB node.

        With copy=False the observations' arrays are views into the engine's
        state, valid only until the next step() (for the environments' hot path).
        """
        truth = self.advance()
        obs = tuple(self._observation(lb, copy) for lb in range(self.num_lbs))
        return Step(
            t=self.t,
            observations=obs,
            truth=GroundTruth(utilization=truth[0], queue=truth[1], capacities=self.capacities),
            completed=self.completed,
            rejected=self.rejected,
        )

    def _observation(self, lb: int, copy: bool) -> Observation:
        views = self._views[lb]
        return Observation(
            self.num_servers,
            round(self.t * 1e9),
            self.frame_no - 1,
            self.si[:, _UP] != 0,
            *(tuple(a.copy() for a in views) if copy else views),
        )

    def fct_counts(self, lb: int) -> np.ndarray:
        """LB node lb's FCT sample counts per server of the latest frame: a view that
        every interval refills."""
        return self._views[lb][4]

    def _lb_views(self, lb: int) -> tuple[np.ndarray, ...]:
        """LB node lb's Observation arrays from active_flows on, as views of the state."""
        r = slice(lb * self.num_servers, (lb + 1) * self.num_servers)
        return (
            self.lb_active[lb], self.lb_new[lb], self.lb_done[lb],
            self.rn[0, r], self.rn[1, r], self.rseen[0, r], self.rseen[1, r],
            self.rv[0, r], self.rt[0, r], self.rv[1, r], self.rt[1, r],
        )  # fmt: skip

    # -- reports ---------------------------------------------------------

    @property
    def capacities(self) -> np.ndarray:
        """The servers' current real capacities: workers × speed (a new array)."""
        return self.sf[:, _W] * self.sf[:, _SPEED]

    @property
    def active(self) -> np.ndarray:
        """bool[num_servers]: the servers taking new flows now (Observation.active)."""
        return self.si[:, _UP] != 0

    @property
    def completed(self) -> int:
        """Flows completed so far (all LBs)."""
        return int(self.counters[_C_COMPLETED])

    @property
    def rejected(self) -> int:
        return int(self.counters[_C_REJECTED])

    @property
    def totals(self) -> tuple[int, int]:
        """(completed, rejected) in one read."""
        c = self.counters.tolist()
        return c[_C_COMPLETED], c[_C_REJECTED]

    def fct(self) -> np.ndarray:
        """Completion time of every flow that has finished or was rejected, in arrival order."""
        done = ~np.isnan(self.f_fct)
        return self.f_fct[done]


class EngineBatch:
    """Engines of one scenario layout (server and LB counts, control interval, RTT),
    advanced one control interval each in one compiled call (the vector environments'
    hot path), on all cores with parallel=True (numba's threads; the engines share
    nothing, so the results are the same).  Engine i's arrays stay its own: the batch
    holds their state tuples in one typed list, so a call unboxes one object, not each
    engine's 24 arrays.  Their clocks (Engine.t, Engine.frame_no) are rows of the batch's
    arrays while they belong to it: they advance through the batch only."""

    def __init__(self, engines: Sequence[Engine], *, parallel: bool = True):
        if not engines:
            raise ValueError("engines: expected at least one engine")
        first = engines[0]
        self.num_servers, self.num_lbs = first.num_servers, first.num_lbs
        self.interval, self.rtt = first.interval, first._rtt
        self.engines = list(engines)
        self.parallel = parallel
        for e in self.engines:
            self._check(e)
        self._states: Any = None  # numba.typed.List of the engines' state tuples
        # Every engine's clock (Engine.t, Engine.frame_no) is a row of these, so one
        # interval moves them all in one operation.
        self._t = np.empty(len(self.engines))
        self._frames = np.empty(len(self.engines), dtype=np.int64)
        self._durations = np.empty(len(self.engines))
        for i, e in enumerate(self.engines):
            self._bind(i, e)
        self._scratch()

    def _check(self, e: Engine) -> None:
        layout = (e.num_servers, e.num_lbs, e.interval, e._rtt)
        if layout != (self.num_servers, self.num_lbs, self.interval, self.rtt):
            raise ValueError(
                "engines: expected one layout (servers, LB nodes, control interval, RTT) "
                f"{(self.num_servers, self.num_lbs, self.interval, self.rtt)}, got {layout}"
            )

    def __len__(self) -> int:
        return len(self.engines)

    def __setitem__(self, i: int, engine: Engine) -> None:
        """Engine i is now `engine` (a new episode); the one it replaces keeps its clock."""
        self._check(engine)
        old = self.engines[i]
        old._time, old._frames = old._time.copy(), old._frames.copy()
        self.engines[i] = engine
        self._bind(i, engine)
        if self._states is not None:
            _states_put(self._states, i, engine._state)

    def _bind(self, i: int, engine: Engine) -> None:
        """Engine i's clock becomes row i of the batch's (its values kept)."""
        self._t[i], self._frames[i] = engine.t, engine.frame_no
        self._durations[i] = engine.duration
        engine._time, engine._frames = self._t[i : i + 1], self._frames[i : i + 1]

    @property
    def t(self) -> np.ndarray:
        """Each engine's Engine.t (read-only view)."""
        view = self._t.view()
        view.flags.writeable = False
        return view

    @property
    def done(self) -> np.ndarray:
        """Each engine's Engine.done, as a new bool array."""
        return self._t >= self._durations - 1e-12

    def _scratch(self) -> None:
        self._t_end = np.empty(len(self.engines))
        self._ts = np.empty(len(self.engines))
        self._ts_ns = np.empty(len(self.engines), dtype=np.int64)
        self._all = np.ones(len(self.engines), dtype=np.bool_)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_states"] = None  # a typed list does not pickle: rebuilt from the engines
        for name in ("_t_end", "_ts", "_ts_ns", "_all"):  # scratch: rebuilt on unpickling
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # (The clock arrays come back as copies, perhaps read-only: bind the engines anew.)
        count = len(self.engines)
        self._t, self._frames = np.empty(count), np.empty(count, dtype=np.int64)
        self._durations = np.empty(count)
        for i, e in enumerate(self.engines):
            self._bind(i, e)
        self._scratch()

    def _typed_states(self) -> Any:
        if self._states is None:
            states = _states_of(self.engines[0]._state)
            for e in self.engines[1:]:
                _states_append(states, e._state)
            self._states = states
        return self._states

    def advance(
        self,
        feats: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        lb: int = 0,
        first_lb: int = 0,
        tau: float = features.DEFAULT_TAU,
        only: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every engine's `Engine.advance(feats[i], first_lb=first_lb, tau=tau)`, after
        `set_weights(lb, weights[i], checked=False)` if weights are given, in one call:
        the same results bit for bit.  feats is C-contiguous float64 (N, m, n, 12);
        returns truth (N, 2, n), totals (N, 2): (completed, rejected) per engine, and
        n_fct (N, n): LB node first_lb's `fct_counts`.  With `only`, a bool (N,) mask,
        just those engines advance (the others' rows of truth are undefined, of totals and
        n_fct zero, and their feats and state stay as they were)."""
        n, count = self.num_servers, len(self.engines)
        if not (
            type(feats) is np.ndarray and feats.dtype == _F64 and feats.flags.c_contiguous
            and feats.ndim == 4 and feats.shape[0] == count
        ):  # fmt: skip
            raise ValueError(f"feats: expected a C-contiguous float64 ({count}, m, {n}, 12) array")
        features.check_tau(tau)
        wlb = -1
        if weights is not None:
            if weights.shape != (count, n) or weights.dtype != _F64:
                raise ValueError(f"weights: expected float64 ({count}, {n}), got {weights.shape}")
            if any(e._rules[lb] == "wcmp" for e in self.engines):  # its alias tables
                for e, w in zip(self.engines, weights, strict=True):
                    e.set_weights(lb, w, checked=False)
            else:
                wlb = lb
        # As Engine.advance: t_end = t + interval, its ns rounded half to even (exact
        # integers in float64: the cast to int64 keeps them).
        np.add(self._t, self.interval, out=self._t_end)
        np.rint(np.multiply(self._t_end, 1e9, out=self._ts), out=self._ts)
        self._ts_ns[:] = self._ts
        truth = np.empty((count, 2, n))
        totals = np.zeros((count, 2), dtype=np.int64)  # (zero for engines not in `only`)
        n_fct = np.zeros((count, n), dtype=np.int64)
        if not 0 <= first_lb < self.num_lbs:
            raise ValueError(f"first_lb: expected 0..{self.num_lbs - 1}, got {first_lb}")
        if only is None:
            only = self._all
        elif only.shape != (count,) or only.dtype != np.bool_:
            raise ValueError(
                f"only: expected a bool ({count},) mask, got {only.dtype} {only.shape}"
            )
        kernel = _intervals_parallel if self.parallel and count > 1 else _intervals
        kernel(
            self._t_end, self._ts_ns, self.interval, self.rtt, self._typed_states(),
            weights if weights is not None else np.empty((count, n)), wlb, truth, totals,
            n_fct, float(tau), feats, int(first_lb), only,
        )  # fmt: skip
        np.copyto(self._t, self._t_end, where=only)  # (the engines' clocks are views)
        self._frames += only
        return truth, totals, n_fct


def compile_kernels() -> None:
    """Compile (or load from numba's cache) every kernel a run uses, on a tiny run.

    Data-plane processes call this before they create their regions, so the
    seconds numba may need on a cold cache never stall a published stream.
    """
    from marllbd.sim.scenario import from_dict

    tiny = from_dict(
        {"servers": {"workers": [1, 2]}, "duration": 0.5, "control_interval": 0.25},
        source="<compile_kernels>",
    )
    for rule in D.DISPATCH_NAMES:
        Engine(tiny, rule=rule).step()
