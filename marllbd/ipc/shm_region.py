"""The original description's `SharedMemoryRegion` API: a thin name over Region, FrameReader
and WeightsWriter.

shm = SharedMemoryRegion.create("lb_rl_shm")   # data-plane side: owns the region
shm = SharedMemoryRegion.attach("lb_rl_shm")   # control-plane side
stats = shm.read_msg_out()                     # newest frame (data plane -> daemon)
shm.write_msg_in(weights)                      # weights slot (daemon -> data plane)
"""

from __future__ import annotations

import numpy as np

from marllbd.ipc.layout import DEFAULT_K
from marllbd.ipc.region import Region
from marllbd.ipc.ring import Frame, FrameReader, FrameWriter
from marllbd.ipc.weights import WeightsReader, WeightsWriter


class SharedMemoryRegion:
    """msg_out = observation frames, msg_in = weights, over one mapped region."""

    def __init__(self, region: Region):
        self.region = region
        self._reader = FrameReader(region)
        self._weights = WeightsWriter(region)
        self.frames = FrameWriter(region) if region.owner else None
        self.weights_in = WeightsReader(region)

    @classmethod
    def create(
        cls, name: str, num_servers: int = 16, *, k: int = DEFAULT_K, ring_len: int = 8
    ) -> SharedMemoryRegion:
        return cls(Region.create(name, num_servers, k=k, ring_len=ring_len))

    @classmethod
    def attach(cls, name: str) -> SharedMemoryRegion:
        return cls(Region.attach(name))

    def read_msg_out(self) -> Frame | None:
        """The newest frame not read before, or None."""
        return self._reader.read_newest()

    def write_msg_in(self, weights: np.ndarray | list[float], policy_id: int = 0) -> int:
        """Publish per-server weights; returns the decision number."""
        frame_no = self._reader.last_frame_no or 0
        return self._weights.write(
            np.asarray(weights, dtype=np.float64), policy_id=policy_id, frame_no=frame_no
        )

    def close(self) -> None:
        self.region.close()

    def unlink(self) -> None:
        self.region.unlink()
