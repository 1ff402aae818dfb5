"""The daemon's parts alone: mailbox, sd_notify over a real socket, the metrics endpoint."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from marllbd.daemon.channels import Latest
from marllbd.daemon.fallback import Reason
from marllbd.daemon.metrics import Metrics, MetricsServer, ReloadResult
from marllbd.daemon.sdnotify import Notifier
from marllbd.ipc.ring import FrameError


async def test_latest_keeps_only_the_newest() -> None:
    box: Latest[int] = Latest()
    assert await box.get(timeout=0.01) is None
    box.put(1)
    box.put(2)
    assert await box.get() == 2
    assert box.dropped == 1
    waiter = asyncio.create_task(box.get(timeout=5))
    await asyncio.sleep(0)
    box.put(3)
    assert await waiter == 3


async def test_latest_get_is_cancellable_when_an_item_lands_in_the_same_iteration() -> None:
    """The daemon's tasks loop on get(); a cancellation (SIGTERM) that arrives together
    with an item must still end them.  asyncio.wait_for on 3.11 swallowed it: the
    daemon then never stopped."""
    box: Latest[int] = Latest()
    gets = 0

    async def consumer() -> None:
        nonlocal gets
        while True:
            await box.get(timeout=5)
            gets += 1

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)  # the consumer now waits on the mailbox
    box.put(1)  # wakes the wait ...
    task.cancel()  # ... and the cancellation lands in the same loop iteration
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done and task.cancelled()
    assert gets == 0


def test_notifier_speaks_to_a_real_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_interval == 1.0
    n.ready("serving")
    assert server.recv(4096) == b"READY=1\nSTATUS=serving"
    n.reloading()
    msg = server.recv(4096).decode()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and int(msg.split("=")[-1]) > 0
    n.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert server.recv(4096) == b"STOPPING=1"
    n.close()
    server.close()


def test_notifier_abstract_socket_and_disabled() -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0marllbd-test-notify")
    server.settimeout(2)
    Notifier({"NOTIFY_SOCKET": "@marllbd-test-notify"}).status("hi")
    assert server.recv(100) == b"STATUS=hi"
    server.close()
    quiet = Notifier({})
    assert not quiet.enabled and quiet.watchdog_interval is None
    quiet.ready("nobody listens")  # a no-op, not an error


async def _get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = (await reader.read()).decode()
    writer.close()
    head, body = data.split("\r\n\r\n", 1)
    return head.split("\r\n")[0], body


async def test_metrics_endpoint() -> None:
    m = Metrics()
    m.decisions.inc(3)
    server = MetricsServer(m, "127.0.0.1", 0)
    await server.start()
    task = asyncio.create_task(server.serve())
    status, body = await _get(server.port, "/metrics")
    assert status == "HTTP/1.1 200 OK"
    assert "marllbd_decisions_total 3.0" in body and "marllbd_build_info{" in body
    assert 'le="1e-05"' in body and 'le="1.0"' in body  # latency buckets 10 µs .. 1 s
    assert 'le="0.002"' in body  # the 2 ms budget the p99 alert compares against
    status, _ = await _get(server.port, "/nope")
    assert status == "HTTP/1.1 404 Not Found"
    # A second server on the same port fails at start, not later.
    with pytest.raises(OSError):
        await MetricsServer(m, "127.0.0.1", server.port).start()
    task.cancel()
    await server.close()


def test_every_known_label_value_is_exported_at_zero() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    for name, label, values in (
        ("marllbd_invalid_frames_total", "field", FrameError.FIELDS),
        ("marllbd_fallbacks_total", "reason", [r.value for r in Reason]),
        ("marllbd_reloads_total", "result", [r.value for r in ReloadResult]),
    ):
        assert len(values) >= 2
        for v in values:
            assert get(name, {label: v}) == 0.0, (name, v)
    assert "unusable" in set(Reason) and "n_fct" in FrameError.FIELDS
    assert get("marllbd_server_weight", {"server": "0"}) is None  # no region yet


def test_server_gauges_follow_the_attached_region() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    m.set_servers(3)
    for name in ("marllbd_server_weight", "marllbd_server_active_flows",
                 "marllbd_server_flow_duration_decayed_seconds"):  # fmt: skip
        assert [get(name, {"server": str(i)}) for i in range(4)] == [0.0, 0.0, 0.0, None]
    m.servers[2][0].set(7)
    m.set_servers(2)  # a smaller region: server 2 is no longer exported
    assert len(m.servers) == 2 and get("marllbd_server_weight", {"server": "2"}) is None
    m.set_servers(3)
    assert get("marllbd_server_weight", {"server": "2"}) == 0.0


def test_logging_follows_stdout_after_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """`marllbd run` configures logging and may fail afterwards (a policy that does not
    load); a later logger must not write to the stdout of that moment, closed since."""
    import io

    import structlog

    from marllbd.daemon.logs import configure

    saved = structlog.get_config()
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr(sys, "stdout", first)
        configure("info", "json")
        first.close()
        monkeypatch.setattr(sys, "stdout", second)
        structlog.get_logger("t").info("after_close", n=1)
        assert '"event": "after_close"' in second.getvalue()
    finally:
        structlog.configure(**saved)
