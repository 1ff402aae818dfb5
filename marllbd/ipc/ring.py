"""The observation ring: frames published by the data plane, read by the daemon.

Each ring slot starts with its own sequence word, odd while the slot is being
written.  The reader copies the newest complete frame, re-checks the slot's
sequence and drops the copy if it changed (a torn read).

Memory ordering: the Python writer and reader rely on x86-64's total store
order (stores are seen in program order, loads are not reordered with other
loads), and on numpy's copies being opaque calls the interpreter cannot
reorder.  On other architectures use the C helpers in vpp-plugin/src/ring.c.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from marllbd.errors import MarllbdError
from marllbd.ipc import layout as L
from marllbd.ipc.region import Region

# A counter read as u64 that is this large was a negative number written as i64.
_COUNTER_LIMIT = 1 << 62
# The largest finite double: a sample value v is valid when 0 <= v <= _F64_MAX.
_F64_MAX = float(np.finfo(np.float64).max)


_COUNTS = ("n_dur", "n_fct")
"""The u32 sample counts of a server record (columns 1 and 2)."""
_COUNTERS = ("active_flows", "new_flows", "completed_flows", "dur_seen", "fct_seen")
"""The u64 counter fields of a server record, in column order (from column 2)."""
_SAMPLES = ("dur", "fct")
"""The two sample rings of a server record; a bad sample value is reported by its ring."""


class FrameError(MarllbdError):
    """A complete frame whose contents break the contract (not a torn read).

    `field` is the contract field that was broken, one of FIELDS (a server record's
    field without its index: "active", not "servers[3].active"); the message says
    where and what was found.
    """

    FIELDS: tuple[str, ...] = ("num_servers", "active", *_COUNTS, *_COUNTERS, *_SAMPLES, "unknown")

    def __init__(self, field: str, message: str):
        if field not in self.FIELDS:
            raise ValueError(f"FrameError field: expected one of {self.FIELDS}, got {field!r}")
        super().__init__(message)
        self.field = field


class Frame:
    """One copied frame.  Accessors are strided views into the copy, limited to
    `num_servers` records; sample arrays are (num_servers, k) and entries at
    index >= n_dur / n_fct are not valid samples."""

    __slots__ = (
        "_blk32",
        "_blk64",
        "_blkf",
        "capacity",
        "flags",
        "frame_no",
        "k",
        "num_servers",
        "raw",
        "ts_ns",
        "window_start_ns",
    )

    def __init__(self, raw: np.ndarray, capacity: int, k: int):
        self.raw = raw
        self.capacity, self.k = capacity, k
        # One unpack of the header instead of a numpy view per field.
        (_, self.frame_no, self.ts_ns, self.window_start_ns, self.num_servers, self.flags) = (
            L.FRAME_HDR_UNPACK.unpack_from(raw.data)
        )
        self._blk64: np.ndarray | None = None
        self._blkf: np.ndarray | None = None
        self._blk32: np.ndarray | None = None

    def _views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, words) views over the server records as u64 words, f64 words, u32 halves."""
        if self._blk64 is None or self._blkf is None or self._blk32 is None:
            cap, n = self.capacity, min(self.num_servers, self.capacity)
            words = L.server_stride(self.k) // 8
            head = L.FRAME_HDR.itemsize // 8
            body = self.raw[8 * head : 8 * (head + cap * words)]
            self._blk64 = body.view("<u8").reshape(cap, words)[:n]
            self._blkf = body.view("<f8").reshape(cap, words)[:n]
            self._blk32 = body.view("<u4").reshape(cap, 2 * words)[:n]
        return self._blk64, self._blkf, self._blk32

    @property
    def servers(self) -> np.ndarray:
        """Structured array of the server records in use (see layout.server_dtype)."""
        rec = self.raw.view(L.frame_dtype(self.capacity, self.k))[0]
        return rec["servers"][: min(self.num_servers, self.capacity)]

    @property
    def active(self) -> np.ndarray:
        return self._views()[2][:, 0] != 0

    @property
    def n_dur(self) -> np.ndarray:
        return self._views()[2][:, 1]

    @property
    def n_fct(self) -> np.ndarray:
        return self._views()[2][:, 2]

    @property
    def active_flows(self) -> np.ndarray:
        return self._views()[0][:, 2]

    @property
    def new_flows(self) -> np.ndarray:
        return self._views()[0][:, 3]

    @property
    def completed_flows(self) -> np.ndarray:
        return self._views()[0][:, 4]

    @property
    def dur_seen(self) -> np.ndarray:
        return self._views()[0][:, 5]

    @property
    def fct_seen(self) -> np.ndarray:
        return self._views()[0][:, 6]

    @property
    def dur_values(self) -> np.ndarray:
        return self._views()[1][:, 8 : 8 + 2 * self.k : 2]

    @property
    def dur_t_ns(self) -> np.ndarray:
        return self._views()[0][:, 9 : 9 + 2 * self.k : 2]

    @property
    def fct_values(self) -> np.ndarray:
        return self._views()[1][:, 8 + 2 * self.k : 8 + 4 * self.k : 2]

    @property
    def fct_t_ns(self) -> np.ndarray:
        return self._views()[0][:, 9 + 2 * self.k : 9 + 4 * self.k : 2]

    def validate(self) -> None:
        """Raise FrameError naming the first field that breaks the contract.

        Producers write only finite, non-negative sample values in every slot
        (unused slots hold 0 or an older sample), so the check covers all k.
        """
        n = self.num_servers
        if n > self.capacity:
            raise FrameError(
                "num_servers", f"num_servers: expected <= capacity {self.capacity}, got {n}"
            )
        if not _frame_ok(self.raw, self.k, n):
            self._explain()

    def _explain(self) -> None:
        """Slow path: find and name the first bad field."""
        _, _, blk32 = self._views()
        blk64 = self._views()[0]
        for i in range(self.num_servers):
            if int(blk32[i, 0]) > 1:
                raise FrameError(
                    "active", f"servers[{i}].active: expected 0 or 1, got {int(blk32[i, 0])}"
                )
            for col, q in enumerate(_COUNTS, start=1):
                if int(blk32[i, col]) > self.k:
                    raise FrameError(
                        q, f"servers[{i}].{q}: expected <= k {self.k}, got {int(blk32[i, col])}"
                    )
            for col, field in enumerate(_COUNTERS, start=2):
                v = int(blk64[i, col])
                if v >= _COUNTER_LIMIT:
                    raise FrameError(
                        field,
                        f"servers[{i}].{field}: {v} is out of range "
                        "(a negative counter written as unsigned?)",
                    )
            for q, vals in zip(_SAMPLES, (self.dur_values[i], self.fct_values[i]), strict=True):
                bad = ~(np.isfinite(vals) & (vals >= 0))
                if bad.any():
                    j = int(np.argmax(bad))
                    raise FrameError(
                        q, f"servers[{i}].{q}[{j}].value: expected finite and >= 0, got {vals[j]}"
                    )
        raise FrameError("unknown", "frame failed validation for an unknown reason")


