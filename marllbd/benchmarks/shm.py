"""shm_read: newest-frame read + validation from Python, beside the same read in C."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.ipc.layout import frame_size
from marllbd.ipc.region import Region
from marllbd.ipc.ring import FrameReader, FrameWriter
from marllbd.native import native_path


def _fill(writer: FrameWriter, n: int, seed: int) -> None:
    """Publish one realistic frame: every reservoir full of positive samples."""
    rng = np.random.default_rng(seed)
    rec = writer.begin()
    rec["num_servers"] = n
    srv = rec["servers"]
    srv["active"][:n] = 1
    srv["active_flows"][:n] = rng.integers(0, 100, n)
    srv["n_dur"][:n] = srv["n_fct"][:n] = writer.k
    srv["dur_seen"][:n] = srv["fct_seen"][:n] = 10 * writer.k
    for q in ("dur", "fct"):
        srv[q]["value"][:n] = rng.exponential(0.1, (n, writer.k))
        srv[q]["t_ns"][:n] = time.time_ns()
    writer.commit(rec)


def _python_reads(region: Region, iters: int) -> np.ndarray:
    reader = FrameReader(region)
    lat = np.empty(iters, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(iters):
        reader.last_frame_no = None  # re-read the same newest frame each time
        t0 = clock()
        frame = reader.read_newest()
        lat[i] = clock() - t0
        if frame is None:
            raise RuntimeError("shm_read benchmark: the newest frame was not read")
    return lat


def _measure(name: str, servers: int, quick: bool) -> BenchResult:
    iters = 20_000 if quick else 200_000
    region_name = f"bench-{os.getpid()}-{servers}"
    region = Region.create(region_name, servers, k=128, ring_len=8)
    try:
        _fill(FrameWriter(region), servers, seed=servers)
        _python_reads(region, iters // 10)  # warm-up: numba compile, caches
        lat = _python_reads(region, iters) / 1e3
        out = subprocess.run(
            [str(native_path("marllb-bench-shm-read")), region_name, str(iters)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        c = json.loads(out)
    finally:
        region.unlink()
        region.close()
    median, p99 = float(np.median(lat)), float(np.percentile(lat, 99))
    return BenchResult(
        name=name,
        value=median,
        unit="us",
        baseline="c_read_median_us",
        baseline_value=c["median_us"],
        ratio=ratio(median, c["median_us"]),
        extra={
            "p99_us": p99,
            "baseline_p99_us": c["p99_us"],
            "servers": servers,
            "k": 128,
            "frame_bytes": frame_size(servers, 128),
        },
    )


@benchmark("shm_read")
def shm_read(quick: bool) -> list[BenchResult]:
    return [_measure("shm_read", 16, quick)]


@benchmark("shm_read_64")
def shm_read_64(quick: bool) -> list[BenchResult]:
    return [_measure("shm_read_64", 64, quick)]
