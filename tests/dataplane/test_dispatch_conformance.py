"""The C dispatch rules (libmarllb.so) and their Python twin choose identically.

Seeded random vectors cover ties, duplicate and invalid weights, down masks
(including all down), huge active counts and full-range 64-bit hashes.
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
RULE_PICKS: dict[str, Pick] = {
    "sed": lambda side, active, weight, up, h: side.sed_pick(active, weight, up),
    "wcmp": lambda side, active, weight, up, h: side.alias_pick(*side.alias_build(weight, up), h),
    "ecmp": lambda side, active, weight, up, h: _maglev_pick(side, up, h),
    "lsq": lambda side, active, weight, up, h: side.lsq_pick(active, up),
    "lsq2": lambda side, active, weight, up, h: side.p2_pick(active, weight, up, h, False),
    "sed2": lambda side, active, weight, up, h: side.p2_pick(active, weight, up, h, True),
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