@numba.njit(cache=True, nogil=True)
def _frame_ok(raw: np.ndarray, k: int, n: int) -> bool:  # pragma: no cover - compiled
    """Branch-free scan of n server records: flags, counts, counters, sample values.

    Every test is a comparison folded into one flag with `&`, with no
    floating-point accumulator, so the compiler is free to vectorize the
    sample loop: NaN fails both comparisons, +-inf and negatives fail one.
    """
    u64 = raw.view(np.uint64)
    f64 = raw.view(np.float64)
    u32 = raw.view(np.uint32)
    head = 8  # frame header words
    words = 8 + 4 * k
    good = True
    for i in range(n):
        b = head + i * words
        good &= (u32[2 * b] <= 1) & (u32[2 * b + 1] <= k) & (u32[2 * b + 2] <= k)
        for c in range(2, 7):
            good &= u64[b + c] < _COUNTER_LIMIT
        values = f64[b + 8 : b + 8 + 4 * k : 2]  # dur then fct sample values
        for j in range(2 * k):
            v = values[j]
            good &= (v >= 0.0) & (v <= _F64_MAX)
    return good


@dataclass
class ReaderStats:
    """Counters of a FrameReader (exported by the daemon as Prometheus counters)."""

    frames: int = 0
    torn: int = 0
    overruns: int = 0
    missed: int = 0
    invalid: int = 0


