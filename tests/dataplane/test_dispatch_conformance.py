"""The C dispatch rules (libmarllb.so) and their Python twin choose identically.

Seeded random vectors cover ties, duplicate and invalid weights, down masks
(including all down), huge active counts and full-range 64-bit hashes.  The
stateful rules (peak-ewma, prequal) are also checked, on both sides, against the
committed vectors file that the C unit test reads (tests/dataplane/dispatch_vectors.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from marllbd.dataplane import dispatch as py
from marllbd.native import NativeMissingError
from tests.dataplane import dispatch_vectors

CASES = 2000
HASHES_PER_CASE = 4
WEIGHT_LEVELS = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
INVALID_WEIGHTS = np.array([0.0, -1.0, np.nan, np.inf, -np.inf, 5e-324, 1e308])


@pytest.fixture(scope="module")
def c() -> ModuleType:
    """The ctypes bindings; fail in CI and skip locally when libmarllb.so is not built."""
    from marllbd.dataplane import clib

    try:
        clib._lib()
    except NativeMissingError as exc:
        message = f"C dispatch library unavailable: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return clib


Case = tuple[
    npt.NDArray[np.uint64], npt.NDArray[np.float64], npt.NDArray[np.uint8], npt.NDArray[np.uint64]
]


def random_case(rng: np.random.Generator) -> Case:
    """One server set: active counts, weights, up mask and flow hashes."""
    n = int(rng.integers(1, 65))
    kind = rng.integers(4)
    if kind == 0:  # few levels: exact ties and duplicates
        weight = rng.choice(WEIGHT_LEVELS, size=n)
    elif kind == 1:
        weight = rng.uniform(0.01, 10.0, size=n)
    elif kind == 2:  # spread over many orders of magnitude
        weight = 10.0 ** rng.uniform(-6, 6, size=n)
    else:
        weight = rng.choice(WEIGHT_LEVELS, size=n)
        bad = rng.random(n) < 0.3
        weight[bad] = rng.choice(INVALID_WEIGHTS, size=int(bad.sum()))
    if rng.random() < 0.1:
        active = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    else:
        active = rng.integers(0, int(rng.choice([2, 5, 100, 10_000])), size=n).astype(np.uint64)
    mask_kind = rng.random()
    if mask_kind < 0.08:
        up = np.zeros(n, dtype=np.uint8)
    elif mask_kind < 0.3:
        up = np.ones(n, dtype=np.uint8)
    else:
        up = (rng.random(n) < rng.uniform(0.05, 1.0)).astype(np.uint8)
    flow_hashes = rng.integers(0, 2**64, size=HASHES_PER_CASE, dtype=np.uint64)
    return active, weight, up, flow_hashes


def threshold_hashes(rng: np.random.Generator, prob: npt.NDArray[np.uint32]) -> list[np.uint64]:
    """Hashes that land on a random column with hi32 at and just below its threshold."""
    n = len(prob)
    col = int(rng.integers(n))
    lo = (col * 2**32 + n - 1) // n  # smallest lo32 with (lo32 * n) >> 32 == col
    his = {int(prob[col]), max(int(prob[col]) - 1, 0)}
    return [np.uint64(hi << 32 | lo) for hi in sorted(his)]


def test_every_rule_chooses_the_same_server(c: ModuleType) -> None:
    rng = np.random.default_rng(20240611)
    for case in range(CASES):
        active, weight, up, flow_hashes = random_case(rng)
        where = f"case {case}: active={active.tolist()} weight={weight.tolist()} up={up.tolist()}"
        assert c.sed_pick(active, weight, up) == py.sed_pick(active, weight, up), where
        assert c.lsq_pick(active, up) == py.lsq_pick(active, up), where
        c_prob, c_alias = c.alias_build(weight, up)
        py_prob, py_alias = py.alias_build(weight, up)
        np.testing.assert_array_equal(c_prob, py_prob, err_msg=where)
        np.testing.assert_array_equal(c_alias, py_alias, err_msg=where)
        for h in (*flow_hashes, *threshold_hashes(rng, py_prob)):
            for use_sed in (False, True):
                assert c.p2_pick(active, weight, up, h, use_sed) == py.p2_pick(
                    active, weight, up, h, use_sed
                ), f"{where} hash={h} use_sed={use_sed}"
            assert c.alias_pick(c_prob, c_alias, h) == py.alias_pick(py_prob, py_alias, h), (
                f"{where} hash={h}"
            )


def _maglev_pick(side: ModuleType, up: npt.NDArray[np.uint8], h: np.uint64) -> int:
    table = side.maglev_build(up, 251)
    if side is py:
        return int(py.maglev_pick(table, h))
    return int(table[int(h) % len(table)])  # marllb_maglev_pick is inline in the header


Pick = Callable[
    [ModuleType, npt.NDArray[np.uint64], npt.NDArray[np.float64], npt.NDArray[np.uint8], np.uint64],
    int,
]
TAU_NS = 1e9


def _peak_ewma_case(
    side: ModuleType, active: npt.NDArray[np.uint64], weight: npt.NDArray[np.float64],
    up: npt.NDArray[np.uint8], h: np.uint64,
) -> int:  # fmt: skip
    """peak-ewma on a state made by `side`'s own init and updates, seeded by the hash."""
    rng = np.random.default_rng(int(h) % 2**32)
    n = len(up)
    state = side.peak_ewma_state(n)
    now = 0
    for _ in range(3 * n):
        now += int(rng.integers(0, 10**9))
        s = int(rng.integers(n))
        side.peak_ewma_update(state, s, float(rng.exponential(0.1)), np.uint64(now), TAU_NS)
    return int(side.peak_ewma_pick(active, weight, up, state, h, np.uint64(now + 10**8), TAU_NS))


