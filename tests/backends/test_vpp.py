"""The VPP backend's second sink: lb_as_set_weight through a vpp_papi-shaped client."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import numpy as np

from marllbd.backends.config import BackendConfig, VppPapiConfig
from marllbd.backends.vpp import PapiSink, VppBackend, integer_weights


class FakeApi:
    """Records calls the way vpp_papi's client.api would receive them."""

    def __init__(self, fail_for: set[str] | None = None):
        self.calls: list[dict] = []
        self.fail_for = fail_for or set()

    def lb_as_set_weight(self, **kw: object) -> SimpleNamespace:
        self.calls.append(kw)
        return SimpleNamespace(retval=-1 if str(kw["as_address"]) in self.fail_for else 0)


def _sink(api: FakeApi, clock: list[float], min_interval: float = 1.0) -> PapiSink:
    conf = VppPapiConfig(
        enabled=True, vip="10.0.0.1/32", port=80,
        servers=("10.1.0.1", "10.1.0.2", "10.1.0.3"), min_interval=min_interval,
    )  # fmt: skip
    return PapiSink(SimpleNamespace(api=api), conf, clock=lambda: clock[0])


def test_integer_weights() -> None:
    assert list(integer_weights(np.array([0.5, 1.0, 2.0]))) == [25, 50, 100]
    assert list(integer_weights(np.array([1e-6, 1.0]))) == [1, 100]  # never 0: 0 drains a server


def test_only_changed_servers_and_rate_limited() -> None:
    api, clock = FakeApi(), [0.0]
    sink = _sink(api, clock)
    assert sink.push(np.array([1.0, 2.0, 4.0])) == 3
    first = api.calls[0]
    assert first["pfx"] == ipaddress.ip_network("10.0.0.1/32") and first["weight"] == 25
    assert first["as_address"] == ipaddress.ip_address("10.1.0.1") and first["is_flush"] is False
    assert sink.push(np.array([1.0, 2.0, 4.0])) == 0  # nothing changed
    clock[0] = 0.5
    assert sink.push(np.array([2.0, 2.0, 4.0])) == 0  # changed, but within min_interval
    clock[0] = 1.5
    assert sink.push(np.array([2.0, 2.0, 4.0])) == 1  # now server 0 only
    assert api.calls[-1]["weight"] == 50 and len(api.calls) == 4


def test_refusals_and_errors_are_counted_not_raised() -> None:
    api, clock = FakeApi(fail_for={"10.1.0.2"}), [0.0]
    sink = _sink(api, clock, min_interval=0.0)
    assert sink.push(np.array([1.0, 1.0, 1.0])) == 2
    assert sink.errors == 1

    class Broken:
        def lb_as_set_weight(self, **kw: object) -> None:
            raise ConnectionError("vpp went away")

    broken = _sink(Broken(), clock)  # type: ignore[arg-type]
    assert broken.push(np.array([1.0, 1.0, 1.0])) == 0 and broken.errors == 3


async def test_backend_uses_the_sink() -> None:
    api = FakeApi()
    conf = BackendConfig(
        kind="vpp", region="r",
        papi=VppPapiConfig(enabled=True, vip="10.0.0.1/32", servers=("10.1.0.1", "10.1.0.2")),
    )  # fmt: skip
    backend = VppBackend(conf, papi_client=SimpleNamespace(api=api))
    await backend.start()
    backend.publish_extra(np.array([1.0, 3.0]))
    assert [c["weight"] for c in api.calls] == [33, 100]
    await backend.stop()
    backend.publish_extra(np.array([1.0, 1.0]))  # no sink after stop: nothing sent
    assert len(api.calls) == 2
