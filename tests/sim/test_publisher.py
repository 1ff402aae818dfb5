"""The simulator as a data plane: frames out, weights in, through real regions."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from marllbd.features import compute
from marllbd.ipc import FrameReader, Region, RegionError, WeightsWriter
from marllbd.sim.publisher import Publisher, region_names
from marllbd.sim.scenario import load_scenario


def test_one_region_per_lb(region_name: str) -> None:
    assert region_names("x", 1) == ["x"]
    assert region_names("x", 3) == ["x-0", "x-1", "x-2"]
    pub = Publisher(load_scenario("paper-7"), region_name, speed=1000)
    try:
        pub.run(max_frames=5)
        for name in pub.names:
            frame = FrameReader(Region.attach(name)).read_newest()
            assert frame is not None and frame.frame_no == 4 and frame.num_servers == 7
            # The frame carries what the features need, on one clock.
            feats = compute(frame, np.ones(7))
            assert np.isfinite(feats).all() and feats[:, 0].sum() > 0
    finally:
        pub.close()
    for name in pub.names:
        with pytest.raises(RegionError, match="does not exist"):
            Region.attach(name)


def test_weights_from_the_slot_steer_new_flows(region_name: str) -> None:
    sc = load_scenario("paper-7").replace(lb_nodes=1, dispatch="wcmp")
    pub = Publisher(sc, region_name, speed=1000)
    try:
        reader = FrameReader(Region.attach(region_name))
        pub.run(max_frames=20)
        before = reader.read_newest()
        WeightsWriter(Region.attach(region_name)).write(np.array([1, 1, 1, 1, 1, 1, 50.0]))
        pub.run(max_frames=60)
        after = reader.read_newest()
        assert before is not None and after is not None
        gained = after.new_flows.astype(np.int64) - before.new_flows.astype(np.int64)
        assert gained[6] > 0.7 * gained.sum()
        assert pub.stats.weights_accepted == 1
        # Invalid weights are refused and the last good ones stay.
        w = WeightsWriter(Region.attach(region_name))
        seq = int(w._u64[0])
        w._u64[0] = seq + 1
        w._w[0] = -1.0
        w._u64[0] = seq + 2
        pub.run(max_frames=61)
        assert pub.stats.weights_refused == 1
        assert pub.engine.lb_w[0][6] == 50.0
    finally:
        pub.close()


def test_runs_continue_past_the_trace(region_name: str) -> None:
    sc = load_scenario("paper-7").replace(duration=1.0)
    pub = Publisher(sc, region_name, speed=1000)
    try:
        pub.run(max_frames=10)  # four frames per run
        assert pub.stats.runs == 3
        frame = FrameReader(Region.attach(f"{region_name}-0")).read_newest()
        assert frame is not None and frame.frame_no == 9
    finally:
        pub.close()


def test_cli_sim_stops_cleanly_on_sigterm(region_name: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "marllbd.cli", "sim", "--scenario", "paper-7",
         "--region", region_name, "--speed", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    frame = None
    while frame is None and time.monotonic() < deadline:
        try:
            frame = FrameReader(Region.attach(f"{region_name}-1")).read_newest()
        except RegionError:
            time.sleep(0.05)
    assert frame is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    with pytest.raises(RegionError):
        Region.attach(f"{region_name}-0")


def test_cli_sim_bad_scenario() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "marllbd.cli", "sim", "--scenario", "nope", "--region", "x"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2
    assert "unknown scenario preset 'nope'" in out.stderr and "Traceback" not in out.stderr
