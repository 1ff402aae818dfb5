"""Per-new-flow server selection rules: the Python twin of vpp-plugin/src/dispatch.c.

Each rule is a scalar-loop `numba.njit` function so the simulator's compiled
engine can call it from its own njit loop; plain Python calls work too.  The
float operations and their order match the C code exactly (the conformance
test proves it), and so do these rules, part of DESIGN contract 2:

- eligible for SED, sed2 and WCMP: ``up[i] != 0`` and ``weight[i]`` finite and
  > 0; for LSQ, lsq2 and Maglev: ``up[i] != 0``.  No eligible server: -1.
- SED score ``(float64(active[i]) + 1.0) / weight[i]``; argmin by a strict
  ``<`` over ascending index, so ties go to the lowest index.
- peak-ewma and prequal keep state between picks in numpy record arrays laid out as the
  C structs (PEAK_EWMA_DTYPE, PROBE_DTYPE); their exact rules are in the functions'
  docstrings and marllb_dispatch.h.
- flow hashes are 64-bit unsigned; pass ``np.uint64``.  A Python int works
  only below 2**63: numba types it as int64, and the signature it compiled
  first decides whether a larger one overflows.  ``lo32 = hash & 0xffffffff``, ``hi32 = hash >> 32``
  and ``below(x, k) = (x * k) >> 32`` in uint64 arithmetic.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_COLUMN = np.uint64(1 << 32)  # mass of one alias column, in threshold units
_FULL = np.uint32(0xFFFFFFFF)  # threshold of a full column (alias is itself)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)

PEAK_EWMA_DTYPE = np.dtype([("ewma", np.float64), ("stamp_ns", np.uint64)])
"""One server's peak-EWMA state (marllb_peak_ewma_t): ewma < 0 means no sample yet."""
PEAK_EWMA_NONE = -1.0
PEAK_EWMA_PENALTY = 1e30
"""The cost of a server without a sample that has active flows (Finagle's penalty)."""
PROBE_DTYPE = np.dtype(
    [
        ("t_ns", np.uint64),
        ("latency", np.float64),
        ("rif", np.uint32),
        ("server", np.int32),
        ("uses", np.uint32),
        ("reserved", np.uint32),
    ]
)
"""One Prequal probe result (marllb_probe_t); server < 0 is an empty slot."""
PREQUAL_MAX_POOL = 32
"""The most probe slots a pool may have (the pick's hot mask is 32 bits)."""


class DispatchRule(enum.StrEnum):
    """The data plane's dispatch rules by the names configs and the command line use.

    With ORACLE_RULES below, the one list of rule names: every other list of them
    (DISPATCH_NAMES, the engine's rule codes, what a scenario accepts) derives from it,
    and tests/dataplane/test_dispatch_conformance.py checks that each has a C twin."""

    SED = "sed"  # shortest expected delay over weights
    WCMP = "wcmp"  # weighted random, alias method
    ECMP = "ecmp"  # Maglev consistent hashing, weights ignored
    LSQ = "lsq"  # least active flows, weights ignored
    LSQ2 = "lsq2"  # power of two choices by active flows
    SED2 = "sed2"  # power of two choices by SED score
    PEAK_EWMA = "peak-ewma"  # power of two choices by (active + 1) x peak EWMA of FCT / weight
    PREQUAL = "prequal"  # hot-cold lexicographic pick from a pool of server probes
    PREQUAL_W = "prequal-w"  # prequal with each probe's latency over its server's weight


RULE_NAMES: tuple[str, ...] = tuple(rule.value for rule in DispatchRule)
"""The data plane's rules (what a scenario's `dispatch` may be)."""

GSQ = "gsq"
"""Global shortest queue: each new flow goes to the server with the fewest queued flows
per unit of real capacity, over all LB nodes (simulator only: it needs the servers' state)."""
ORACLE_RULES: tuple[str, ...] = (GSQ,)
"""Rules only the simulator can apply."""
DISPATCH_NAMES: tuple[str, ...] = (*RULE_NAMES, *ORACLE_RULES)
"""Every rule a policy's `dispatch` may name: the data plane's, then the oracles."""


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


