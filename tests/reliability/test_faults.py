"""Fault injection against a running daemon (the rest of the catalogue is in
tests/daemon/test_app.py: invalid frames, stalls, region removal, policy
failures, bad reloads, a taken metrics port)."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from pathlib import Path

from marllbd.daemon import config as cfg
from marllbd.daemon.app import Daemon
from marllbd.daemon.sdnotify import Notifier
from marllbd.ipc.region import region_path
from tests.daemon.test_app import Producer, decide, make_config, until, value


async def _start(d: Daemon) -> asyncio.Task[int]:
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    return task


async def test_reattach_within_one_second_of_a_restart(region_name: str) -> None:
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    task = await _start(d)
    try:
        await decide(d, prod)
        t0 = time.monotonic()
        prod.restart()
        await until(lambda: value(d, "marllbd_region_attaches_total") == 2, timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert value(d, "marllbd_producer_restarts_total") == 1
        await decide(d, prod)
    finally:
        d.stop_event.set()
        assert await task == 0


async def test_corrupt_frames_and_a_bad_magic_after_recreation(region_name: str) -> None:
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    task = await _start(d)
    try:
        await decide(d, prod)
        rec = prod.writer.begin()
        rec["num_servers"] = 99  # more servers than the region holds
        prod.writer.commit(rec)
        await until(lambda: value(d, "marllbd_invalid_frames_total", field="num_servers") == 1)
        prod.publish(n_fct=999)
        await until(lambda: value(d, "marllbd_invalid_frames_total", field="n_fct") == 1)
        # The producer comes back with a region whose magic is wrong: refused, no crash.
        prod.restart()
        with open(region_path(region_name), "r+b") as f:
            f.write(b"BADMAGIC")
        await until(lambda: value(d, "marllbd_attached") == 0)
        await asyncio.sleep(0.2)
        assert value(d, "marllbd_attached") == 0 and not task.done()
        prod.restart()  # a good region again
        await decide(d, prod)
    finally:
        d.stop_event.set()
        assert await task == 0


async def test_watchdog_fed_while_healthy_even_if_the_data_plane_stalls(
    region_name: str, tmp_path: Path
) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.setblocking(False)
    prod = Producer(region_name)
    notifier = Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"})
    d = Daemon(make_config(region_name), notifier=notifier)
    task = await _start(d)

    def drain() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(server.recv(4096))
            except BlockingIOError:
                return out

    received: list[bytes] = []

    def pinged(n: int) -> bool:
        received.extend(drain())
        return received.count(b"WATCHDOG=1") >= n

    def withheld() -> float:
        return value(d, "marllbd_watchdog_withheld_total")

    try:
        await decide(d, prod)
        # No frames at all from here on: the data plane stalls ...
        await until(lambda: value(d, "marllbd_data_plane_stalled") == 1)
        drain()
        # ... but the daemon itself is healthy: pings go on (every 0.1 s), none withheld.
        await until(lambda: pinged(5), timeout=5)
        assert withheld() == 0

        # A task that stops making progress (write-back stuck forever): pings stop.
        async def stuck(timeout: float | None = None) -> None:
            await asyncio.Event().wait()

        d.decisions.get = stuck  # type: ignore[method-assign]
        await until(lambda: withheld() >= 1, timeout=5)
        # Every later tick withholds too (the stuck task never refreshes its liveness):
        # a ping sent before the first withheld tick is already in the socket, drained here.
        drain()
        first = withheld()
        await until(lambda: withheld() >= first + 3, timeout=5)
        assert drain().count(b"WATCHDOG=1") == 0
    finally:
        d.stop_event.set()
        assert await asyncio.wait_for(task, 5) == 0
        server.close()


async def test_sigterm_during_a_reload_exits_cleanly(region_name: str, tmp_path: Path) -> None:
    conf_path = tmp_path / "marllbd.toml"
    conf_path.write_text(
        f'[backend]\nkind = "sim"\nregion = "{region_name}"\n[backend.sim]\nscenario = "paper-7"\n'
        "speed = 20.0\n[metrics]\nport = 0\n"
    )
    d = Daemon(cfg.load(conf_path), conf_path)
    task = await _start(d)
    await until(lambda: value(d, "marllbd_decisions_total") >= 3, timeout=60)
    conf_path.write_text(
        f'[backend]\nkind = "vpp"\nregion = "{region_name}-vpp"\n[metrics]\nport = 0\n'
    )
    d.reload_event.set()
    await asyncio.sleep(0.01)  # the reload is under way: stopping the sim child
    d.stop_event.set()
    assert await asyncio.wait_for(task, 10) == 0
    for lb in range(2):  # whichever backend was running, its child is gone with its regions
        await until(lambda lb=lb: not Path(f"/dev/shm/marllb-{region_name}-{lb}").exists(), 10)


SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "policies" / "seed-16-sac-gru"


async def test_bad_checkpoint_on_reload_keeps_the_old_policy(
    region_name: str, tmp_path: Path
) -> None:
    """A learned policy serves; its checkpoint is corrupted or swapped, then SIGHUP: refused."""
    import shutil

    import pytest

    pytest.importorskip("torch")
    ckpt = tmp_path / "policy"
    shutil.copytree(SHIPPED, ckpt)
    prod = Producer(region_name)  # 4 servers: the shipped 16-server policy does not fit...
    conf_path = tmp_path / "marllbd.toml"
    base = (
        f'[backend]\nkind = "vpp"\nregion = "{region_name}"\n[metrics]\nport = 0\n'
        "[daemon]\npoll_period = 0.002\n"
    )
    conf_path.write_text(base + '[policy]\nname = "sed"\n')
    d = Daemon(cfg.load(conf_path), conf_path)
    task = await _start(d)
    try:
        await decide(d, prod)
        # ... so a reload onto it is refused at load time (dims) or falls back at decide time.
        weights = ckpt / "weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])  # truncated
        conf_path.write_text(base + f'[policy]\nname = "sac-gru:{ckpt}"\n')
        assert not await d.reload()
        assert d.config.policy.name == "sed"
        (ckpt / "manifest.json").write_text('{"format": 1, "algorithm": "qmix"}')
        assert not await d.reload()
        assert value(d, "marllbd_reloads_total", result="refused") == 2
        await decide(d, prod)  # still serving with the old policy
    finally:
        d.stop_event.set()
        assert await task == 0


async def test_watchdog_fed_while_no_data_plane_has_come(region_name: str, tmp_path: Path) -> None:
    """The poller's attach backoff grows to 2 s; waiting is not a stuck loop, so the
    pings (every 0.25 s with WatchdogSec=0.5) go on."""
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(5)
    notifier = Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "500000"})
    conf = make_config(region_name)
    conf = replace(conf, daemon=replace(conf.daemon, attach_backoff_max=2.0))  # the default
    d = Daemon(conf, notifier=notifier)  # no producer, ever
    task = await _start(d)
    try:
        t0 = time.monotonic()
        gaps, last = [], t0
        while time.monotonic() - t0 < 4.0:  # past the 1 s and 2 s backoff steps
            msg = await asyncio.to_thread(server.recv, 4096)
            if msg == b"WATCHDOG=1":
                now = time.monotonic()
                gaps.append(now - last)
                last = now
        assert value(d, "marllbd_attached") == 0
        assert len(gaps) >= 8 and max(gaps[1:]) < 0.5, gaps
    finally:
        d.stop_event.set()
        assert await asyncio.wait_for(task, 5) == 0
        server.close()
