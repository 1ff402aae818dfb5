"""The original description's SharedMemoryRegion calls work against the real region."""

from __future__ import annotations

import numpy as np

from marllbd.ipc import SharedMemoryRegion, WeightsStatus


def test_seed_calls(region_name: str) -> None:
    dp = SharedMemoryRegion.create(region_name)  # the data plane's side
    cp = SharedMemoryRegion.attach(region_name)  # the daemon's side
    assert cp.read_msg_out() is None
    assert dp.frames is not None and cp.frames is None
    rec = dp.frames.begin()
    rec["num_servers"] = 16
    rec["servers"]["active_flows"][:16] = np.arange(16)
    dp.frames.commit(rec)
    stats = cp.read_msg_out()
    assert stats is not None and list(stats.active_flows) == list(range(16))
    assert cp.write_msg_in([2.0] * 16) == 1
    assert dp.weights_in.read() is WeightsStatus.NEW
    assert list(dp.weights_in.weights) == [2.0] * 16
    cp.close()
    dp.unlink()