class FrameReader:
    """Return the newest complete frame of a region, at most once each."""

    def __init__(self, region: Region, *, retries: int = 3, from_start: bool = False):
        """from_start: count every frame since the producer started as missed if unread
        (after a producer restart); otherwise counting starts at the first read."""
        self.region = region
        geo = region.geometry
        self.capacity, self.k, self.ring_len = geo.capacity, geo.k, geo.ring_len
        self._frame_size = L.frame_size(geo.capacity, geo.k)
        base = L.ring_offset(geo.capacity)
        self._slots = [
            region.buf[base + i * self._frame_size : base + (i + 1) * self._frame_size]
            for i in range(geo.ring_len)
        ]
        # The live words as memoryviews of u64: indexing one reads the word
        # straight into a Python int, without a numpy scalar in between.
        self._seqs = [slot[:8].data.cast("Q") for slot in self._slots]
        self._hdr_u64 = region.buf[: L.REGION_HDR.itemsize].data.cast("Q")
        self._pub_index = L.OFF_FRAMES_PUBLISHED // 8
        self._retries = retries
        self.last_frame_no: int | None = -1 if from_start else None
        self.stats = ReaderStats()

    def account_unread(self) -> int:
        """Count frames published since the last read as missed (before detaching)."""
        last = -1 if self.last_frame_no is None else self.last_frame_no
        unread = max(self._hdr_u64[self._pub_index] - 1 - last, 0)
        self.stats.missed += unread
        return unread

    def read_newest(self, *, validate: bool = True) -> Frame | None:
        """The newest complete frame not returned before, or None.

        Torn copies are retried a few times, then counted and dropped.  An
        invalid frame is counted and raises FrameError.
        """
        for _ in range(self._retries):
            pub = self._hdr_u64[self._pub_index]
            if pub == 0:
                return None
            newest = pub - 1
            if self.last_frame_no is not None and newest <= self.last_frame_no:
                return None
            idx = newest & (self.ring_len - 1)
            seq = self._seqs[idx]
            s1 = seq[0]
            if s1 & 1:
                self.stats.torn += 1
                continue
            raw = self._slots[idx].copy()
            s2 = seq[0]
            frame = Frame(raw, self.capacity, self.k)
            if s1 != s2 or frame.frame_no != newest:
                self.stats.torn += 1
                continue
            self._account(newest)
            if validate:
                try:
                    frame.validate()
                except FrameError:
                    self.stats.invalid += 1
                    raise
            self.stats.frames += 1
            return frame
        return None

    def _account(self, newest: int) -> None:
        last = self.last_frame_no
        if last is not None:
            gap = newest - last - 1
            self.stats.missed += gap
            if newest - last > self.ring_len - 1:
                self.stats.overruns += 1
        self.last_frame_no = newest

    def reset(self) -> None:
        """Forget the last frame seen (after re-attaching to a new producer)."""
        self.last_frame_no = None


class FrameWriter:
    """The producer side in Python (the simulator's data-plane process)."""

    def __init__(self, region: Region):
        if not region.owner:
            raise ValueError(f"{region.path}: only the region's creator publishes frames")
        self.region = region
        geo = region.geometry
        self.capacity, self.k, self.ring_len = geo.capacity, geo.k, geo.ring_len
        fs = L.frame_size(geo.capacity, geo.k)
        base = L.ring_offset(geo.capacity)
        dt = L.frame_dtype(geo.capacity, geo.k)
        self._recs = [
            region.buf[base + i * fs : base + (i + 1) * fs].view(dt)[0] for i in range(geo.ring_len)
        ]
        self._seqs = [
            region.buf[base + i * fs : base + i * fs + 8].view("<u8") for i in range(geo.ring_len)
        ]
        self._hdr_u64 = region.buf[: L.REGION_HDR.itemsize].view("<u8")
        self._pub_index = L.OFF_FRAMES_PUBLISHED // 8
        self._hb_index = L.OFF_HEARTBEAT // 8

    def begin(self) -> np.void:
        """Mark the next slot as being written (odd sequence) and return its record."""
        no = int(self._hdr_u64[self._pub_index])
        idx = no & (self.ring_len - 1)
        seq = self._seqs[idx]
        s = int(seq[0])
        seq[0] = s + 1 + (s & 1)
        rec = self._recs[idx]
        rec["frame_no"] = no
        return rec

    def commit(self, rec: np.void) -> int:
        """Make the slot's sequence even again and advance frames_published."""
        no = int(rec["frame_no"])
        seq = self._seqs[no & (self.ring_len - 1)]
        seq[0] = int(seq[0]) + 1
        self._hdr_u64[self._pub_index] = no + 1
        self._hdr_u64[self._hb_index] = time.monotonic_ns()
        return no
