"""The shared test vectors of the stateful dispatch rules (peak-ewma, prequal).

`python -m tests.dataplane.dispatch_vectors` rewrites vpp-plugin/tests/dispatch_vectors.txt
from seed VECTOR_SEED with the expected results of the Python twin; the C unit test
(vpp-plugin/tests/test_dispatch.c) and tests/dataplane/test_dispatch_conformance.py read
that one file and check the C library and the twin against it.  Deterministic: the same
seed writes the same bytes (a test checks that the committed file is what this writes).

One case per line, fields separated by spaces, doubles in Python's float.hex() form
(exact, and what C's strtod reads), integers in decimal:

    pe_update EWMA STAMP SAMPLE NOW TAU -> EWMA' STAMP'
    pe_pick N NOW TAU K (HASH EXPECTED)[K] active[N] weight[N] up[N] ewma[N] stamp[N]
    pq_pick SIZE N HASH NOW MAX_AGE Q_RIF MAX_USES EXPECTED up[N]
            (t_ns latency rif server uses)[SIZE] (rif server uses)[SIZE] after the pick
    pqw_pick  as pq_pick, with weight[N] after up[N] (prequal-w)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from marllbd.dataplane import dispatch as py

VECTOR_SEED = 20261204
VECTORS = Path(__file__).resolve().parents[2] / "vpp-plugin" / "tests" / "dispatch_vectors.txt"
WEIGHT_LEVELS = (0.5, 1.0, 2.0, 3.0)
INVALID_WEIGHTS = (0.0, -1.0, float("nan"), float("inf"), 5e-324)
TAUS = (1e6, 1e9, 5e9)


def _f(x: float) -> str:
    return float(x).hex()


def _up(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.random()
    if kind < 0.08:
        return np.zeros(n, dtype=np.uint8)
    if kind < 0.4:
        return np.ones(n, dtype=np.uint8)
    return (rng.random(n) < rng.uniform(0.2, 1.0)).astype(np.uint8)


def _pe_updates(rng: np.random.Generator, lines: list[str]) -> None:
    for _ in range(40):
        state = py.peak_ewma_state(1)
        tau = float(rng.choice(TAUS))
        now = int(rng.integers(0, 10**9))
        for _ in range(8):
            now += int(rng.choice([0, int(rng.integers(1, 10**6)), int(rng.integers(1, 10**10))]))
            if rng.random() < 0.1:
                now = max(now - int(rng.integers(1, 10**6)), 0)  # a late sample
            sample = float(rng.choice([rng.exponential(0.1), 0.1, 0.0, rng.exponential(2.0)]))
            before = state[0].copy()
            py.peak_ewma_update(state, 0, sample, np.uint64(now), tau)
            lines.append(
                f"pe_update {_f(before['ewma'])} {before['stamp_ns']} {_f(sample)} {now} "
                f"{_f(tau)} {_f(state[0]['ewma'])} {state[0]['stamp_ns']}"
            )


def _weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Levels, some invalid (zero, negative, NaN, inf, subnormal), or uniform in 0.1 .. 10."""
    weight = rng.choice(WEIGHT_LEVELS, size=n)
    if rng.random() < 0.3:
        bad = rng.random(n) < 0.3
        weight[bad] = rng.choice(INVALID_WEIGHTS, size=int(bad.sum()))
    elif rng.random() < 0.3:
        weight = rng.uniform(0.1, 10.0, size=n)
    return weight


