"""The sim backend keeps its child data plane alive and stops it on exit."""

from __future__ import annotations

import asyncio
import os
import signal

from marllbd.backends.sim import SimBackend
from marllbd.daemon.config import BackendConfig, SimBackendConfig
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


def test_bad_lb_index() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"backend\.lb: scenario .paper-7. has 2 LB node"):
        SimBackend(BackendConfig(kind="sim", lb=2, sim=SimBackendConfig("paper-7")))
