"""Algorithm R reservoirs: the Python twin of vpp-plugin/src/reservoir.c.

Item s (1-based count of values offered since the last reset) fills slot s - 1
while s <= k; after that it replaces slot j ~ U[0, s) when j < k, so each of
the s values seen so far is in the sample with probability min(1, k / s).
`Reservoir` is one reservoir driven by a numpy Generator; its batch add draws
all the j's at once and applies the writes in arrival order, the same
distribution as adding the items one by one.  `ReservoirBank` holds a server
fleet's reservoirs and updates them with `reservoir_add`, the numba kernel the
simulator engine calls per completed flow.  Values are stored as given (NaN
included); checking them is the feature code's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from marllbd.ipc.layout import DEFAULT_K, MAX_K

DUR, FCT = 0, 1  # quantity index in a ReservoirBank: flow duration, flow completion time

SeedLike = int | np.random.Generator | None


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise ValueError(f"reservoir size k must be an integer in [1, {MAX_K}], got {k!r}")
    return int(k)


def _as_batch(
    values: npt.ArrayLike, t_ns: npt.ArrayLike | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64]]:
    """values as 1-D float64 and t_ns as uint64 of the same shape (zeros when None)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {v.shape}")
    if t_ns is None:
        return v, np.zeros(v.shape, dtype=np.uint64)
    t = np.asarray(t_ns, dtype=np.uint64)
    if t.shape != v.shape:
        raise ValueError(
            f"t_ns has shape {t.shape} but values has shape {v.shape}; they must match"
        )
    return v, t


