"""Per-new-flow server selection rules: the Python twin of vpp-plugin/src/dispatch.c.

Each rule is a scalar-loop `numba.njit` function so the simulator's compiled
engine can call it from its own njit loop; plain Python calls work too.  The
float operations and their order match the C code exactly (the conformance
test proves it), and so do these rules, part of DESIGN contract 2:

- eligible for SED, sed2 and WCMP: ``up[i] != 0`` and ``weight[i]`` finite and
  > 0; for LSQ, lsq2 and Maglev: ``up[i] != 0``.  No eligible server: -1.
- SED score ``(float64(active[i]) + 1.0) / weight[i]``; argmin by a strict
  ``<`` over ascending index, so ties go to the lowest index.
- flow hashes are 64-bit unsigned; pass ``np.uint64``.  A Python int works
  only below 2**63: numba types it as int64, and the signature it compiled
  first decides whether a larger one overflows.  ``lo32 = hash & 0xffffffff``, ``hi32 = hash >> 32``
  and ``below(x, k) = (x * k) >> 32`` in uint64 arithmetic.
"""

from __future__ import annotations

import enum
import math

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


RULE_NAMES: tuple[str, ...] = tuple(rule.value for rule in DispatchRule)
"""The data plane's rules (what a scenario's `dispatch` may be)."""

GSQ = "gsq"
"""Global shortest queue: each new flow goes to the server with the fewest queued flows
per unit of real capacity, over all LB nodes (simulator only: it needs the servers' state)."""
ORACLE_RULES: tuple[str, ...] = (GSQ,)
"""Rules only the simulator can apply."""
DISPATCH_NAMES: tuple[str, ...] = (*RULE_NAMES, *ORACLE_RULES)
"""Every rule a policy's `dispatch` may name: the data plane's, then the oracles."""


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
    h = np.uint64(flow_hash)
    n_ok = 0
    for i in range(n):
        if _p2_eligible(weight, up, i, use_sed):
            n_ok += 1
    if n_ok == 0:
        return -1
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
    if use_sed:
        hi_better = _sed_score(active[hi], weight[hi]) < _sed_score(active[lo], weight[lo])
    else:
        hi_better = active[hi] < active[lo]
    return hi if hi_better else lo


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
