"""Flow-level discrete-event simulation of load balancers in front of PS servers.

Model (one control interval at a time, compiled with numba):
- The edge router spreads flows over the LB nodes by ECMP on the flow hash.
- Each LB node dispatches its new flows with its rule and weights (the same
  njit functions as marllbd.dataplane.dispatch, the Python twin of the C data
  path) over its *own* view: the flows it dispatched that have not finished.
- Each server is multi-worker processor sharing: up to workers × mp_level flows
  in service, each progressing at min(workers / in_service, 1); further flows
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

import numba
import numpy as np

from marllbd.dataplane import dispatch as D
from marllbd.dataplane.reservoir import make_rng_state, reservoir_add
from marllbd.sim.scenario import Scenario, build_trace
from marllbd.sim.traces import Trace

REJECT_PENALTY = 40.0
"""Seconds charged to a rejected flow (MARLLB's client timeout)."""

RULE_CODES = {"sed": 0, "wcmp": 1, "ecmp": 2, "lsq": 3, "lsq2": 4, "sed2": 5, "gsq": 6}
"""Dispatch rules the engine runs; gsq (global shortest queue) is a simulator-only oracle."""

_FAULT_CODES = {"down": 0, "up": 1, "capacity": 2}
_HASH_STREAM = 1  # SeedSequence spawn keys: trace 0 (scenario.TRACE_STREAM), hashes 1, reservoirs 2
_RES_STREAM = 2

# Column indices of the per-server float state.
_W, _V, _LAST, _BUSY = 0, 1, 2, 3
# Column indices of the per-server integer state.
_SLOTS, _MP, _BCAP, _NSERV, _BHEAD, _BLEN, _UP = 0, 1, 2, 3, 4, 5, 6
# Counters.
_C_NEXT_FLOW, _C_NEXT_FAULT, _C_REJECTED, _C_COMPLETED, _C_TABLES_DIRTY = 0, 1, 2, 3, 4


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def _advance(sf: np.ndarray, si: np.ndarray, s: int, t: float) -> None:  # pragma: no cover
    """Bring server s's virtual clock and busy integral up to time t."""
    dt = t - sf[s, _LAST]
    if dt > 0.0:
        n = si[s, _NSERV]
        if n > 0:
            w = sf[s, _W]
            rate = min(w / n, 1.0)
            sf[s, _V] += dt * rate
            sf[s, _BUSY] += dt * min(n, w) / w
        sf[s, _LAST] = t


@numba.njit(cache=True)
def _admit(sf, si, hf, hid, f_start, work, s, flow, t):  # type: ignore[no-untyped-def]  # pragma: no cover
    n = si[s, _NSERV]
    _heap_push(hf, hid, s, n, sf[s, _V] + work[flow], flow)
    si[s, _NSERV] = n + 1
    f_start[flow] = t


@numba.njit(cache=True)
def _rebuild_tables(si, lb_w, al_prob, al_alias, maglev):  # type: ignore[no-untyped-def]  # pragma: no cover
    up = si[:, _UP].astype(np.uint8)
    for lb in range(lb_w.shape[0]):
        prob, alias = D.alias_build(lb_w[lb], up)
        al_prob[lb] = prob
        al_alias[lb] = alias
    maglev[:] = D.maglev_build(up, maglev.shape[0])


@numba.njit(cache=True)
def _run(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t_end,
    arrival,
    work,
    fhash,
    f_lb,
    f_server,
    f_start,
    f_done,
    f_fct,
    rtt,
    sf,
    si,
    hf,
    hid,
    bq,
    lb_rule,
    lb_w,
    lb_active,
    lb_new,
    lb_done,
    al_prob,
    al_alias,
    maglev,
    rv,
    rt,
    rn,
    rseen,
    rng,
    fault_t,
    fault_s,
    fault_kind,
    fault_val,
    counters,
):
    """Process every event with time <= t_end; then bring all servers to t_end."""
    n_srv = sf.shape[0]
    n_flows = arrival.shape[0]
    up = si[:, _UP].astype(np.uint8)
    while True:
        nf = counters[_C_NEXT_FLOW]
        t_arr = arrival[nf] if nf < n_flows else np.inf
        nft = counters[_C_NEXT_FAULT]
        t_fault = fault_t[nft] if nft < fault_t.shape[0] else np.inf
        t_cmp = np.inf
        s_cmp = -1
        for s in range(n_srv):
            n = si[s, _NSERV]
            if n > 0:
                rate = min(sf[s, _W] / n, 1.0)
                t = sf[s, _LAST] + max(hf[s, 0] - sf[s, _V], 0.0) / rate
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
            reservoir_add(
                rv[1], rt[1], rn[1], rseen[1], lb * n_srv + s, fct, np.uint64(t_cmp * 1e9), rng
            )
            # Admit from the backlog while slots are free (capacity may have grown).
            while si[s, _BLEN] > 0 and si[s, _NSERV] < si[s, _SLOTS]:
                head = si[s, _BHEAD]
                nxt = bq[s, head]
                si[s, _BHEAD] = (head + 1) % bq.shape[1]
                si[s, _BLEN] -= 1
                _admit(sf, si, hf, hid, f_start, work, s, nxt, t_cmp)
        elif t_fault <= t_arr:
            s = fault_s[nft]
            kind = fault_kind[nft]
            counters[_C_NEXT_FAULT] = nft + 1
            if kind == 0 or kind == 1:
                si[s, _UP] = 1 if kind == 1 else 0
                up[s] = si[s, _UP]
                _rebuild_tables(si, lb_w, al_prob, al_alias, maglev)
            else:
                _advance(sf, si, s, t_fault)
                sf[s, _W] = fault_val[nft]
                si[s, _SLOTS] = np.int64(fault_val[nft]) * si[s, _MP]
                while si[s, _BLEN] > 0 and si[s, _NSERV] < si[s, _SLOTS]:
                    head = si[s, _BHEAD]
                    nxt = bq[s, head]
                    si[s, _BHEAD] = (head + 1) % bq.shape[1]
                    si[s, _BLEN] -= 1
                    _admit(sf, si, hf, hid, f_start, work, s, nxt, t_fault)
        else:
            flow = nf
            counters[_C_NEXT_FLOW] = nf + 1
            lb = f_lb[flow]
            h = fhash[flow]
            rule = lb_rule[lb]
            if rule == 0:
                s = D.sed_pick(lb_active[lb], lb_w[lb], up)
            elif rule == 1:
                s = D.alias_pick(al_prob[lb], al_alias[lb], h)
            elif rule == 2:
                s = D.maglev_pick(maglev, h)
            elif rule == 3:
                s = D.lsq_pick(lb_active[lb], up)
            elif rule == 4:
                s = D.p2_pick(lb_active[lb], lb_w[lb], up, h, False)
            elif rule == 5:
                s = D.p2_pick(lb_active[lb], lb_w[lb], up, h, True)
            else:
                # Oracle: fewest flows per worker on the real servers, ties to the lowest index.
                s = -1
                best = np.inf
                for i in range(n_srv):
                    if si[i, _UP] != 0:
                        score = (si[i, _NSERV] + si[i, _BLEN] + 1) / sf[i, _W]
                        if score < best:
                            best = score
                            s = i
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


@numba.njit(cache=True)
def _sample_ages(t, arrival, f_lb, si, hid, bq, rv, rt, rn, rseen, rng):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Offer the age of every active flow to its LB's duration reservoir for its server."""
    t_ns = np.uint64(t * 1e9)
    n = si.shape[0]
    values, stamps, counts, seen = rv[0], rt[0], rn[0], rseen[0]
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
class GroundTruth:
    """What the servers really did over the last interval (for reports and oracles)."""

    utilization: np.ndarray  # float64[n]: busy fraction of the workers
    queue: np.ndarray  # float64[n]: flows in service + backlog at the interval's end
    capacities: np.ndarray  # float64[n]: current real workers


@dataclass(frozen=True)
class Step:
    """The result of advancing one control interval."""

    t: float
    observations: tuple[Observation, ...]  # one per LB node
    truth: GroundTruth
    completed: int  # flows completed so far (all LBs)
    rejected: int


def _view(a: np.ndarray) -> np.ndarray:
    return a


def _flow_hashes(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_HASH_STREAM,)))
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)


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
    ):
        self.scenario = scenario
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
            if r not in RULE_CODES:
                raise ValueError(
                    f"unknown dispatch rule {r!r}: expected one of {', '.join(RULE_CODES)}"
                )
        self.reset()

    def reset(self) -> None:
        sc, n, nl, k = self.scenario, self.num_servers, self.num_lbs, self.scenario.reservoir_k
        tr = self.trace
        nflows = tr.arrival.shape[0]
        self.arrival = np.ascontiguousarray(tr.arrival, dtype=np.float64)
        self.work = np.ascontiguousarray(tr.work, dtype=np.float64)
        self.fhash = _flow_hashes(sc.seed, nflows)
        # The edge router: ECMP over LB nodes on the high bits of the flow hash.
        self.f_lb = ((self.fhash >> np.uint64(40)) % np.uint64(nl)).astype(np.int64)
        self.f_server = np.full(nflows, -1, dtype=np.int64)
        self.f_start = np.full(nflows, np.nan)
        self.f_done = np.full(nflows, np.nan)
        self.f_fct = np.full(nflows, np.nan)

        workers = np.array([s.workers for s in sc.servers], dtype=np.float64)
        mp = np.array([s.mp_level for s in sc.servers], dtype=np.int64)
        bcap = np.array([s.backlog for s in sc.servers], dtype=np.int64)
        max_workers = workers.copy()
        for f in sc.faults:
            if f.kind == "capacity" and f.workers is not None:
                max_workers[f.server] = max(max_workers[f.server], f.workers)
        self.static_capacities = workers.copy()
        self.sf = np.zeros((n, 4))
        self.sf[:, _W] = workers
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
        self.lb_w = np.tile(workers, (nl, 1))
        self.lb_active = np.zeros((nl, n), dtype=np.uint64)
        self.lb_new = np.zeros((nl, n), dtype=np.uint64)
        self.lb_done = np.zeros((nl, n), dtype=np.uint64)
        self.al_prob = np.zeros((nl, n), dtype=np.uint32)
        self.al_alias = np.zeros((nl, n), dtype=np.int32)
        self.maglev = np.zeros(self._maglev_size, dtype=np.int32)

        # Reservoirs per quantity (0 duration, 1 FCT), one per (LB, server) at lb * n + s.
        self.rv = np.zeros((2, nl * n, k))
        self.rt = np.zeros((2, nl * n, k), dtype=np.uint64)
        self.rn = np.zeros((2, nl * n), dtype=np.int64)
        self.rseen = np.zeros((2, nl * n), dtype=np.int64)
        self._rn_spare = np.zeros_like(self.rn)
        self._rseen_spare = np.zeros_like(self.rseen)
        res_seed = np.random.SeedSequence(sc.seed, spawn_key=(_RES_STREAM,)).generate_state(1)
        self.rng = make_rng_state(int(res_seed[0]))

        faults = sorted(sc.faults, key=lambda f: f.time)
        self.fault_t = np.array([f.time for f in faults], dtype=np.float64)
        self.fault_s = np.array([f.server for f in faults], dtype=np.int64)
        self.fault_kind = np.array([_FAULT_CODES[f.kind] for f in faults], dtype=np.int64)
        self.fault_val = np.array([float(f.workers or 0) for f in faults], dtype=np.float64)
        self.counters = np.zeros(5, dtype=np.int64)
        self.t = 0.0
        self.frame_no = 0
        _rebuild_tables(self.si, self.lb_w, self.al_prob, self.al_alias, self.maglev)

    # -- control ---------------------------------------------------------

    def set_weights(self, lb: int, weights: np.ndarray) -> None:
        """Weights for LB node `lb`'s new flows from now on (finite, > 0)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.num_servers,):
            raise ValueError(f"weights: expected shape ({self.num_servers},), got {w.shape}")
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError(f"weights: expected finite values > 0, got {w}")
        self.lb_w[lb] = w
        if self.lb_rule[lb] == RULE_CODES["wcmp"]:
            prob, alias = D.alias_build(self.lb_w[lb], self.si[:, _UP].astype(np.uint8))
            self.al_prob[lb] = prob
            self.al_alias[lb] = alias

    def set_rule(self, lb: int, rule: str) -> None:
        if rule not in RULE_CODES:
            raise ValueError(
                f"unknown dispatch rule {rule!r}: expected one of {', '.join(RULE_CODES)}"
            )
        self._rules[lb] = rule
        self.lb_rule[lb] = RULE_CODES[rule]
        self.set_weights(lb, self.lb_w[lb])

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

    def step(self, *, copy: bool = True) -> Step:
        """Advance one control interval and publish one observation per LB node.

        With copy=False the observations' arrays are views into the engine's
        state, valid only until the next step() (for the environments' hot path).
        """
        t_end = self.t + self.interval
        _run(
            t_end, self.arrival, self.work, self.fhash, self.f_lb, self.f_server, self.f_start,
            self.f_done, self.f_fct, self.scenario.rtt,
            self.sf, self.si, self.hf, self.hid, self.bq,
            self.lb_rule, self.lb_w, self.lb_active, self.lb_new, self.lb_done,
            self.al_prob, self.al_alias, self.maglev,
            self.rv, self.rt, self.rn, self.rseen, self.rng,
            self.fault_t, self.fault_s, self.fault_kind, self.fault_val, self.counters,
        )  # fmt: skip
        _sample_ages(t_end, self.arrival, self.f_lb, self.si, self.hid, self.bq,
                     self.rv, self.rt, self.rn, self.rseen, self.rng)  # fmt: skip
        self.t = t_end
        obs = tuple(self._observation(lb, copy) for lb in range(self.num_lbs))
        truth = GroundTruth(
            utilization=self.sf[:, _BUSY] / self.interval,
            queue=(self.si[:, _NSERV] + self.si[:, _BLEN]).astype(np.float64),
            capacities=self.sf[:, _W].copy(),
        )
        self.sf[:, _BUSY] = 0.0
        # A new publication window: the next step's reservoirs start empty.
        # (Views handed out with copy=False keep their counts in the spare buffers.)
        self.rn, self._rn_spare = self._rn_spare, self.rn
        self.rseen, self._rseen_spare = self._rseen_spare, self.rseen
        self.rn[:] = 0
        self.rseen[:] = 0
        self.frame_no += 1
        return Step(
            t=t_end,
            observations=obs,
            truth=truth,
            completed=int(self.counters[_C_COMPLETED]),
            rejected=int(self.counters[_C_REJECTED]),
        )

    def _observation(self, lb: int, copy: bool) -> Observation:
        c = np.copy if copy else _view
        r = slice(lb * self.num_servers, (lb + 1) * self.num_servers)
        return Observation(
            num_servers=self.num_servers,
            ts_ns=round(self.t * 1e9),
            frame_no=self.frame_no,
            active=self.si[:, _UP] != 0,
            active_flows=c(self.lb_active[lb]),
            new_flows=c(self.lb_new[lb]),
            completed_flows=c(self.lb_done[lb]),
            n_dur=c(self.rn[0, r]),
            n_fct=c(self.rn[1, r]),
            dur_seen=c(self.rseen[0, r]),
            fct_seen=c(self.rseen[1, r]),
            dur_values=c(self.rv[0, r]),
            dur_t_ns=c(self.rt[0, r]),
            fct_values=c(self.rv[1, r]),
            fct_t_ns=c(self.rt[1, r]),
        )

    # -- reports ---------------------------------------------------------

    @property
    def rejected(self) -> int:
        return int(self.counters[_C_REJECTED])

    def fct(self) -> np.ndarray:
        """Completion time of every flow that has finished or was rejected, in arrival order."""
        done = ~np.isnan(self.f_fct)
        return self.f_fct[done]


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
    for rule in RULE_CODES:
        Engine(tiny, rule=rule).step()