def _pe_picks(rng: np.random.Generator, lines: list[str]) -> None:
    for case in range(150):
        n = 0 if case == 0 else int(rng.integers(1, 17))
        weight = _weights(rng, n)
        if rng.random() < 0.05:
            active = rng.integers(0, 2**64, size=n, dtype=np.uint64)
        else:
            active = rng.integers(0, int(rng.choice([2, 4, 50])), size=n).astype(np.uint64)
        up = _up(rng, n)
        now = int(rng.integers(10**9, 10**11))
        tau = float(rng.choice(TAUS))
        state = py.peak_ewma_state(n)
        sampled = rng.random(n) < rng.choice([0.0, 0.7, 1.0])
        levels = rng.choice([0.05, 0.1, 0.2], size=n)
        state["ewma"][sampled] = np.where(
            rng.random(n) < 0.5, levels, rng.lognormal(-2.0, 1.0, size=n)
        )[sampled]
        stamp = now - rng.integers(0, int(rng.choice([1, 10**6, 10**10])), size=n)
        later = rng.random(n) < 0.05
        stamp[later] = now + rng.integers(1, 10**6, size=int(later.sum()))
        state["stamp_ns"][sampled] = stamp[sampled]
        picks = []
        for h in rng.integers(0, 2**64, size=4, dtype=np.uint64):
            got = py.peak_ewma_pick(active, weight, up, state, h, np.uint64(now), tau)
            picks += [str(int(h)), str(got)]
        fields = [
            "pe_pick", str(n), str(now), _f(tau), str(len(picks) // 2), *picks,
            *map(str, active.tolist()), *map(_f, weight.tolist()), *map(str, up.tolist()),
            *map(_f, state["ewma"].tolist()), *map(str, state["stamp_ns"].tolist()),
        ]  # fmt: skip
        lines.append(" ".join(fields))


def _pq_picks(rng: np.random.Generator, lines: list[str], weighted: bool) -> None:
    """pq_pick lines, or with `weighted` pqw_pick lines (prequal_w_pick)."""
    for case in range(200):
        size = int(rng.choice([0, 1, 4, 16, 16, 16, 32])) if case else 0
        n = int(rng.integers(1, 25))
        up = _up(rng, n)
        now = int(rng.integers(10**9, 10**11))
        max_age = int(rng.choice([10**6, 10**8, 10**9]))
        q = float(rng.choice([0.0, 0.5, 0.84, 0.9, 1.0]))
        max_uses = int(rng.choice([1, 2, 3, 8, 2**32 - 1]))
        pool = np.zeros(size, dtype=py.PROBE_DTYPE)
        pool["server"] = rng.integers(-1, n + 2, size=size)
        empty = rng.random(size) < rng.choice([0.0, 0.2, 0.9])
        pool["server"][empty] = -1
        pool["rif"] = rng.integers(0, int(rng.choice([3, 10, 1000])), size=size)
        if rng.random() < 0.5:
            pool["latency"] = rng.choice([0.1, 0.2, 0.3], size=size)
        else:
            pool["latency"] = rng.exponential(0.2, size=size)
        pool["t_ns"] = now - rng.integers(0, 2 * max_age, size=size)
        later = rng.random(size) < 0.05
        pool["t_ns"][later] = now + 5
        pool["uses"] = rng.integers(0, min(max_uses, 4) + 1, size=size)
        before = pool.copy()
        h = rng.integers(0, 2**64, dtype=np.uint64)
        args = (h, np.uint64(now), np.uint64(max_age), q, max_uses)
        if weighted:
            weight = _weights(rng, n)
            got = py.prequal_w_pick(pool, up, weight, *args)
        else:
            got = py.prequal_pick(pool, up, *args)
        fields = [
            "pqw_pick" if weighted else "pq_pick", str(size), str(n), str(int(h)), str(now),
            str(max_age), _f(q), str(max_uses), str(got), *map(str, up.tolist()),
            *(map(_f, weight.tolist()) if weighted else ()),
        ]  # fmt: skip
        for p in before:
            fields += [str(p["t_ns"]), _f(p["latency"]), str(p["rif"]), str(p["server"]),
                       str(p["uses"])]  # fmt: skip
        for p in pool:
            fields += [str(p["rif"]), str(p["server"]), str(p["uses"])]
        lines.append(" ".join(fields))


def generate(seed: int = VECTOR_SEED) -> str:
    """The vectors file's text for `seed`."""
    rng = np.random.default_rng(seed)
    lines = [f"# generated by tests/dataplane/dispatch_vectors.py, seed {seed}; do not edit"]
    _pe_updates(rng, lines)
    _pe_picks(rng, lines)
    _pq_picks(rng, lines, weighted=False)
    _pq_picks(rng, lines, weighted=True)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    VECTORS.write_text(generate())
    print(f"wrote {VECTORS}", file=sys.stderr)
