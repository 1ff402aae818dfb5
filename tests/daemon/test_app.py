"""The daemon in-process against a real region: decisions, faults, fallbacks, reloads."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from marllbd.daemon import config as cfg
from marllbd.daemon.app import Daemon
from marllbd.ipc import FrameWriter, Region, WeightsReader, WeightsStatus
from marllbd.ipc.region import region_path

N = 4


class Producer:
    """A Python data plane: publishes frames with its own heartbeat."""

    def __init__(self, name: str, period_ns: int = 250_000_000):
        self.name, self.period_ns = name, period_ns
        self.region = Region.create(name, N, k=8, ring_len=8, publish_period_ns=period_ns)
        self.writer = FrameWriter(self.region)
        self.weights = WeightsReader(self.region)

    def publish(self, **override: object) -> None:
        rec = self.writer.begin()
        rec["num_servers"] = N
        srv = rec["servers"]
        srv["active"][:N] = 1
        srv["active_flows"][:N] = [1, 2, 3, 4]
        srv["n_dur"][:N] = srv["n_fct"][:N] = 8
        srv["dur"]["value"][:N] = 0.1
        srv["fct"]["value"][:N] = 0.2
        for key, value in override.items():
            srv[key][0] = value
        self.writer.commit(rec)

    def restart(self) -> None:
        self.region = Region.create(self.name, N, k=8, ring_len=8, publish_period_ns=self.period_ns)
        self.writer = FrameWriter(self.region)
        self.weights = WeightsReader(self.region)


def make_config(region: str, warm_lead: float = 0.001, **policy: object) -> cfg.Config:
    return cfg.from_dict(
        {
            "daemon": {
                "poll_period": 0.002,
                "stale_after": 0.5,
                "attach_backoff_max": 0.05,
                "warm_lead": warm_lead,
            },
            "backend": {"kind": "vpp", "region": region},
            "policy": {
                "name": "sed",
                "budget": 0.05,
                "retry_after": 0.2,
                "capacities": [1, 1, 2, 4],
                **policy,
            },
            "metrics": {"port": 0},
        }
    )


def value(d: Daemon, name: str, **labels: str) -> float:
    v = d.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
async def running(region_name: str) -> AsyncIterator[tuple[Daemon, Producer]]:
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    yield d, prod
    d.stop_event.set()
    assert await asyncio.wait_for(task, 5) == 0


async def decide(d: Daemon, prod: Producer, **override: object) -> None:
    before = value(d, "marllbd_decisions_total")
    prod.publish(**override)
    await until(lambda: value(d, "marllbd_decisions_total") > before)


async def test_decides_every_frame_with_sed_capacity_weights(running) -> None:  # type: ignore[no-untyped-def]
    d, prod = running
    for _ in range(5):
        await decide(d, prod)
    assert prod.weights.read() is WeightsStatus.NEW
    w = prod.weights.weights
    np.testing.assert_allclose(w / w[0], [1, 1, 2, 4])  # SED weights ∝ capacities
    assert value(d, "marllbd_frames_read_total") == 5
    assert value(d, "marllbd_decision_latency_seconds_count") == 5
    assert value(d, "marllbd_server_weight", server="3") == 4 * value(
        d, "marllbd_server_weight", server="0"
    )
    assert value(d, "marllbd_server_active_flows", server="2") == 3.0
    assert value(d, "marllbd_attached") == 1
    assert d.decider._pending is None  # SED is bounded: decided on the loop, never in the thread


async def test_invalid_frames_are_counted_and_skipped(running) -> None:  # type: ignore[no-untyped-def]
    d, prod = running
    await decide(d, prod)
    decided = value(d, "marllbd_decisions_total")
    prod.publish(active=7)
    await until(lambda: value(d, "marllbd_invalid_frames_total", field="active") == 1)
    prod.publish(active_flows=np.uint64(2**64 - 5))
    await until(lambda: value(d, "marllbd_invalid_frames_total", field="active_flows") == 1)
    assert value(d, "marllbd_decisions_total") == decided
    await decide(d, prod)  # and it keeps serving


async def test_producer_restart_and_region_removal(running) -> None:  # type: ignore[no-untyped-def]
    d, prod = running
    await decide(d, prod)
    prod.restart()  # new file, new epoch
    await until(lambda: value(d, "marllbd_producer_restarts_total") == 1)
    await decide(d, prod)
    assert value(d, "marllbd_region_attaches_total") == 2
    region_path(prod.name).unlink()
    await until(lambda: value(d, "marllbd_attached") == 0)
    await asyncio.sleep(0.1)  # absent for a while: the daemon waits, no crash
    prod.restart()
    await decide(d, prod)
    assert value(d, "marllbd_attached") == 1


async def test_stalled_producer_frames_are_stale(running) -> None:  # type: ignore[no-untyped-def]
    d, prod = running
    await decide(d, prod)
    decided = value(d, "marllbd_decisions_total")
    # Commit a frame whose heartbeat then goes back in time by 10 s: the producer stalled.
    prod.publish()
    prod.region._hdr_u64[17] = time.monotonic_ns() - 10_000_000_000
    await until(lambda: value(d, "marllbd_stale_frames_total") == 1)
    assert value(d, "marllbd_data_plane_stalled") == 1
    assert value(d, "marllbd_decisions_total") == decided
    await decide(d, prod)  # a fresh heartbeat: serving again
    assert value(d, "marllbd_data_plane_stalled") == 0


class Raising:
    name, dispatch, needs_ground_truth = "raising", "sed", False

    def __init__(self) -> None:
        self.fail = True

    def reset(self, ctx: object) -> None:
        pass

    def decide(self, features: np.ndarray, active: np.ndarray, truth: object) -> np.ndarray:
        if self.fail:
            raise RuntimeError("model exploded")
        return np.full(features.shape[0], 3.0)


class Hanging(Raising):
    def decide(self, features: np.ndarray, active: np.ndarray, truth: object) -> np.ndarray:
        if self.fail:
            time.sleep(0.3)
        return np.full(features.shape[0], 3.0)


class Garbage(Raising):
    def decide(self, features: np.ndarray, active: np.ndarray, truth: object) -> np.ndarray:
        return np.full(features.shape[0], np.nan) if self.fail else np.full(features.shape[0], 3.0)


class BoundedRaising(Raising):
    bounded = True  # called on the event loop


class BoundedHanging(Hanging):
    bounded = True


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (Raising, "error"),
        (Hanging, "timeout"),
        (Garbage, "invalid_weights"),
        (BoundedRaising, "error"),
        (BoundedHanging, "timeout"),
    ],
)
async def test_policy_failure_falls_back_then_recovers(running, policy, reason) -> None:  # type: ignore[no-untyped-def]
    d, prod = running
    bad = policy()
    d.decider.policy = bad
    await decide(d, prod)
    assert value(d, "marllbd_fallbacks_total", reason=reason) == 1
    # A bounded policy that overran on the loop is moved to the worker thread.
    assert (d.decider._demoted is bad) == (policy is BoundedHanging)
    assert value(d, "marllbd_fallback_active") == 1
    assert prod.weights.read() is WeightsStatus.NEW
    w = prod.weights.weights
    np.testing.assert_allclose(w / w[0], [1, 1, 2, 4])  # SED with capacities
    bad.fail = False
    await asyncio.sleep(0.35)  # retry_after 0.2 s (and the hung call finishes)
    await decide(d, prod)
    await until(lambda: value(d, "marllbd_fallback_active") == 0)
    await decide(d, prod)
    prod.weights.read()
    np.testing.assert_allclose(prod.weights.weights, [3, 3, 3, 3])


async def test_reload_swaps_policy_and_refuses_bad_config(running, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d, prod = running
    path = tmp_path / "marllbd.toml"
    d.config_path = path
    region = d.config.backend.region
    path.write_text(
        f'[backend]\nkind = "vpp"\nregion = "{region}"\n'
        '[policy]\nname = "ecmp"\ncapacities = [1, 1, 2, 4]\n'
        "[metrics]\nport = 0\n[daemon]\npoll_period = 0.002\n"
    )
    assert await d.reload()
    assert d.config.policy.name == "ecmp"
    await decide(d, prod)
    prod.weights.read()
    np.testing.assert_allclose(prod.weights.weights, [1, 1, 1, 1])
    path.write_text("[policy]\nname = 'ecmp'\nbudget = -1\n")
    assert not await d.reload()
    assert value(d, "marllbd_reloads_total", result="refused") == 1
    assert d.config.policy.name == "ecmp"
    path.write_text('[policy]\nname = "no-such-policy"\n')
    assert not await d.reload()
    await decide(d, prod)  # the old config keeps running


async def test_metrics_port_taken(region_name: str) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    conf = cfg.from_dict(
        {"backend": {"kind": "vpp", "region": region_name}, "metrics": {"port": port}}
    )
    assert await Daemon(conf).run() == 1
    s.close()


def test_never_unlinks_a_region_it_did_not_create(region_name: str) -> None:
    prod = Producer(region_name)

    async def go() -> None:
        d = Daemon(make_config(region_name))
        task = asyncio.create_task(d.run())
        await asyncio.wait_for(d.ready.wait(), 60)
        await decide(d, prod)
        d.stop_event.set()
        await task

    asyncio.run(go())
    assert region_path(region_name).exists()
    assert os.stat(region_path(region_name)).st_mode & 0o777 == 0o600


class WrongSize(Raising):
    def reset(self, ctx: object) -> None:
        raise ValueError("checkpoint is for 16 servers, the region has 4")


async def test_unusable_policy_leaves_decisions_to_the_fallback(region_name: str) -> None:
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    d.decider.policy = WrongSize()
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    try:
        await decide(d, prod)
        await decide(d, prod)
        assert value(d, "marllbd_fallbacks_total", reason="unusable") == 2
        assert value(d, "marllbd_fallback_active") == 1
    finally:
        d.stop_event.set()
        assert await task == 0


class Warmed:
    """A bounded policy that records when it is warmed and what it decides."""

    name, dispatch, needs_ground_truth, bounded = "warmed", "sed", False, True

    def __init__(self) -> None:
        self.warmed_at: list[int] = []

    def reset(self, ctx: object) -> None:
        pass

    def decide(self, features: np.ndarray, active: np.ndarray, truth: object) -> np.ndarray:
        return np.full(features.shape[0], 2.0)

    def warm(self, features: np.ndarray, active: np.ndarray) -> np.ndarray:
        self.warmed_at.append(time.monotonic_ns())
        return self.decide(features, active, None)


@pytest.mark.parametrize("lead", [0.02, 0.0])
async def test_warms_the_decision_path_only_just_before_a_frame_is_due(
    region_name: str, lead: float
) -> None:
    period_ns = 100_000_000
    prod = Producer(region_name, period_ns=period_ns)
    d = Daemon(make_config(region_name, warm_lead=lead))
    policy = d.decider.policy = Warmed()
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    try:
        await decide(d, prod)
        committed = prod.region.heartbeat_ns()
        due = committed + period_ns
        # Wait out the warm window [due - lead, due + lead] and a margin; no frame comes.
        await asyncio.sleep((due - time.monotonic_ns()) / 1e9 + lead + 0.05)
        warmed = list(policy.warmed_at)
        await asyncio.sleep(0.1)
        assert policy.warmed_at == warmed  # past the window: no more warming
        if lead == 0:
            assert warmed == []
        else:
            # Warmed, on each look at the ring, but never before the window opened.
            assert len(warmed) >= 2
            assert min(warmed) >= due - lead * 1e9 - 1e6
            await decide(d, prod)  # warming left the decisions alone
            prod.weights.read()
            np.testing.assert_allclose(prod.weights.weights, [2, 2, 2, 2])
    finally:
        d.stop_event.set()
        assert await task == 0


async def test_warms_the_fallback_while_the_policy_is_backing_off(region_name: str) -> None:
    period_ns = 100_000_000
    prod = Producer(region_name, period_ns=period_ns)
    d = Daemon(make_config(region_name, warm_lead=0.02))
    d.decider.policy, fallback = BoundedRaising(), Warmed()
    d.decider.fallback = fallback
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    try:
        await decide(d, prod)  # the policy raises: the fallback decides, retry in 0.2 s
        assert value(d, "marllbd_fallbacks_total", reason="error") == 1
        due = prod.region.heartbeat_ns() + period_ns
        await asyncio.sleep((due - time.monotonic_ns()) / 1e9 + 0.02 + 0.05)
        assert fallback.warmed_at and min(fallback.warmed_at) >= due - 0.02e9 - 1e6
    finally:
        d.stop_event.set()
        assert await task == 0
