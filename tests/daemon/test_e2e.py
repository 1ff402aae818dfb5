"""`marllbd run` as a subprocess: metrics over HTTP, decisions, SIGHUP swap to the C peer,
SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from marllbd.ipc import FrameReader, Region, RegionError
from tests.conftest import require_native


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            out[name] = float(v)
    return out


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except (OSError, RegionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def write_config(path: Path, port: int, backend: str) -> None:
    path.write_text(
        f"[daemon]\npoll_period = 0.002\n[metrics]\nport = {port}\n{backend}\n"
        '[logging]\nformat = "json"\n'
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.terminate()  # let owners remove their regions
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_daemon_end_to_end(tmp_path: Path, region_name: str, procs: list[subprocess.Popen]) -> None:
    port = free_port()
    conf = tmp_path / "marllbd.toml"
    sim_backend = (
        f'[backend]\nkind = "sim"\nregion = "{region_name}"\n'
        '[backend.sim]\nscenario = "seed-16"\nspeed = 20.0\n'
    )
    write_config(conf, port, sim_backend)
    log_path = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "marllbd.cli", "run", "--config", str(conf)],
        stdout=log_path.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    procs.append(daemon)
    wait_for(lambda: scrape(port).get("marllbd_decisions_total", 0) >= 20)
    m = scrape(port)
    assert m["marllbd_attached"] == 1 and m["marllbd_frames_read_total"] >= 20
    assert m['marllbd_policy_info{fallback="sed",name="sed"}'] == 1
    # The simulated data plane dispatches by the published weights (SED with
    # capacities): the 4-worker servers take more new flows than the 1-worker ones.
    frame = FrameReader(Region.attach(region_name)).read_newest()
    assert frame is not None
    assert m['marllbd_server_weight{server="15"}'] == 4 * m['marllbd_server_weight{server="0"}']
    assert frame.new_flows[[7, 14, 15]].sum() > 2 * frame.new_flows[[0, 1, 4]].sum()

    # SIGHUP: swap to the VPP backend, served by the C peer standing in for VPP.
    peer_region = f"{region_name}-peer"
    peer = subprocess.Popen(
        [str(require_native("marllb-peer")), "publish", "--name", peer_region, "--servers", "4",
         "--period-ms", "20", "--print-weights"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs.append(peer)
    write_config(conf, port, f'[backend]\nkind = "vpp"\nregion = "{peer_region}"\n')
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: scrape(port).get("marllbd_backend_swaps_total", 0) == 1)
    line = json.loads(peer.stdout.readline())  # type: ignore[union-attr]
    assert line["status"] == "new" and len(line["weights"]) == 4
    assert np.allclose(line["weights"], 1.0)  # SED with unknown capacities: equal weights
    wait_for(lambda: not Path(f"/dev/shm/marllb-{region_name}").exists(), 10)  # old sim stopped
    before = scrape(port)["marllbd_decisions_total"]
    wait_for(lambda: scrape(port)["marllbd_decisions_total"] > before + 5)

    # SIGTERM: a clean exit within 2 s, and the peer's region is left alone.
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    try:
        code = daemon.wait(timeout=10)
    except subprocess.TimeoutExpired:
        daemon.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack into the log
        daemon.wait(timeout=10)
        pytest.fail("no exit 10 s after SIGTERM; daemon log:\n" + log_path.read_text()[-8000:])
    assert code == 0
    assert time.monotonic() - t0 < 2.0
    assert Path(f"/dev/shm/marllb-{peer_region}").exists()
    logs = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    events = [e["event"] for e in logs]
    for expected in ("metrics_listening", "started", "attached", "reloaded", "stopped"):
        assert expected in events, expected
    assert "producer_restarted" not in events  # a swap is not a data-plane restart
    peer.send_signal(signal.SIGTERM)
    peer.wait(timeout=5)


def test_run_rejects_bad_config(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[metrics]\nport = -3\n")
    out = subprocess.run(
        [sys.executable, "-m", "marllbd.cli", "run", "--config", str(conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "metrics.port: must be an integer in 0..65535" in out.stderr
    assert "Traceback" not in out.stderr