@dataclass(frozen=True)
class RuleParams:
    """The stateful rules' parameters (one set per engine or data plane).

    Defaults: tau is Finagle's default decay time (10 s; on a degraded 8-server run
    with flows of 0.1 s, 0.1 .. 3 s did worse); Prequal's pool of 16 probes and Q_RIF
    0.84 are the paper's, the probe rate, age and reuse limits ours, chosen on paper-24
    (fresher probes help: 3 per flow used twice beat 2 per flow used 4 times).
    """

    peak_ewma_tau: float = 10.0
    """Seconds: the time constant of peak-ewma's decay (w = exp(-dt / tau))."""
    prequal_pool: int = 16
    """Probe slots per LB node (1 .. PREQUAL_MAX_POOL)."""
    prequal_probes: float = 3.0
    """Probes sent per new flow; a fractional part is a probability (0 .. 16)."""
    prequal_q_rif: float = 0.84
    """The in-flight quantile above which a probe is hot (0 .. 1)."""
    prequal_max_age: float = 0.5
    """Seconds after which a probe is dropped."""
    prequal_max_uses: int = 2
    """Flows one probe may route before it is dropped (>= 1)."""

    def __post_init__(self) -> None:
        checks = (
            ("peak_ewma_tau", self.peak_ewma_tau, math.isfinite(self.peak_ewma_tau)
             and self.peak_ewma_tau > 0, "a finite number > 0"),
            ("prequal_pool", self.prequal_pool, _is_int(self.prequal_pool)
             and 1 <= self.prequal_pool <= PREQUAL_MAX_POOL,
             f"an integer in 1 .. {PREQUAL_MAX_POOL}"),
            ("prequal_probes", self.prequal_probes, 0.0 <= self.prequal_probes <= 16.0,
             "a number in 0 .. 16"),
            ("prequal_q_rif", self.prequal_q_rif, 0.0 <= self.prequal_q_rif <= 1.0,
             "a number in 0 .. 1"),
            ("prequal_max_age", self.prequal_max_age, math.isfinite(self.prequal_max_age)
             and self.prequal_max_age > 0, "a finite number > 0"),
            ("prequal_max_uses", self.prequal_max_uses, _is_int(self.prequal_max_uses)
             and 1 <= self.prequal_max_uses < 2**32,
             "an integer >= 1"),
        )  # fmt: skip
        for key, value, ok, want in checks:
            if not ok:
                raise ValueError(f"rule params: {key} = {value!r}, expected {want}")


def parse_rule(name: str) -> DispatchRule:
    """The rule called `name`; ValueError naming it and the valid names otherwise."""
    try:
        return DispatchRule(name)
    except ValueError:
        raise ValueError(
            f"unknown dispatch rule {name!r}: expected one of {', '.join(RULE_NAMES)}"
        ) from None


def check_dispatch_name(name: str) -> str:
    """`name` if it is in DISPATCH_NAMES; ValueError naming it and the valid names otherwise."""
    if name not in DISPATCH_NAMES:
        raise ValueError(
            f"unknown dispatch rule {name!r}: expected one of {', '.join(DISPATCH_NAMES)}"
        )
    return name


@numba.njit(cache=True)
def _weight_ok(w: float) -> bool:
    return math.isfinite(w) and w > 0.0


@numba.njit(cache=True)
def _sed_score(active: int, weight: float) -> float:
    return (np.float64(active) + 1.0) / weight


@numba.njit(cache=True)
def _below(x32: np.uint64, k: int) -> np.int64:
    """Index in [0, k) from a 32-bit value by multiply-shift."""
    return np.int64((x32 * np.uint64(k)) >> _SHIFT32)


@numba.njit(cache=True)
def sed_pick(
    active: npt.NDArray[np.uint64], weight: npt.NDArray[np.float64], up: npt.NDArray[np.uint8]
) -> int:
    """SED: argmin (active + 1) / weight over eligible servers; -1 if none."""
    n = len(up)
    if len(active) != n or len(weight) != n:
        raise ValueError("sed_pick: active, weight and up must have the same length")
    best = -1
    best_score = 0.0
    for i in range(n):
        if up[i] == 0 or not _weight_ok(weight[i]):
            continue
        s = _sed_score(active[i], weight[i])
        if best < 0 or s < best_score:
            best = i
            best_score = s
    return best


@numba.njit(cache=True)
def lsq_pick(active: npt.NDArray[np.uint64], up: npt.NDArray[np.uint8]) -> int:
    """LSQ: argmin active over up servers, lowest index on ties; -1 if none is up."""
    n = len(up)
    if len(active) != n:
        raise ValueError("lsq_pick: active and up must have the same length")
    best = -1
    for i in range(n):
        if up[i] != 0 and (best < 0 or active[i] < active[best]):
            best = i
    return best


