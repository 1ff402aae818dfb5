"""C and Python on the two ends of a real /dev/shm region, across processes."""

from __future__ import annotations

import ctypes
import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator

import numba
import numpy as np
import pytest

from marllbd.ipc.region import Region, RegionError, region_path
from marllbd.ipc.ring import FrameError, FrameReader, FrameWriter
from marllbd.ipc.weights import WeightsStatus, WeightsWriter
from marllbd.native import load_library
from tests.conftest import require_native


def _wait_for_region(name: str, timeout: float = 5.0) -> Region:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Region.attach(name)
        except RegionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


@pytest.fixture
def peer(region_name: str) -> Iterator[subprocess.Popen]:
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        exe = require_native("marllb-peer")
        p = subprocess.Popen(
            [str(exe), "publish", "--name", region_name, *args], stdout=subprocess.PIPE, text=True
        )
        procs.append(p)
        return p

    yield start  # type: ignore[misc]
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)


def _clib() -> ctypes.CDLL:
    require_native("libmarllb.so")
    lib = load_library()
    lib.marllb_frame_read_newest.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_uint64),
    ]
    lib.marllb_frame_read_newest.restype = ctypes.c_int
    lib.marllb_weights_state_init.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.marllb_weights_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.marllb_weights_read.restype = ctypes.c_int
    return lib


def _address(region: Region) -> int:
    return region.buf.ctypes.data


def test_python_frames_read_by_c(region_name: str) -> None:
    lib = _clib()
    r = Region.create(region_name, 3, ring_len=4, k=8)
    w = FrameWriter(r)
    buf = np.zeros(FrameReader(r)._frame_size, dtype=np.uint8)
    no = ctypes.c_uint64()
    assert lib.marllb_frame_read_newest(_address(r), buf.ctypes.data, ctypes.byref(no)) == 1
    for i in range(6):
        rec = w.begin()
        rec["num_servers"] = 3
        rec["servers"]["active_flows"][:3] = [i, 2 * i, 3 * i]
        rec["servers"]["fct"]["value"][1, 7] = i + 0.5
        w.commit(rec)
    assert lib.marllb_frame_read_newest(_address(r), buf.ctypes.data, ctypes.byref(no)) == 0
    assert no.value == 5
    from marllbd.ipc.ring import Frame

    f = Frame(buf, 3, 8)
    assert list(f.active_flows) == [5, 10, 15] and f.fct_values[1, 7] == 5.5


def test_python_weights_read_by_c(region_name: str) -> None:
    lib = _clib()
    r = Region.create(region_name, 3, max_weight_ratio=10.0)
    state = ctypes.create_string_buffer(64 * 1024)
    lib.marllb_weights_state_init(state, 3)
    assert lib.marllb_weights_read(_address(r), state) == WeightsStatus.EMPTY
    WeightsWriter(r).write(np.array([1.0, 2.5, 4.0]), policy_id=3)
    assert lib.marllb_weights_read(_address(r), state) == WeightsStatus.NEW
    weights = np.frombuffer(state.raw[48:72], dtype="<f8")
    assert list(weights) == [1.0, 2.5, 4.0]
    assert lib.marllb_weights_read(_address(r), state) == WeightsStatus.UNCHANGED


def test_c_peer_frames_and_weights_roundtrip(region_name: str, peer) -> None:  # type: ignore[no-untyped-def]
    """The C peer publishes real traffic frames and dispatches by the weights we write."""
    proc = peer("--servers", "4", "--period-ms", "5", "--load", "0.9", "--print-weights")
    region = _wait_for_region(region_name)
    rd = FrameReader(region)
    frames = []
    deadline = time.monotonic() + 10
    while len(frames) < 20 and time.monotonic() < deadline:
        f = rd.read_newest()
        if f is not None:
            frames.append(f)
        time.sleep(0.002)
    assert len(frames) == 20
    assert all(b.frame_no > a.frame_no for a, b in itertools.pairwise(frames))
    last = frames[-1]
    assert last.num_servers == 4 and last.active.all()
    assert last.new_flows.sum() > 0
    # Heavily favour server 3: it must receive most of the new flows from now on.
    WeightsWriter(region).write(np.array([1.0, 1.0, 1.0, 50.0]), policy_id=9)
    line = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
    assert line["status"] == "new" and line["weights"] == [1.0, 1.0, 1.0, 50.0]
    before = last.new_flows.astype(np.int64)
    time.sleep(0.3)
    after = rd.read_newest()
    assert after is not None
    gained = after.new_flows.astype(np.int64) - before
    assert gained[3] > gained[:3].sum()
    # Weights the data plane must refuse: it keeps the last good ones.
    w = WeightsWriter(region)
    seq = int(w._u64[0])
    w._u64[0] = seq + 1
    w._w[0] = np.nan
    w._u64[0] = seq + 2
    assert json.loads(proc.stdout.readline())["status"] == "invalid"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert not region_path(region_name).exists()  # the owner removed its region


@numba.njit(cache=True)
def _self_consistent(raw: np.ndarray, n: int, k: int) -> bool:  # pragma: no cover - compiled
    """Stress frames carry their frame number in every counter and sample."""
    u64 = raw.view(np.uint64)
    f64 = raw.view(np.float64)
    no = u64[1]
    words = 8 + 4 * k
    for i in range(n):
        b = 8 + i * words
        for c in range(2, 7):
            if u64[b + c] != no:
                return False
        for j in range(2 * k):
            if f64[b + 8 + 2 * j] != float(no) or u64[b + 9 + 2 * j] != no:
                return False
    return True


def test_concurrent_reads_never_accept_torn_frames(region_name: str, peer) -> None:  # type: ignore[no-untyped-def]
    """The C peer publishes flat out; 10^6 Python reads accept only whole frames."""
    peer("--stress", "--servers", "4", "--k", "32", "--ring", "8")
    region = _wait_for_region(region_name)
    rd = FrameReader(region)
    reads, accepted = 0, 0
    # 10^6 reads, and at least 1000 accepted frames (when other processes keep
    # the writer off the CPU, reads see no new frame; keep reading, bounded).
    deadline = time.monotonic() + 60
    while reads < 1_000_000 or (accepted < 1000 and time.monotonic() < deadline):
        reads += 1
        try:
            f = rd.read_newest()
        except FrameError:
            pytest.fail("a stress frame failed validation: torn data was accepted")
        if f is not None:
            accepted += 1
            assert _self_consistent(f.raw, 4, 32), f"frame {f.frame_no} is not self-consistent"
    s = rd.stats
    assert accepted == s.frames and accepted >= 1000
    # The writer laps an 8-slot ring while we copy: torn copies and overruns happen
    # and are counted, never accepted.
    assert s.torn > 0 and s.overruns > 0 and s.missed > 0
