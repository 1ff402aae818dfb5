"""numpy mirror of vpp-plugin/include/marllb_shm.h (the shared-memory contract).

Fixed structs have explicit offsets so that a drift from the C header is a
test failure (tests/ipc/test_layout.py compiles a program that prints every
sizeof/offsetof and compares).  Sizes that depend on the server capacity and
the reservoir size k are computed by the same formulas as the header's
inline helpers.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

MAGIC = int.from_bytes(b"MARLLBSH", "little")
VERSION = 1
CACHELINE = 64
DEFAULT_K = 128
MAX_K = 4096
MAX_SERVERS = 1024
MAX_RING_LEN = 1024
DEFAULT_MAX_WEIGHT_RATIO = 100.0
FRAME_F_WINDOW_RESET = 1


Fields = list[tuple[str, str, int]]  # (name, numpy format, byte offset)


def _struct(fields: Fields, itemsize: int) -> np.dtype:
    """A little-endian structured dtype with explicit offsets and total size."""
    return np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )


_REGION_HDR_FIELDS: Fields = [
    ("magic", "<u8", 0),
    ("version", "<u4", 8),
    ("header_size", "<u4", 12),
    ("frame_size", "<u4", 16),
    ("server_stride", "<u4", 20),
    ("weights_size", "<u4", 24),
    ("server_capacity", "<u4", 28),
    ("num_servers", "<u4", 32),
    ("ring_len", "<u4", 36),
    ("reservoir_k", "<u4", 40),
    ("producer_pid", "<u4", 44),
    ("epoch", "<u8", 48),
    ("weights_offset", "<u8", 56),
    ("ring_offset", "<u8", 64),
    ("total_size", "<u8", 72),
    ("max_weight_ratio", "<f8", 80),
    ("publish_period_ns", "<u8", 88),
    ("frames_published", "<u8", 128),
    ("heartbeat_ns", "<u8", 136),
]
REGION_HDR = _struct(_REGION_HDR_FIELDS, 256)

_WEIGHTS_SLOT_HDR_FIELDS: Fields = [
    ("seq", "<u8", 0),
    ("ts_ns", "<u8", 8),
    ("decision_no", "<u8", 16),
    ("frame_no", "<u8", 24),
    ("policy_id", "<u4", 32),
    ("num_servers", "<u4", 36),
]
WEIGHTS_SLOT_HDR = _struct(_WEIGHTS_SLOT_HDR_FIELDS, 64)

SAMPLE = _struct([("value", "<f8", 0), ("t_ns", "<u8", 8)], 16)

_SERVER_OBS_FIELDS: Fields = [
    ("active", "<u4", 0),
    ("n_dur", "<u4", 4),
    ("n_fct", "<u4", 8),
    ("active_flows", "<u8", 16),
    ("new_flows", "<u8", 24),
    ("completed_flows", "<u8", 32),
    ("dur_seen", "<u8", 40),
    ("fct_seen", "<u8", 48),
]
SERVER_OBS = _struct(_SERVER_OBS_FIELDS, 64)

_FRAME_HDR_FIELDS: Fields = [
    ("seq", "<u8", 0),
    ("frame_no", "<u8", 8),
    ("ts_ns", "<u8", 16),
    ("window_start_ns", "<u8", 24),
    ("num_servers", "<u4", 32),
    ("flags", "<u4", 36),
]
FRAME_HDR = _struct(_FRAME_HDR_FIELDS, 64)


def _unpacker(fields: Fields) -> struct.Struct:
    """A struct.Struct reading the given fields, in offset order, in one call."""
    codes = {"<u8": "Q", "<u4": "I", "<f8": "d"}
    fmt, pos = "<", 0
    for _, np_format, off in sorted(fields, key=lambda f: f[2]):
        fmt += "x" * (off - pos) + codes[np_format]
        pos = off + np.dtype(np_format).itemsize
    return struct.Struct(fmt)


# The frame header's fields in offset order (seq, frame_no, ts_ns, window_start_ns,
# num_servers, flags) for readers that parse a copied frame with one unpack_from.
FRAME_HDR_UNPACK = _unpacker(_FRAME_HDR_FIELDS)

# Byte offsets of the live 64-bit words, for readers that poll them directly.
_REGION_OFFSETS = {name: off for name, _, off in _REGION_HDR_FIELDS}
OFF_FRAMES_PUBLISHED = _REGION_OFFSETS["frames_published"]
OFF_HEARTBEAT = _REGION_OFFSETS["heartbeat_ns"]
OFF_EPOCH = _REGION_OFFSETS["epoch"]


def round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def server_stride(k: int) -> int:
    """Bytes of one server record: fixed part plus k duration and k FCT samples."""
    return SERVER_OBS.itemsize + 2 * k * SAMPLE.itemsize


def frame_size(capacity: int, k: int) -> int:
    return round_up(FRAME_HDR.itemsize + capacity * server_stride(k), CACHELINE)


def weights_size(capacity: int) -> int:
    return round_up(WEIGHTS_SLOT_HDR.itemsize + capacity * 8, CACHELINE)


def weights_offset() -> int:
    return REGION_HDR.itemsize


def ring_offset(capacity: int) -> int:
    return weights_offset() + weights_size(capacity)


def region_size(capacity: int, ring_len: int, k: int) -> int:
    return ring_offset(capacity) + ring_len * frame_size(capacity, k)


@functools.cache
def server_dtype(k: int) -> np.dtype:
    """One server record: the fixed fields, then `dur` and `fct` sample arrays."""
    fields = _SERVER_OBS_FIELDS
    return np.dtype(
        {
            "names": [f[0] for f in fields] + ["dur", "fct"],
            "formats": [np.dtype(f[1]) for f in fields] + [(SAMPLE, (k,)), (SAMPLE, (k,))],
            "offsets": [f[2] for f in fields]
            + [SERVER_OBS.itemsize, SERVER_OBS.itemsize + k * SAMPLE.itemsize],
            "itemsize": server_stride(k),
        }
    )


@functools.cache
def frame_dtype(capacity: int, k: int) -> np.dtype:
    """A whole ring slot: frame header fields, then `servers[capacity]`."""
    fields = _FRAME_HDR_FIELDS
    return np.dtype(
        {
            "names": [f[0] for f in fields] + ["servers"],
            "formats": [np.dtype(f[1]) for f in fields] + [(server_dtype(k), (capacity,))],
            "offsets": [f[2] for f in fields] + [FRAME_HDR.itemsize],
            "itemsize": frame_size(capacity, k),
        }
    )
