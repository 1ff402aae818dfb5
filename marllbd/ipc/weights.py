"""The weights slot: the daemon publishes per-server weights, the data plane reads them.

A seqlock protects the slot (see ring.py for the memory-ordering argument).
The reader mirrors marllb_weights_read in vpp-plugin/src/ring.c: weights that
are torn, non-finite, not positive, of the wrong count or more than
max_weight_ratio apart are refused and the last good weights stay in force.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass

import numpy as np

from marllbd.errors import MarllbdError
from marllbd.ipc import layout as L
from marllbd.ipc.region import Region


class WeightsError(MarllbdError, ValueError):
    """Weights that the data plane would refuse."""


class WeightsStatus(enum.IntEnum):
    NEW = 0
    UNCHANGED = 1
    TORN = 2
    INVALID = 3
    EMPTY = 4


def check_weights(weights: np.ndarray, num_servers: int, max_ratio: float) -> None:
    """Raise WeightsError naming the first reason the data plane would refuse `weights`."""
    if weights.shape != (num_servers,):
        raise WeightsError(f"weights: expected shape ({num_servers},), got {weights.shape}")
    lo, hi = float(weights.min()), float(weights.max())  # NaN in, NaN out
    if lo > 0.0 and hi < math.inf and hi <= lo * max_ratio:
        return  # the common case, in two reductions; the checks below name the problem
    finite = np.isfinite(weights)
    if not finite.all():
        i = int(np.argmin(finite))
        raise WeightsError(f"weights[{i}]: expected a finite value, got {weights[i]}")
    if (weights <= 0).any():
        i = int(np.argmax(weights <= 0))
        raise WeightsError(f"weights[{i}]: expected > 0, got {weights[i]}")
    lo, hi = float(weights.min()), float(weights.max())
    if hi > lo * max_ratio:
        raise WeightsError(
            f"weights: max/min = {hi / lo:.4g} exceeds max_weight_ratio {max_ratio:g}"
        )


class WeightsWriter:
    """Control-plane side: validate and publish weights under the slot's seqlock."""

    def __init__(self, region: Region):
        self.region = region
        off = L.weights_offset()
        geo = region.geometry
        self._u64 = region.buf[off : off + L.WEIGHTS_SLOT_HDR.itemsize].view("<u8")
        self._u32 = region.buf[off : off + L.WEIGHTS_SLOT_HDR.itemsize].view("<u4")
        start = off + L.WEIGHTS_SLOT_HDR.itemsize
        self._w = region.buf[start : start + 8 * geo.capacity].view("<f8")
        self.num_servers = geo.num_servers
        self.max_ratio = float(region.hdr["max_weight_ratio"])

    def write(self, weights: np.ndarray, *, policy_id: int = 0, frame_no: int = 0) -> int:
        """Publish `weights`; returns the decision number.  Raises WeightsError if invalid."""
        w = np.ascontiguousarray(weights, dtype=np.float64)
        check_weights(w, self.num_servers, self.max_ratio)
        u64 = self._u64
        s = int(u64[0])
        u64[0] = s + 1  # odd: writing
        u64[1] = time.clock_gettime_ns(time.CLOCK_REALTIME)
        decision_no = int(u64[2]) + 1
        u64[2] = decision_no
        u64[3] = frame_no
        self._u32[8] = policy_id
        self._u32[9] = w.size
        self._w[: w.size] = w
        u64[0] = s + 2  # even: complete
        return decision_no


@dataclass
class WeightsReaderStats:
    accepted: int = 0
    torn: int = 0
    invalid: int = 0


class WeightsReader:
    """Data-plane side: the last good weights, refreshed from the slot on read()."""

    def __init__(self, region: Region):
        off = L.weights_offset()
        geo = region.geometry
        self._u64 = region.buf[off : off + L.WEIGHTS_SLOT_HDR.itemsize].view("<u8")
        self._u32 = region.buf[off : off + L.WEIGHTS_SLOT_HDR.itemsize].view("<u4")
        start = off + L.WEIGHTS_SLOT_HDR.itemsize
        self._w = region.buf[start : start + 8 * geo.capacity].view("<f8")
        self.capacity = geo.capacity
        self.num_servers = geo.num_servers
        self.max_ratio = float(region.hdr["max_weight_ratio"])
        self.weights = np.ones(geo.num_servers)
        self.policy_id = 0
        self.decision_no = 0
        self.last_error = ""
        self._last_seq = 0
        self.stats = WeightsReaderStats()

    def read(self) -> WeightsStatus:
        u64 = self._u64
        s1 = int(u64[0])
        if s1 == 0:
            return WeightsStatus.EMPTY
        if s1 == self._last_seq:
            return WeightsStatus.UNCHANGED
        if s1 & 1:
            self.stats.torn += 1
            return WeightsStatus.TORN
        n = int(self._u32[9])
        policy_id, decision_no = int(self._u32[8]), int(u64[2])
        w = self._w[: min(n, self.capacity)].copy()
        if int(u64[0]) != s1:
            self.stats.torn += 1
            return WeightsStatus.TORN
        self._last_seq = s1
        try:
            check_weights(w, self.num_servers, self.max_ratio)
        except WeightsError as exc:
            self.stats.invalid += 1
            self.last_error = str(exc)
            return WeightsStatus.INVALID
        self.weights = w
        self.policy_id, self.decision_no = policy_id, decision_no
        self.stats.accepted += 1
        return WeightsStatus.NEW
