"""The sim backend keeps its child data plane alive and stops it on exit."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from marllbd.backends.config import BackendConfig, SimBackendConfig
from marllbd.backends.sim import SimBackend
from marllbd.ipc import Region, RegionError


async def _wait_region(name: str, timeout: float = 60.0) -> Region:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return Region.attach(name)
        except RegionError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_child_is_restarted_and_stopped(region_name: str) -> None:
    conf = BackendConfig(kind="sim", region=region_name, sim=SimBackendConfig("paper-7", speed=10))
    backend = SimBackend(conf)
    assert backend.region_name == f"{region_name}-0"
    assert list(backend.capacities) == [1, 1, 1, 1, 2, 2, 2]  # type: ignore[arg-type]
    await backend.start()
    try:
        first = await _wait_region(backend.region_name)
        pid = int(first.hdr["producer_pid"])
        os.kill(pid, signal.SIGKILL)  # the data plane dies hard
        while True:
            await asyncio.sleep(0.05)
            try:
                again = Region.attach(backend.region_name)
            except RegionError:
                continue
            if int(again.hdr["producer_pid"]) != pid:
                break
        assert backend.child_restarts == 1
    finally:
        await backend.stop()
    assert backend._proc is not None and backend._proc.returncode is not None
    for lb in range(2):
        try:
            Region.attach(f"{region_name}-{lb}")
            raise AssertionError("the stopped child left its region behind")
        except RegionError:
            pass


async def test_a_child_that_cannot_be_spawned_is_retried(
    region_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed exec is logged and retried with backoff; the supervisor does not die."""
    import sys

    from structlog.testing import capture_logs

    unusable = tmp_path / "python"
    unusable.write_text("")  # not executable: EACCES, as for an interpreter out of reach
    monkeypatch.setattr(sys, "executable", str(unusable))
    conf = BackendConfig(kind="sim", region=region_name, sim=SimBackendConfig("seed-16", speed=10))
    backend = SimBackend(conf)
    with capture_logs() as logs:
        await backend.start()
        try:
            while backend.spawn_failures < 2:  # the first try and a retry after 0.25 s
                await asyncio.sleep(0.02)
            assert backend._task is not None and not backend._task.done()
            monkeypatch.undo()  # the interpreter is reachable again: the next retry starts it
            await _wait_region(backend.region_name)
        finally:
            await backend.stop()
    failed = [e for e in logs if e["event"] == "sim_spawn_failed"]
    assert len(failed) >= 2 and failed[0]["argv0"] == str(unusable)
    assert "Permission denied" in failed[0]["error"]
    assert failed[0]["retry_in"] == 0.25 and failed[1]["retry_in"] == 0.5


def test_bad_lb_index() -> None:
    with pytest.raises(ValueError, match=r"backend\.lb: scenario .paper-7. has 2 LB node"):
        SimBackend(BackendConfig(kind="sim", lb=2, sim=SimBackendConfig("paper-7")))