@numba.njit(cache=True)
def _p2_eligible(
    weight: npt.NDArray[np.float64], up: npt.NDArray[np.uint8], i: int, use_sed: bool
) -> bool:
    return up[i] != 0 and (not use_sed or _weight_ok(weight[i]))


@numba.njit(cache=True)
def _p2_pair(
    weight: npt.NDArray[np.float64], up: npt.NDArray[np.uint8], h: np.uint64, use_sed: bool
) -> tuple[int, int]:
    """p2_pick's two candidates (lo <= hi, equal for one eligible server); (-1, -1) if none."""
    n = len(up)
    n_ok = 0
    for i in range(n):
        if _p2_eligible(weight, up, i, use_sed):
            n_ok += 1
    if n_ok == 0:
        return -1, -1
    r_lo = np.int64(0)
    r_hi = np.int64(0)
    if n_ok > 1:
        r1 = _below(h & _MASK32, n_ok)
        r2 = _below(h >> _SHIFT32, n_ok - 1)
        if r2 >= r1:
            r2 += 1
        r_lo = min(r1, r2)
        r_hi = max(r1, r2)
    lo = 0
    hi = 0
    rank = 0
    for i in range(n):
        if not _p2_eligible(weight, up, i, use_sed):
            continue
        if rank == r_lo:
            lo = i
        if rank == r_hi:
            hi = i
            break
        rank += 1
    return lo, hi


@numba.njit(cache=True)
def p2_pick(
    active: npt.NDArray[np.uint64],
    weight: npt.NDArray[np.float64],
    up: npt.NDArray[np.uint8],
    flow_hash: np.uint64,
    use_sed: bool,
) -> int:
    """Power of two choices: two distinct eligible servers from the hash, the better wins.

    Ranks r1 = below(lo32, k), r2 = below(hi32, k - 1) + (1 if >= r1) among the
    k eligible servers by index; better = lower SED score (use_sed) or fewer
    active flows, ties to the lower index; one eligible server is the pick.
    """
    n = len(up)
    if len(active) != n or len(weight) != n:
        raise ValueError("p2_pick: active, weight and up must have the same length")
    lo, hi = _p2_pair(weight, up, np.uint64(flow_hash), use_sed)
    if lo < 0:
        return -1
    if use_sed:
        hi_better = _sed_score(active[hi], weight[hi]) < _sed_score(active[lo], weight[lo])
    else:
        hi_better = active[hi] < active[lo]
    return hi if hi_better else lo


def peak_ewma_state(n: int) -> npt.NDArray[np.void]:
    """n servers' peak-EWMA state with no sample yet (marllb_peak_ewma_init)."""
    state = np.zeros(n, dtype=PEAK_EWMA_DTYPE)
    state["ewma"] = PEAK_EWMA_NONE
    return state


@numba.njit(cache=True)
def _decay_weight(stamp_ns: np.uint64, now_ns: np.uint64, tau_ns: float) -> float:
    """exp(-(now - stamp) / tau); 1 when now is not after stamp."""
    if now_ns <= stamp_ns:
        return 1.0
    dt = np.float64(now_ns - stamp_ns)
    return math.exp(-dt / tau_ns)


@numba.njit(cache=True)
def peak_ewma_update(
    state: npt.NDArray[np.void], s: int, sample: float, now_ns: np.uint64, tau_ns: float
) -> None:
    """Server s completed a flow of duration `sample` at now_ns (Finagle's peak EWMA).

    The EWMA jumps to the sample when it has none or the sample exceeds it, else
    becomes ewma * w + sample * (1 - w) with w = exp(-dt / tau_ns), dt the time since
    the last update; the stamp becomes now_ns.
    """
    now = np.uint64(now_ns)
    e = state[s]
    if e.ewma < 0.0 or sample > e.ewma:
        e.ewma = sample
    else:
        w = _decay_weight(e.stamp_ns, now, tau_ns)
        e.ewma = e.ewma * w + sample * (1.0 - w)
    e.stamp_ns = now


@numba.njit(cache=True)
def _peak_ewma_cost(active: np.uint64, weight: float, ewma: float) -> float:
    """(active + 1) x ewma / weight: the cost before its decay."""
    return (np.float64(active) + 1.0) * ewma / weight


@numba.njit(cache=True)
def _peak_ewma_unsampled(active: np.uint64, weight: float) -> float:
    """A server without a sample: 0 when idle, else the penalty, over its weight."""
    cost = 0.0 if active == 0 else PEAK_EWMA_PENALTY + np.float64(active)
    return cost / weight


