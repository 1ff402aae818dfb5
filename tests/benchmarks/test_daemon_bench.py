"""The daemon benchmarks' harness: an in-process daemon against the C peer decides every
frame it reads, and the probes measure what they claim."""

from __future__ import annotations

import os
import time

import numpy as np

from marllbd.benchmarks import daemon as bench
from marllbd.benchmarks import registry
from tests.conftest import require_native


def test_registered() -> None:
    benches = registry()
    assert benches["decision_latency"] is bench.decision_latency
    assert benches["daemon_max_rate"] is bench.daemon_max_rate


def test_harness_decides_the_peers_frames_and_times_them() -> None:
    require_native("marllb-peer")
    name = f"bench-test-{os.getpid()}"
    peer = bench._peer(name, 200.0, servers=4)
    try:
        time.sleep(0.2)
        counts = bench._run(name, 0.5, "sed", bench._counts, poll_period=0.0)
        lat, cpu = bench._latencies(name, 0.3, "sed", poll_period=0.001)
    finally:
        bench._stop(peer)
    assert peer.returncode == 0
    # About 100 frames published in 0.5 s; a busy poll decides nearly all of them.
    assert 50 <= counts["published_delta"] <= 150
    assert counts["decisions_delta"] >= 0.8 * counts["published_delta"]
    assert 0.4 <= counts["wall_delta"] <= 2.0 and counts["cpu_delta"] > 0
    assert lat.size >= 20 and (lat > 0).all() and np.median(lat) < 1e6
    assert 0 < cpu <= 100 * (os.cpu_count() or 1)
