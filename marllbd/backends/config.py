"""The `[backend]` table of the daemon's configuration, as frozen dataclasses.

It lives with the backends (not in marllbd.daemon.config, which reads it from TOML)
so that the backends do not import the daemon's configuration reader.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("sim", "vpp")
"""Every backend kind `create` knows."""


@dataclass(frozen=True)
class SimBackendConfig:
    scenario: str = "seed-16"
    """Preset name or TOML file of the scenario the simulator data plane runs."""
    speed: float = 1.0
    """Simulated seconds per wall-clock second."""
    spawn: bool = True
    """Start `marllbd sim` as a child (and restart it if it dies); false attaches to one running."""


@dataclass(frozen=True)
class VppPapiConfig:
    """Optional second sink: a stock VPP lb plugin through vpp_papi's lb_as_set_weight."""

    enabled: bool = False
    vip: str = ""
    """The VIP prefix, e.g. "10.0.0.1/32"."""
    protocol: int = 6
    port: int = 80
    servers: tuple[str, ...] = ()
    """Application-server addresses, in server-index order."""
    min_interval: float = 1.0
    """Seconds between two updates of the same server (rate limit)."""


@dataclass(frozen=True)
class BackendConfig:
    kind: str = "sim"
    """One of BACKENDS."""
    region: str = "marllbd"
    """Region name; with several LB nodes the sim backend serves `<region>-<lb>`."""
    lb: int = 0
    """Which LB node this daemon decides for (one daemon per LB)."""
    sim: SimBackendConfig = SimBackendConfig()
    papi: VppPapiConfig = VppPapiConfig()
    expected_uids: tuple[int, ...] = ()
    """Owners of the region we accept (empty: our own uid and root)."""