@numba.njit(cache=True)
def peak_ewma_pick(
    active: npt.NDArray[np.uint64],
    weight: npt.NDArray[np.float64],
    up: npt.NDArray[np.uint8],
    state: npt.NDArray[np.void],
    flow_hash: np.uint64,
    now_ns: np.uint64,
    tau_ns: float,
) -> int:
    """Peak-EWMA power of two choices (Finagle / Linkerd's P2C least loaded).

    The candidates are sed2's (p2_pick with use_sed); each scores (active + 1) x ewma /
    weight decayed to now_ns (x exp(-dt / tau_ns), read only, as Finagle decays at read
    time), or for a server without a sample (0 if it has no active flow, else
    PEAK_EWMA_PENALTY + active) / weight.  Dividing by the weight keeps configured
    capacities in play: of two servers equally fast per flow, the bigger takes more.
    Lower wins, ties to the lower index; -1 if none eligible.  When both have samples
    the fresher stamp's decay to now is a common factor, so only the older cost is
    decayed, by the stamps' difference (stamps after now count as now): one exp.
    """
    n = len(up)
    if len(active) != n or len(weight) != n or len(state) != n:
        raise ValueError("peak_ewma_pick: active, weight, up and state must have one length")
    now = np.uint64(now_ns)
    lo, hi = _p2_pair(weight, up, np.uint64(flow_hash), True)
    if lo < 0:
        return -1
    if lo == hi:
        return lo
    e_lo, e_hi = state[lo], state[hi]
    if e_lo.ewma >= 0.0 and e_hi.ewma >= 0.0:
        # Both decayed to now share the fresher stamp's decay: decay only the older
        # cost, by the stamps' difference (one exp).
        t_lo = min(e_lo.stamp_ns, now)
        t_hi = min(e_hi.stamp_ns, now)
        s_lo = _peak_ewma_cost(active[lo], weight[lo], e_lo.ewma)
        s_hi = _peak_ewma_cost(active[hi], weight[hi], e_hi.ewma)
        if t_hi > t_lo:
            s_lo = s_lo * _decay_weight(t_lo, t_hi, tau_ns)
        elif t_lo > t_hi:
            s_hi = s_hi * _decay_weight(t_hi, t_lo, tau_ns)
    else:
        if e_lo.ewma < 0.0:
            s_lo = _peak_ewma_unsampled(active[lo], weight[lo])
        else:
            s_lo = _peak_ewma_cost(active[lo], weight[lo], e_lo.ewma) * _decay_weight(
                e_lo.stamp_ns, now, tau_ns
            )
        if e_hi.ewma < 0.0:
            s_hi = _peak_ewma_unsampled(active[hi], weight[hi])
        else:
            s_hi = _peak_ewma_cost(active[hi], weight[hi], e_hi.ewma) * _decay_weight(
                e_hi.stamp_ns, now, tau_ns
            )
    return hi if s_hi < s_lo else lo


@numba.njit(cache=True)
def _probe_ok(
    p: Any,
    up: npt.NDArray[np.uint8],
    weight: npt.NDArray[np.float64],
    scaled: bool,
    now: np.uint64,
    max_age_ns: np.uint64,
    max_uses: int,
) -> bool:
    if p.server < 0 or p.server >= len(up) or p.uses >= max_uses:
        return False
    if not _p2_eligible(weight, up, p.server, scaled):
        return False
    return now <= p.t_ns or now - p.t_ns <= max_age_ns


@numba.njit(cache=True)
def _probe_score(p: Any, weight: npt.NDArray[np.float64], scaled: bool) -> float:
    """A probe's latency, over its server's weight when the pick is scaled."""
    return p.latency / weight[p.server] if scaled else p.latency


