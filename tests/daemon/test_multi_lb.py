"""Decentralised serving: one simulator with two LB regions, one daemon per LB."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marllbd.daemon import config as cfg
from marllbd.daemon.app import Daemon, policy_id
from marllbd.ipc import Region, WeightsReader, WeightsStatus
from tests.daemon.test_app import until, value


def _config(
    region: str, lb: int, spawn: bool, scenario: str = "paper-7", policy: str = "sed"
) -> cfg.Config:
    return cfg.from_dict(
        {
            "daemon": {"poll_period": 0.002, "attach_backoff_max": 0.1},
            "backend": {"kind": "sim", "region": region, "lb": lb,
                        "sim": {"scenario": scenario, "speed": 20.0, "spawn": spawn}},
            "policy": {"name": policy},
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


THREE_LBS = """\
duration = 600.0
seed = 0
control_interval = 0.25
lb_nodes = 3

[servers]
workers = [1, 1, 1, 1, 2, 2, 2]

[trace]
kind = "poisson"
load = 0.9
work = "exp"
mean_work = 0.1
"""
UNIVERSAL = f"sac-gru:{Path(__file__).parents[2] / 'configs/policies/sac-gru'}"


@pytest.mark.parametrize("algorithm", ["sac-gru", "qmix"])
async def test_three_daemons_serve_one_checkpoint_each_on_its_own_frames(
    region_name: str, tmp_path: Path, algorithm: str
) -> None:
    """The multi-LB deployment: one simulator with three LB regions, one daemon per LB,
    each loading the same checkpoint (the shipped universal SAC-GRU, or an equivariant
    QMIX agent: any LB and server count).  Each decides with the learned policy (no
    fallback), publishes into its own region's weights slot, and decides on its own LB's
    frames only: frames of one number differ between the daemons (each LB's flows are
    its own), and each daemon's frames are its own region's."""
    scenario = tmp_path / "three.toml"
    scenario.write_text(THREE_LBS)
    spec = UNIVERSAL
    if algorithm == "qmix":
        from marllbd_rl import qmix

        spec = f"qmix:{qmix.save_untrained(tmp_path / 'qmix')}"
    daemons = [
        Daemon(_config(region_name, lb, lb == 0, scenario=str(scenario), policy=spec))
        for lb in range(3)
    ]
    seen: list[dict[int, bytes]] = [{} for _ in daemons]
    tasks = [asyncio.create_task(d.run()) for d in daemons]
    try:
        for d in daemons:
            await until(lambda d=d: d.reader is not None, timeout=60)
        for d, frames in zip(daemons, seen, strict=True):
            reader = d.reader
            assert reader is not None
            read = reader.read_newest

            def record(read: Any = read, frames: dict[int, bytes] = frames) -> Any:
                frame = read()
                if frame is not None:
                    frames[frame.frame_no] = frame.raw.tobytes()
                return frame

            reader.read_newest = record  # type: ignore[method-assign]
        for d in daemons:
            await until(lambda d=d: value(d, "marllbd_decisions_total") >= 20, timeout=90)
        for lb, d in enumerate(daemons):
            assert d.backend.region_name == f"{region_name}-{lb}"
            assert value(d, "marllbd_fallbacks_total") == 0
            assert d.decider.policy.name == algorithm
            weights = WeightsReader(Region.attach(f"{region_name}-{lb}"))
            assert weights.read() is WeightsStatus.NEW
            assert weights.policy_id == policy_id(spec)
            assert np.isfinite(weights.weights).all() and (weights.weights > 0).all()
        for i in range(3):
            for j in range(i + 1, 3):
                common = seen[i].keys() & seen[j].keys()
                assert common, "the daemons read no frame of the same number"
                assert all(seen[i][k] != seen[j][k] for k in common)
    finally:
        for d in reversed(daemons):
            d.stop_event.set()
        assert await asyncio.gather(*tasks) == [0, 0, 0]