def _prequal_case(
    side: ModuleType, active: npt.NDArray[np.uint64], up: npt.NDArray[np.uint8], h: np.uint64,
    weight: npt.NDArray[np.float64] | None = None,
) -> int:  # fmt: skip
    """prequal on a pool of 16 probes of the case's servers (RIF = active, capped); with
    `weight`, prequal-w."""
    rng = np.random.default_rng(int(h) % 2**32)
    n = len(up)
    pool = np.zeros(16, dtype=py.PROBE_DTYPE)
    pool["server"] = rng.integers(-1, n, size=16)
    pool["rif"] = np.minimum(active[np.maximum(pool["server"], 0)], 2**32 - 1)
    pool["latency"] = rng.choice([0.1, 0.2, rng.exponential(0.3)], size=16)
    pool["t_ns"] = rng.integers(0, 2 * 10**9, size=16)
    args = (h, np.uint64(2 * 10**9), np.uint64(10**9), 0.84, 3)
    if weight is not None:
        return int(side.prequal_w_pick(pool, up, weight, *args))
    return int(side.prequal_pick(pool, up, *args))


RULE_PICKS: dict[str, Pick] = {
    "sed": lambda side, active, weight, up, h: side.sed_pick(active, weight, up),
    "wcmp": lambda side, active, weight, up, h: side.alias_pick(*side.alias_build(weight, up), h),
    "ecmp": lambda side, active, weight, up, h: _maglev_pick(side, up, h),
    "lsq": lambda side, active, weight, up, h: side.lsq_pick(active, up),
    "lsq2": lambda side, active, weight, up, h: side.p2_pick(active, weight, up, h, False),
    "sed2": lambda side, active, weight, up, h: side.p2_pick(active, weight, up, h, True),
    "peak-ewma": _peak_ewma_case,
    "prequal": lambda side, active, weight, up, h: _prequal_case(side, active, up, h),
    "prequal-w": lambda side, active, weight, up, h: _prequal_case(side, active, up, h, weight),
}
"""How the C library and its Python twin (`side`) apply each data-plane rule by name."""


def test_every_rule_name_has_a_c_twin_that_agrees(c: ModuleType) -> None:
    """The one list of rule names (DispatchRule) and the C side agree: a name added
    without a C implementation, or one that picks differently, fails here."""
    assert sorted(RULE_PICKS) == sorted(py.RULE_NAMES)
    rng = np.random.default_rng(20240612)
    for case in range(300):
        active, weight, up, flow_hashes = random_case(rng)
        for name, pick in RULE_PICKS.items():
            for h in flow_hashes:
                assert pick(c, active, weight, up, h) == pick(py, active, weight, up, h), (
                    f"{name} case {case}: active={active.tolist()} weight={weight.tolist()} "
                    f"up={up.tolist()} hash={h}"
                )


def test_empty_server_set(c: ModuleType) -> None:
    active, weight, up = np.zeros(0, np.uint64), np.zeros(0), np.zeros(0, np.uint8)
    h = np.uint64(0xDEADBEEF_00C0FFEE)
    assert c.sed_pick(active, weight, up) == py.sed_pick(active, weight, up) == -1
    assert c.lsq_pick(active, up) == py.lsq_pick(active, up) == -1
    assert c.p2_pick(active, weight, up, h, True) == py.p2_pick(active, weight, up, h, True) == -1
    assert c.alias_pick(*c.alias_build(weight, up), h) == -1
    assert py.alias_pick(*py.alias_build(weight, up), h) == -1


