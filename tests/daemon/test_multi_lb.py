"""Decentralised serving: one simulator with two LB regions, one daemon per LB."""

from __future__ import annotations

import asyncio

from marllbd.daemon import config as cfg
from marllbd.daemon.app import Daemon
from marllbd.ipc import Region, WeightsReader, WeightsStatus
from tests.daemon.test_app import until, value


def _config(region: str, lb: int, spawn: bool) -> cfg.Config:
    return cfg.from_dict(
        {
            "daemon": {"poll_period": 0.002, "attach_backoff_max": 0.1},
            "backend": {"kind": "sim", "region": region, "lb": lb,
                        "sim": {"scenario": "paper-7", "speed": 20.0, "spawn": spawn}},
            "metrics": {"port": 0},
        }
    )  # fmt: skip


async def test_two_daemons_side_by_side(region_name: str) -> None:
    owner = Daemon(_config(region_name, 0, spawn=True))  # spawns `marllbd sim` (2 regions)
    peer = Daemon(_config(region_name, 1, spawn=False))  # attaches to the second region
    tasks = [asyncio.create_task(d.run()) for d in (owner, peer)]
    try:
        for d in (owner, peer):
            await until(lambda d=d: value(d, "marllbd_decisions_total") >= 10, timeout=60)
        assert owner.backend.region_name == f"{region_name}-0"
        assert peer.backend.region_name == f"{region_name}-1"
        for lb in (0, 1):
            reader = WeightsReader(Region.attach(f"{region_name}-{lb}"))
            assert reader.read() is WeightsStatus.NEW
            w = reader.weights
            assert list(w / w[0]) == [1, 1, 1, 1, 2, 2, 2]  # SED with paper-7's capacities
        # Each daemon read only its own LB's frames.
        assert owner.reader is not None and peer.reader is not None
        assert owner.region is not None and peer.region is not None
        assert owner.region.path != peer.region.path
    finally:
        for d in (peer, owner):
            d.stop_event.set()
        assert await asyncio.gather(*tasks) == [0, 0]
