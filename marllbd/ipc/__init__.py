"""Shared-memory IPC between the data plane and the daemon (layout in vpp-plugin/include)."""

from marllbd.ipc.region import Region, RegionError
from marllbd.ipc.ring import Frame, FrameError, FrameReader, FrameWriter
from marllbd.ipc.shm_region import SharedMemoryRegion
from marllbd.ipc.weights import WeightsError, WeightsReader, WeightsStatus, WeightsWriter

__all__ = [
    "Frame",
    "FrameError",
    "FrameReader",
    "FrameWriter",
    "Region",
    "RegionError",
    "SharedMemoryRegion",
    "WeightsError",
    "WeightsReader",
    "WeightsStatus",
    "WeightsWriter",
]