@numba.njit(cache=True)
def _prequal(
    pool: npt.NDArray[np.void],
    up: npt.NDArray[np.uint8],
    weight: npt.NDArray[np.float64],
    scaled: bool,
    flow_hash: np.uint64,
    now_ns: np.uint64,
    max_age_ns: np.uint64,
    q_rif: float,
    max_uses: int,
) -> int:
    """prequal_pick (scaled False; weight unread) and prequal_w_pick (scaled True)."""
    size = min(len(pool), PREQUAL_MAX_POOL)
    n = len(up)
    if scaled and len(weight) != n:
        raise ValueError("prequal_w_pick: weight and up must have the same length")
    now = np.uint64(now_ns)
    age = np.uint64(max_age_ns)
    m = 0
    best = -1
    best_score = 0.0
    for i in range(size):
        if not _probe_ok(pool[i], up, weight, scaled, now, age, max_uses):
            pool[i].server = -1
            continue
        m += 1
        score = _probe_score(pool[i], weight, scaled)
        if best < 0 or score < best_score:
            best = i
            best_score = score
    if m == 0:
        n_ok = 0
        for i in range(n):
            if _p2_eligible(weight, up, i, scaled):
                n_ok += 1
        if n_ok == 0:
            return -1
        r = _below(np.uint64(flow_hash) & _MASK32, n_ok)
        for i in range(n):
            if _p2_eligible(weight, up, i, scaled):
                if r == 0:
                    return i
                r -= 1
    j = int(q_rif * np.float64(m - 1))
    hot = 0
    while True:
        below_best = 0
        for i in range(size):
            if pool[i].server >= 0 and pool[i].rif < pool[best].rif:
                below_best += 1
        if below_best <= j:
            break
        hot |= 1 << best
        best = -1
        for i in range(size):
            if pool[i].server >= 0 and (hot >> i) & 1 == 0:
                score = _probe_score(pool[i], weight, scaled)
                if best < 0 or score < best_score:
                    best = i
                    best_score = score
    p = pool[best]
    server = int(p.server)
    p.rif += np.uint32(1)
    p.uses += np.uint32(1)
    if p.uses >= max_uses:
        p.server = -1
    return server


_NO_WEIGHT = np.zeros(0)


@numba.njit(cache=True)
def prequal_pick(
    pool: npt.NDArray[np.void],
    up: npt.NDArray[np.uint8],
    flow_hash: np.uint64,
    now_ns: np.uint64,
    max_age_ns: np.uint64,
    q_rif: float,
    max_uses: int,
) -> int:
    """Prequal's hot-cold lexicographic pick (Wydrowski et al., NSDI 2024) from an LB's
    pool of probe results, which it updates in place.

    Drops (server = -1) probes on a server that is out of range or down, older than
    max_age_ns or used max_uses times.  Of the m left, a probe is hot when more than
    j = int(q_rif * (m - 1)) of them have fewer requests in flight (its RIF is above the
    pool's q_rif quantile); the pick is the cold probe with the lowest latency, ties to
    the lower slot.  (The paper falls back to the hot probe with the fewest in flight
    when every probe is hot; under the pool's own quantile the lowest RIF is always
    cold, so that case cannot arise.)  The picked probe's rif and uses grow by one, and
    it leaves the pool once used max_uses times.  An empty pool: a uniform up server
    from the hash, -1 if none is up.  The probes come from the control plane: in
    production each is an RPC answered by the server (its in-flight count over all LBs
    and a latency estimate); the simulator reads the server's state instead.
    """
    return _prequal(pool, up, _NO_WEIGHT, False, flow_hash, now_ns, max_age_ns, q_rif, max_uses)


@numba.njit(cache=True)
def prequal_w_pick(
    pool: npt.NDArray[np.void],
    up: npt.NDArray[np.uint8],
    weight: npt.NDArray[np.float64],
    flow_hash: np.uint64,
    now_ns: np.uint64,
    max_age_ns: np.uint64,
    q_rif: float,
    max_uses: int,
) -> int:
    """prequal_pick with the weights scaling its scores: a probe's latency counts as
    latency / weight[server], and only servers whose weight is finite and > 0 are
    eligible (a probe on another is dropped; an empty pool draws among eligible up
    servers).  The hot test (requests in flight) is unchanged.  Weights are multipliers:
    all ones pick exactly as prequal_pick does, so a policy that writes them (a learned
    residual, e.g.) starts from Prequal and moves a server's share by its weight.
    """
    return _prequal(pool, up, weight, True, flow_hash, now_ns, max_age_ns, q_rif, max_uses)