def _last_writes(
    cells: npt.NDArray[np.int64], items: npt.NDArray[np.int64], size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Distinct written cells in [0, size) and, for each, the latest item writing it.

    items must increase with arrival order.  numpy leaves the order of
    repeated-index assignment unspecified, so the later-wins rule of sequential
    Algorithm R is made explicit with an unbuffered maximum.
    """
    last = np.full(size, -1, dtype=np.int64)
    np.maximum.at(last, cells, items)
    written = np.flatnonzero(last >= 0)
    return written, last[written]


class Reservoir:
    """k samples (value and timestamp) drawn uniformly from the values offered this window."""

    def __init__(self, k: int = DEFAULT_K, seed: SeedLike = None) -> None:
        self._k = _check_k(k)
        self._rng = np.random.default_rng(seed)
        self._values = np.zeros(self._k, dtype=np.float64)
        self._t_ns = np.zeros(self._k, dtype=np.uint64)
        self._seen = 0

    @property
    def k(self) -> int:
        """Capacity."""
        return self._k

    @property
    def n(self) -> int:
        """Valid samples: min(seen, k)."""
        return min(self._seen, self._k)

    @property
    def seen(self) -> int:
        """Values offered since the last reset."""
        return self._seen

    def add(self, value: float, t_ns: int = 0) -> None:
        """Offer one value observed at t_ns."""
        self._seen += 1
        s = self._seen
        j = s - 1 if s <= self._k else int(self._rng.integers(0, s))
        if j < self._k:
            self._values[j] = value
            self._t_ns[j] = t_ns

    def add_batch(self, values: npt.ArrayLike, t_ns: npt.ArrayLike | None = None) -> None:
        """Offer many values in arrival order; same distribution as calling add on each."""
        v, t = _as_batch(values, t_ns)
        k = self._k
        fill = max(0, min(len(v), k - self._seen))
        j = np.empty(len(v), dtype=np.int64)
        j[:fill] = np.arange(self._seen, self._seen + fill)
        j[fill:] = self._rng.integers(0, np.arange(self._seen + fill + 1, self._seen + len(v) + 1))
        kept = np.flatnonzero(j < k)
        slots, items = _last_writes(j[kept], kept, k)
        self._values[slots] = v[items]
        self._t_ns[slots] = t[items]
        self._seen += len(v)

    def reset(self) -> None:
        """Start a new publication window; the random stream carries on."""
        self._seen = 0

    def samples(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64]]:
        """Copies of the valid (values, t_ns)."""
        n = self.n
        return self._values[:n].copy(), self._t_ns[:n].copy()


class SingleMetricReservoir:
    """The original description's one-quantity reservoir, under its name and methods there."""

    def __init__(self, size: int = 100, seed: SeedLike = None) -> None:
        self._reservoir = Reservoir(size, seed)

    def update(self, value: float) -> None:
        """Offer one value."""
        self._reservoir.add(value)

    def get_sample(self) -> npt.NDArray[np.float64]:
        """The current sample (at most `size` values)."""
        return self._reservoir.samples()[0]


@dataclass(frozen=True)
class ReservoirArrays:
    """One quantity's reservoirs for every server, typed as in a shm frame's server records."""

    values: npt.NDArray[np.float64]  # (servers, k) -> marllb_sample_t.value
    t_ns: npt.NDArray[np.uint64]  # (servers, k) -> marllb_sample_t.t_ns
    n: npt.NDArray[np.uint32]  # (servers,) -> n_dur / n_fct
    seen: npt.NDArray[np.uint64]  # (servers,) -> dur_seen / fct_seen


class ReservoirBank:
    """Reservoirs for S servers x 2 quantities (DUR, FCT), updated in compiled batches.

    The arrays are public so a compiled simulator kernel can update them in
    place with `reservoir_add` and `rng_state`: values and t_ns are (2, S, k),
    n and seen are (2, S) int64.
    """

    def __init__(self, num_servers: int, k: int = DEFAULT_K, seed: SeedLike = None) -> None:
        if isinstance(num_servers, bool) or not isinstance(num_servers, int) or num_servers < 1:
            raise ValueError(f"num_servers must be a positive integer, got {num_servers!r}")
        self.k = _check_k(k)
        self.num_servers = num_servers
        self.rng_state = make_rng_state(seed)
        self.values = np.zeros((2, num_servers, self.k), dtype=np.float64)
        self.t_ns = np.zeros((2, num_servers, self.k), dtype=np.uint64)
        self.n = np.zeros((2, num_servers), dtype=np.int64)
        self.seen = np.zeros((2, num_servers), dtype=np.int64)

    def add_batch(
        self,
        quantity: int,
        servers: npt.ArrayLike,
        values: npt.ArrayLike,
        t_ns: npt.ArrayLike | None = None,
    ) -> None:
        """Offer values[i] (observed at t_ns[i]) to server servers[i]'s `quantity` reservoir,
        one by one in arrival order (a compiled loop over `reservoir_add`)."""
        _check_quantity(quantity)
        v, t = _as_batch(values, t_ns)
        srv = np.asarray(servers)
        if srv.shape != v.shape or (srv.size and srv.dtype.kind not in "iu"):
            raise ValueError(
                f"servers must be integers shaped like values {v.shape}, "
                f"got dtype {srv.dtype} shape {srv.shape}"
            )
        if srv.size and (srv.min() < 0 or srv.max() >= self.num_servers):
            raise ValueError(
                f"servers must lie in [0, {self.num_servers}), got values in "
                f"[{srv.min()}, {srv.max()}]"
            )
        _add_many(
            self.values[quantity],
            self.t_ns[quantity],
            self.n[quantity],
            self.seen[quantity],
            srv.astype(np.int64, copy=False),
            v,
            t,
            self.rng_state,
        )

    def reset(self) -> None:
        """Start a new publication window for every reservoir (samples stay as stale slots)."""
        self.n.fill(0)
        self.seen.fill(0)

    def export(self, quantity: int) -> ReservoirArrays:
        """Copies of one quantity's arrays in the shm frame's types, ready to write into a frame."""
        _check_quantity(quantity)
        return ReservoirArrays(
            values=self.values[quantity].copy(),
            t_ns=self.t_ns[quantity].copy(),
            n=self.n[quantity].astype(np.uint32),
            seen=self.seen[quantity].astype(np.uint64),
        )


def _check_quantity(quantity: int) -> None:
    if quantity not in (DUR, FCT):
        raise ValueError(f"quantity must be DUR ({DUR}) or FCT ({FCT}), got {quantity!r}")


# The scalar kernels run without the numba runtime (the private `_nrt` option, absent
# from numba's type stubs): they allocate nothing, and with the runtime every call
# from another kernel increments and decrements the reference counts of its array
# arguments, which measured four times slower than the update itself.
NO_RUNTIME: dict[str, Any] = {"_nrt": False}
"""numba.njit options for kernels that run without the runtime (engine and features too)."""
_scalar_kernel = numba.njit(cache=True, **NO_RUNTIME)

_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@_scalar_kernel
def _splitmix64(rng_state: npt.NDArray[np.uint64]) -> np.uint64:
    """Next 64-bit draw of splitmix64 (Steele et al., 2014); rng_state[0] is its counter."""
    z = rng_state[0] + np.uint64(0x9E3779B97F4A7C15)
    rng_state[0] = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@_scalar_kernel
def _below(rng_state: npt.NDArray[np.uint64], s: np.int64) -> np.int64:
    """Uniform integer in [0, s), s >= 1: Lemire's multiply-shift with rejection on a
    32-bit draw; for s >= 2^32 a 64-bit modulo, whose bias (< s / 2^64) is negligible."""
    n = np.uint64(s)
    if n > _LOW32:
        return np.int64(_splitmix64(rng_state) % n)
    m = (_splitmix64(rng_state) >> _SHIFT32) * n
    if (m & _LOW32) < n:
        threshold = (_LOW32 - n + np.uint64(1)) % n  # 2^32 mod n
        while (m & _LOW32) < threshold:
            m = (_splitmix64(rng_state) >> _SHIFT32) * n
    return np.int64(m >> _SHIFT32)


@_scalar_kernel
def reservoir_add(
    values: npt.NDArray[np.float64],
    t_ns: npt.NDArray[np.uint64],
    n: npt.NDArray[np.int64],
    seen: npt.NDArray[np.int64],
    idx: int,
    value: float,
    t: int,
    rng_state: npt.NDArray[np.uint64],
) -> None:
    """Offer `value` observed at `t` to reservoir `idx` (Algorithm R), for compiled kernels.

    values and t_ns are (reservoirs, k); n and seen are (reservoirs,) int64, e.g.
    `bank.values[DUR], bank.t_ns[DUR], bank.n[DUR], bank.seen[DUR]`.  rng_state is
    a 1-element uint64 array holding a splitmix64 counter (see `make_rng_state`);
    it is advanced in place, once per value past the fill phase.
    """
    k = values.shape[1]
    s = seen[idx] + 1
    seen[idx] = s
    if s <= k:
        j = s - 1
        n[idx] = s
    else:
        j = _below(rng_state, s)
    if j < k:
        values[idx, j] = value
        t_ns[idx, j] = t


@numba.njit(cache=True)
def _add_many(
    values: npt.NDArray[np.float64],
    t_ns: npt.NDArray[np.uint64],
    n: npt.NDArray[np.int64],
    seen: npt.NDArray[np.int64],
    servers: npt.NDArray[np.int64],
    batch: npt.NDArray[np.float64],
    batch_t_ns: npt.NDArray[np.uint64],
    rng_state: npt.NDArray[np.uint64],
) -> None:
    """reservoir_add for each (servers[i], batch[i], batch_t_ns[i]) in order."""
    for i in range(len(servers)):
        reservoir_add(values, t_ns, n, seen, servers[i], batch[i], batch_t_ns[i], rng_state)


def make_rng_state(seed: SeedLike = None) -> npt.NDArray[np.uint64]:
    """A fresh PRNG state for `reservoir_add`: a 1-element uint64 splitmix64 counter whose
    start is derived from the seed through numpy's seed hashing (nearby seeds land far apart)."""
    start = np.random.default_rng(seed).integers(0, 1 << 64, dtype=np.uint64)
    return np.array([start], dtype=np.uint64)
