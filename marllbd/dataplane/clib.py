"""ctypes bindings of the C dispatch rules in libmarllb.so (marllb_dispatch.h).

The functions mirror marllbd.dataplane.dispatch name for name, so the
conformance test and the benchmarks can run the same calls through either.
marllb_maglev_pick is a static inline in the header, not a library symbol,
so it has no binding here.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import numpy.typing as npt

from marllbd.dataplane.dispatch import PEAK_EWMA_DTYPE, PROBE_DTYPE
from marllbd.native import load_library


def _array(dtype: type[np.generic] | np.dtype[np.void]) -> type:
    return np.ctypeslib.ndpointer(dtype=dtype, ndim=1, flags="C_CONTIGUOUS")


class _Alias(ctypes.Structure):
    """marllb_alias_t: n and the caller-owned prob and alias arrays."""

    _fields_ = [
        ("n", ctypes.c_uint32),
        ("prob", ctypes.POINTER(ctypes.c_uint32)),
        ("alias", ctypes.POINTER(ctypes.c_int32)),
    ]


@functools.cache
def _lib() -> ctypes.CDLL:
    """libmarllb.so with argument and result types declared for the dispatch symbols."""
    lib = load_library()
    u64, f64, u8 = _array(np.uint64), _array(np.float64), _array(np.uint8)
    pe = _array(PEAK_EWMA_DTYPE)
    signatures: dict[str, tuple[list[type], type | None]] = {
        "marllb_sed_pick": ([u64, f64, u8, ctypes.c_uint32], ctypes.c_int32),
        "marllb_lsq_pick": ([u64, u8, ctypes.c_uint32], ctypes.c_int32),
        "marllb_p2_pick": (
            [u64, f64, u8, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int],
            ctypes.c_int32,
        ),
        "marllb_peak_ewma_init": ([pe, ctypes.c_uint32], None),
        "marllb_peak_ewma_update": (
            [pe, ctypes.c_uint32, ctypes.c_double, ctypes.c_uint64, ctypes.c_double],
            None,
        ),
        "marllb_peak_ewma_pick": (
            [u64, f64, u8, pe, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_double],
            ctypes.c_int32,
        ),
        "marllb_prequal_pick": (
            [
                _array(PROBE_DTYPE),
                ctypes.c_uint32,
                u8,
                ctypes.c_uint32,
                ctypes.c_uint64,
                ctypes.c_uint64,
                ctypes.c_uint64,
                ctypes.c_double,
                ctypes.c_uint32,
            ],
            ctypes.c_int32,
        ),
        "marllb_prequal_w_pick": (
            [
                _array(PROBE_DTYPE),
                ctypes.c_uint32,
                u8,
                f64,
                ctypes.c_uint32,
                ctypes.c_uint64,
                ctypes.c_uint64,
                ctypes.c_uint64,
                ctypes.c_double,
                ctypes.c_uint32,
            ],
            ctypes.c_int32,
        ),
        "marllb_alias_build": ([ctypes.POINTER(_Alias), f64, u8, ctypes.c_uint32], ctypes.c_int),
        "marllb_alias_pick": ([ctypes.POINTER(_Alias), ctypes.c_uint64], ctypes.c_int32),
        "marllb_maglev_build": (
            [_array(np.int32), ctypes.c_uint32, u8, ctypes.c_uint32],
            ctypes.c_int,
        ),
    }
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
    return lib


def _as(values: npt.ArrayLike, dtype: type[np.generic]) -> npt.NDArray[np.generic]:
    return np.ascontiguousarray(values, dtype=dtype)


def _length(fn: str, first: npt.NDArray[np.generic], *others: npt.NDArray[np.generic]) -> int:
    """The common length of a call's arrays; ValueError naming the lengths otherwise."""
    lengths = [len(first), *(len(other) for other in others)]
    if len(set(lengths)) != 1:
        raise ValueError(f"{fn}: array arguments must have one length, got lengths {lengths}")
    return lengths[0]


def sed_pick(active: npt.ArrayLike, weight: npt.ArrayLike, up: npt.ArrayLike) -> int:
    """marllb_sed_pick."""
    a, w, u = _as(active, np.uint64), _as(weight, np.float64), _as(up, np.uint8)
    return int(_lib().marllb_sed_pick(a, w, u, _length("sed_pick", u, a, w)))


def lsq_pick(active: npt.ArrayLike, up: npt.ArrayLike) -> int:
    """marllb_lsq_pick."""
    a, u = _as(active, np.uint64), _as(up, np.uint8)
    return int(_lib().marllb_lsq_pick(a, u, _length("lsq_pick", u, a)))


def p2_pick(
    active: npt.ArrayLike,
    weight: npt.ArrayLike,
    up: npt.ArrayLike,
    flow_hash: int | np.uint64,
    use_sed: bool,
) -> int:
    """marllb_p2_pick."""
    a, w, u = _as(active, np.uint64), _as(weight, np.float64), _as(up, np.uint8)
    n = _length("p2_pick", u, a, w)
    return int(_lib().marllb_p2_pick(a, w, u, n, int(flow_hash), int(use_sed)))