@numba.njit(cache=True)
def alias_build(
    weight: npt.NDArray[np.float64], up: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]:
    """Vose alias table (prob thresholds, alias indices) over eligible servers.

    Integer masses q[i] = uint64(weight[i] / wmax * n / S * 2^32), S the
    ascending sum of weight / wmax, the first max-weight server absorbing the
    rounding so the masses sum to n * 2^32; worklists are stacks filled by
    ascending index (details in vpp-plugin/src/dispatch.c).  With no eligible
    server, prob is 0 and alias -1 everywhere, so alias_pick returns -1.
    """
    n = len(up)
    if len(weight) != n:
        raise ValueError("alias_build: weight and up must have the same length")
    prob = np.zeros(n, dtype=np.uint32)
    alias = np.full(n, -1, dtype=np.int32)
    wmax = 0.0
    jmax = 0
    for i in range(n):
        if up[i] != 0 and _weight_ok(weight[i]) and weight[i] > wmax:
            wmax = weight[i]
            jmax = i
    if wmax == 0.0:
        return prob, alias

    s = 0.0
    for i in range(n):
        if up[i] != 0 and _weight_ok(weight[i]):
            s += weight[i] / wmax
    nd = np.float64(n)
    q = np.zeros(n, dtype=np.uint64)
    total = np.uint64(0)
    for i in range(n):
        p = 0.0
        if up[i] != 0 and _weight_ok(weight[i]):
            p = weight[i] / wmax * nd / s
        q[i] = np.uint64(p * 4294967296.0)
        total += q[i]
    target = np.uint64(n) * _COLUMN
    if total > target:
        q[jmax] -= total - target
    else:
        q[jmax] += target - total

    # small grows up from work[0], large grows down from work[n - 1].
    work = np.empty(n, dtype=np.int64)
    ns = 0
    nl = 0
    for i in range(n):
        if q[i] < _COLUMN:
            work[ns] = i
            ns += 1
        else:
            work[n - 1 - nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        sm = work[ns]
        lg = work[n - nl]
        prob[sm] = np.uint32(q[sm])
        alias[sm] = lg
        q[lg] -= _COLUMN - q[sm]
        if q[lg] < _COLUMN:
            nl -= 1
            work[ns] = lg
            ns += 1
    while nl > 0:
        lg = work[n - nl]
        nl -= 1
        prob[lg] = _FULL
        alias[lg] = lg
    return prob, alias


@numba.njit(cache=True)
def alias_pick(
    prob: npt.NDArray[np.uint32], alias: npt.NDArray[np.int32], flow_hash: np.uint64
) -> int:
    """Column below(lo32, n); the column itself if hi32 < prob[column], else its alias."""
    n = len(prob)
    if n == 0:
        return -1
    h = np.uint64(flow_hash)
    col = _below(h & _MASK32, n)
    if (h >> _SHIFT32) < np.uint64(prob[col]):
        return int(col)
    return int(alias[col])


@numba.njit(cache=True)
def _mix64(x: np.uint64) -> np.uint64:
    """splitmix64's output function of x + golden gamma."""
    z = x + _GAMMA
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def _is_prime(m: int) -> bool:
    if m < 2:
        return False
    d = 2
    while d * d <= m:
        if m % d == 0:
            return False
        d += 1
    return True


@numba.njit(cache=True)
def maglev_build(up: npt.NDArray[np.uint8], m: int) -> npt.NDArray[np.int32]:
    """Maglev lookup table of prime size m over up servers; all -1 if none is up.

    Server i walks offset_i = mix64(2i) % m, skip_i = mix64(2i + 1) % (m - 1) + 1;
    up servers take turns by ascending index claiming their next free slot, so
    each gets floor or ceil of m / n_up entries.
    """
    if not _is_prime(m):
        raise ValueError("maglev_build: the table size m must be a prime number")
    n = len(up)
    table = np.full(m, -1, dtype=np.int32)
    n_up = 0
    for i in range(n):
        if up[i] != 0:
            n_up += 1
    if n_up == 0:
        return table
    mu = np.uint64(m)
    pos = np.empty(n, dtype=np.int64)
    skip = np.empty(n, dtype=np.int64)
    for i in range(n):
        pos[i] = np.int64(_mix64(np.uint64(2 * i)) % mu)
        skip[i] = np.int64(_mix64(np.uint64(2 * i + 1)) % (mu - np.uint64(1))) + 1
    filled = 0
    while filled < m:
        for i in range(n):
            if filled >= m:
                break
            if up[i] == 0:
                continue
            while table[pos[i]] >= 0:
                pos[i] = (pos[i] + skip[i]) % m
            table[pos[i]] = i
            pos[i] = (pos[i] + skip[i]) % m
            filled += 1
    return table


@numba.njit(cache=True)
def maglev_pick(table: npt.NDArray[np.int32], flow_hash: np.uint64) -> int:
    """table[hash % len(table)]; -1 for an empty table."""
    m = len(table)
    if m == 0:
        return -1
    return int(table[np.uint64(flow_hash) % np.uint64(m)])
