"""Data-plane backends: where the daemon's region comes from and where weights also go."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from marllbd.backends.config import BackendConfig


class Backend(Protocol):
    """The data plane behind one region: started, stopped, swapped on reload."""

    kind: str
    region_name: str
    capacities: np.ndarray | None
    """Static capacity per server when the backend knows it (sim: the scenario's workers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish_extra(self, weights: np.ndarray) -> None:
        """Send published weights to any second sink (VPP lb plugin); must not block."""
        ...


def create(config: BackendConfig) -> Backend:
    """The backend named by config.kind."""
    if config.kind == "sim":
        from marllbd.backends.sim import SimBackend

        return SimBackend(config)
    from marllbd.backends.vpp import VppBackend

    return VppBackend(config)