def peak_ewma_state(n: int) -> npt.NDArray[np.void]:
    """marllb_peak_ewma_init on a fresh array of n servers."""
    state = np.zeros(n, dtype=PEAK_EWMA_DTYPE)
    _lib().marllb_peak_ewma_init(state, n)
    return state


def _records(fn: str, values: npt.NDArray[np.void], dtype: np.dtype[np.void]) -> None:
    """Refuse a state array the C side would misread (it is updated in place: no copy)."""
    if values.dtype != dtype or not values.flags.c_contiguous or not values.flags.writeable:
        raise ValueError(f"{fn}: expected a writable C-contiguous array of dtype {dtype}")


def peak_ewma_update(
    state: npt.NDArray[np.void], s: int, sample: float, now_ns: int | np.uint64, tau_ns: float
) -> None:
    """marllb_peak_ewma_update, in place."""
    _records("peak_ewma_update", state, PEAK_EWMA_DTYPE)
    if not 0 <= s < len(state):
        raise ValueError(f"peak_ewma_update: server {s} out of range for {len(state)} servers")
    _lib().marllb_peak_ewma_update(state, s, float(sample), int(now_ns), float(tau_ns))


def peak_ewma_pick(
    active: npt.ArrayLike,
    weight: npt.ArrayLike,
    up: npt.ArrayLike,
    state: npt.NDArray[np.void],
    flow_hash: int | np.uint64,
    now_ns: int | np.uint64,
    tau_ns: float,
) -> int:
    """marllb_peak_ewma_pick."""
    a, w, u = _as(active, np.uint64), _as(weight, np.float64), _as(up, np.uint8)
    _records("peak_ewma_pick", state, PEAK_EWMA_DTYPE)
    n = _length("peak_ewma_pick", u, a, w, state)
    return int(_lib().marllb_peak_ewma_pick(a, w, u, state, n, int(flow_hash), int(now_ns), tau_ns))


def prequal_pick(
    pool: npt.NDArray[np.void],
    up: npt.ArrayLike,
    flow_hash: int | np.uint64,
    now_ns: int | np.uint64,
    max_age_ns: int | np.uint64,
    q_rif: float,
    max_uses: int,
) -> int:
    """marllb_prequal_pick, updating `pool` (a PROBE_DTYPE array) in place."""
    _records("prequal_pick", pool, PROBE_DTYPE)
    u = _as(up, np.uint8)
    return int(
        _lib().marllb_prequal_pick(
            pool, len(pool), u, len(u), int(flow_hash), int(now_ns), int(max_age_ns),
            float(q_rif), max_uses,
        )
    )  # fmt: skip


def prequal_w_pick(
    pool: npt.NDArray[np.void],
    up: npt.ArrayLike,
    weight: npt.ArrayLike,
    flow_hash: int | np.uint64,
    now_ns: int | np.uint64,
    max_age_ns: int | np.uint64,
    q_rif: float,
    max_uses: int,
) -> int:
    """marllb_prequal_w_pick, updating `pool` (a PROBE_DTYPE array) in place."""
    _records("prequal_w_pick", pool, PROBE_DTYPE)
    u, w = _as(up, np.uint8), _as(weight, np.float64)
    n = _length("prequal_w_pick", u, w)
    return int(
        _lib().marllb_prequal_w_pick(
            pool, len(pool), u, w, n, int(flow_hash), int(now_ns), int(max_age_ns),
            float(q_rif), max_uses,
        )
    )  # fmt: skip


def alias_build(
    weight: npt.ArrayLike, up: npt.ArrayLike
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]:
    """marllb_alias_build into fresh (prob, alias) arrays; all 0 and -1 when nothing is eligible."""
    w, u = _as(weight, np.float64), _as(up, np.uint8)
    n = _length("alias_build", u, w)
    prob = np.zeros(n, dtype=np.uint32)
    alias = np.full(n, -1, dtype=np.int32)
    table = _Alias(
        n,
        prob.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
        alias.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
    )
    _lib().marllb_alias_build(ctypes.byref(table), w, u, n)
    return prob, alias


def alias_pick(prob: npt.ArrayLike, alias: npt.ArrayLike, flow_hash: int | np.uint64) -> int:
    """marllb_alias_pick on a table given as (prob, alias) arrays."""
    p, al = _as(prob, np.uint32), _as(alias, np.int32)
    n = _length("alias_pick", p, al)
    table = _Alias(
        n,
        p.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
        al.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
    )
    return int(_lib().marllb_alias_pick(ctypes.byref(table), int(flow_hash)))


def maglev_build(up: npt.ArrayLike, m: int) -> npt.NDArray[np.int32]:
    """marllb_maglev_build into a fresh table; all -1 when no server is up.

    Raises ValueError, like the Python twin, when the C build fails although a
    server is up: m is not prime (or the C side ran out of memory).
    """
    u = _as(up, np.uint8)
    table = np.empty(m, dtype=np.int32)
    rc = _lib().marllb_maglev_build(table, m, u, len(u))
    if rc != 0 and u.any():
        raise ValueError(f"maglev_build: table size m={m} must be a prime number")
    return table