def test_maglev_tables_are_identical(c: ModuleType) -> None:
    rng = np.random.default_rng(7)
    for m in (2, 3, 251):
        for _ in range(100):
            n = int(rng.integers(1, 65))
            up = (rng.random(n) < rng.uniform(0.0, 1.0)).astype(np.uint8)
            np.testing.assert_array_equal(
                c.maglev_build(up, m), py.maglev_build(up, m), err_msg=f"m={m} up={up.tolist()}"
            )
    up = (rng.random(64) < 0.8).astype(np.uint8)
    m = 65537  # a production-size prime table
    np.testing.assert_array_equal(c.maglev_build(up, m), py.maglev_build(up, m))


@pytest.mark.parametrize("m", [1, 250, 65536])
def test_non_prime_maglev_size_fails_on_both_sides(c: ModuleType, m: int) -> None:
    up = np.ones(4, dtype=np.uint8)
    with pytest.raises(ValueError, match="prime"):
        c.maglev_build(up, m)
    with pytest.raises(ValueError, match="prime"):
        py.maglev_build(up, m)


def test_vectors_file_is_what_the_seeded_generator_writes() -> None:
    """The committed file is reproducible: regenerate it with
    `python -m tests.dataplane.dispatch_vectors` after changing a rule or the generator."""
    assert dispatch_vectors.VECTORS.read_text() == dispatch_vectors.generate()


def _vector_lines() -> list[list[str]]:
    lines = dispatch_vectors.VECTORS.read_text().splitlines()
    return [line.split() for line in lines if line and not line.startswith("#")]


def _f(token: str) -> float:
    return float.fromhex(token)


@pytest.mark.parametrize("side_name", ["py", "c"])
def test_both_sides_reproduce_the_shared_vectors(
    side_name: str, request: pytest.FixtureRequest
) -> None:
    side: ModuleType = py if side_name == "py" else request.getfixturevalue("c")
    kinds = {"pe_update": 0, "pe_pick": 0, "pq_pick": 0, "pqw_pick": 0}
    for no, t in enumerate(_vector_lines()):
        kinds[t[0]] += 1
        where = f"{side_name}: vectors case {no} ({t[0]})"
        if t[0] == "pe_update":
            state = side.peak_ewma_state(1)
            state[0] = (_f(t[1]), int(t[2]))
            side.peak_ewma_update(state, 0, _f(t[3]), np.uint64(int(t[4])), _f(t[5]))
            assert state[0]["ewma"].tobytes() == np.float64(_f(t[6])).tobytes(), where
            assert int(state[0]["stamp_ns"]) == int(t[7]), where
        elif t[0] == "pe_pick":
            n, now, tau, k = int(t[1]), np.uint64(int(t[2])), _f(t[3]), int(t[4])
            picks = t[5 : 5 + 2 * k]
            rest = t[5 + 2 * k :]
            active = np.array([int(x) for x in rest[:n]], dtype=np.uint64)
            weight = np.array([_f(x) for x in rest[n : 2 * n]])
            up = np.array([int(x) for x in rest[2 * n : 3 * n]], dtype=np.uint8)
            state = side.peak_ewma_state(n)
            state["ewma"] = [_f(x) for x in rest[3 * n : 4 * n]]
            state["stamp_ns"] = [int(x) for x in rest[4 * n : 5 * n]]
            for h, want in zip(picks[::2], picks[1::2], strict=True):
                got = side.peak_ewma_pick(active, weight, up, state, np.uint64(int(h)), now, tau)
                assert got == int(want), f"{where} hash={h}"
        else:
            size, n = int(t[1]), int(t[2])
            h, now, age = (np.uint64(int(x)) for x in t[3:6])
            q, max_uses, want = _f(t[6]), int(t[7]), int(t[8])
            up = np.array([int(x) for x in t[9 : 9 + n]], dtype=np.uint8)
            rest = t[9 + n :]
            weight = None
            if t[0] == "pqw_pick":
                weight = np.array([_f(x) for x in rest[:n]])
                rest = rest[n:]
            before = rest[: 5 * size]
            after = rest[5 * size :]
            pool = np.zeros(size, dtype=py.PROBE_DTYPE)
            for i in range(size):
                ts, lat, rif, server, uses = before[5 * i : 5 * i + 5]
                pool[i] = (int(ts), _f(lat), int(rif), int(server), int(uses), 0)
            if weight is None:
                got = side.prequal_pick(pool, up, h, now, age, q, max_uses)
            else:
                got = side.prequal_w_pick(pool, up, weight, h, now, age, q, max_uses)
            assert got == want, where
            expected = np.array([int(x) for x in after]).reshape(size, 3)
            np.testing.assert_array_equal(pool["rif"], expected[:, 0], err_msg=where)
            np.testing.assert_array_equal(pool["server"], expected[:, 1], err_msg=where)
            np.testing.assert_array_equal(pool["uses"], expected[:, 2], err_msg=where)
    assert min(kinds.values()) > 0, kinds
