"""The VPP backend: attach to the region the VPP plugin (or the C peer) creates.

Optional second sink: a stock VPP lb plugin, which knows nothing of our
region, driven through vpp_papi's lb_as_set_weight with integer weights
0..100, only for servers whose weight changed, and at most once per
min_interval per server.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import numpy as np
import structlog

from marllbd.backends.config import BackendConfig, VppPapiConfig

log = structlog.get_logger("marllbd.backend.vpp")


def integer_weights(weights: np.ndarray) -> np.ndarray:
    """Scale so the largest weight is 100, round, and keep every server at least 1."""
    w = np.asarray(weights, dtype=np.float64)
    return np.clip(np.rint(w / w.max() * 100.0), 1, 100).astype(np.int64)


class PapiSink:
    """Push weights to VPP's lb plugin through a vpp_papi client (or a stand-in)."""

    def __init__(self, client: Any, config: VppPapiConfig, clock: Any = time.monotonic):
        self.client = client
        self.config = config
        self.clock = clock
        self.vip = ipaddress.ip_network(config.vip, strict=False)
        self.servers = [ipaddress.ip_address(a) for a in config.servers]
        self._sent = np.full(len(self.servers), -1, dtype=np.int64)
        self._when = np.full(len(self.servers), -np.inf)
        self.calls = 0
        self.errors = 0

    def push(self, weights: np.ndarray) -> int:
        """Send changed weights now; returns the number of lb_as_set_weight calls made."""
        iw = integer_weights(weights[: len(self.servers)])
        now = self.clock()
        sent = 0
        for i, w in enumerate(iw):
            if w == self._sent[i] or now - self._when[i] < self.config.min_interval:
                continue
            try:
                reply = self.client.api.lb_as_set_weight(
                    pfx=self.vip, protocol=self.config.protocol, port=self.config.port,
                    as_address=self.servers[i], weight=int(w), is_flush=False,
                )  # fmt: skip
            except Exception as exc:
                self.errors += 1
                log.warning("papi_failed", server=i, error=str(exc))
                continue
            if getattr(reply, "retval", 0) != 0:
                self.errors += 1
                log.warning("papi_refused", server=i, retval=reply.retval)
                continue
            self._sent[i] = w
            self._when[i] = now
            sent += 1
        self.calls += sent
        return sent


def connect_papi() -> Any:
    """A connected vpp_papi client (needs the vpp extra and a running VPP)."""
    try:
        from vpp_papi import VPPApiClient
    except ImportError as exc:
        raise RuntimeError(
            "backend.papi.enabled needs vpp_papi: pip install 'marllbd[vpp]'"
        ) from exc
    client = VPPApiClient()
    client.connect("marllbd")
    return client


class VppBackend:
    kind = "vpp"

    def __init__(self, config: BackendConfig, papi_client: Any = None):
        self.config = config
        self.region_name = config.region
        self.capacities: np.ndarray | None = None
        self._client = papi_client
        self.sink: PapiSink | None = None

    async def start(self) -> None:
        if self.config.papi.enabled:
            client = self._client if self._client is not None else connect_papi()
            self.sink = PapiSink(client, self.config.papi)

    async def stop(self) -> None:
        if self.sink is not None and self._client is None:
            self.sink.client.disconnect()
        self.sink = None

    def publish_extra(self, weights: np.ndarray) -> None:
        if self.sink is not None:
            self.sink.push(weights)
