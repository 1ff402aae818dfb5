"""Fuzzing the decoders: random shared memory, configs and trace files never crash
the reader; they decode or are refused with the module's own error type.

A quick run is in the default suite; `make fuzz` runs >= 10 000 examples each."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marllbd.daemon.config import ConfigError, from_dict
from marllbd.ipc import FrameError, FrameReader, Region, WeightsReader, WeightsStatus
from marllbd.ipc import layout as L
from marllbd.sim.traces import TraceError, load

QUICK = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))

_REGION = Region.create(f"fuzz-{np.random.default_rng().integers(1 << 30)}", 4, k=8, ring_len=4)
_REGION.unlink()  # the mapping stays usable; nothing is left in /dev/shm
_RING = L.ring_offset(4)
_FRAME = L.frame_size(4, 8)
_WOFF = L.weights_offset()


def check_frame(payload: bytes, published: int) -> None:
    buf = _REGION.buf
    buf[_RING : _RING + _FRAME] = np.frombuffer(payload.ljust(_FRAME, b"\0")[:_FRAME], np.uint8)
    _REGION._hdr_u64[L.OFF_FRAMES_PUBLISHED // 8] = published
    reader = FrameReader(_REGION)
    try:
        frame = reader.read_newest()
    except FrameError as exc:
        assert str(exc)
        return
    if frame is not None:  # accepted: every field is within the contract
        assert frame.num_servers <= 4
        assert ((frame.n_dur <= 8) & (frame.n_fct <= 8)).all()
        assert np.isfinite(frame.dur_values).all() and (frame.fct_values >= 0).all()


def check_weights(payload: bytes) -> None:
    size = L.weights_size(4)
    _REGION.buf[_WOFF : _WOFF + size] = np.frombuffer(payload.ljust(size, b"\0")[:size], np.uint8)
    reader = WeightsReader(_REGION)
    status = reader.read()
    assert isinstance(status, WeightsStatus)
    w = reader.weights
    assert w.shape == (4,) and np.isfinite(w).all() and (w > 0).all()


toml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
config_like = st.dictionaries(
    st.sampled_from(["daemon", "backend", "policy", "metrics", "logging", "other"]),
    st.dictionaries(
        st.sampled_from(
            [
                "poll_period",
                "kind",
                "region",
                "port",
                "name",
                "budget",
                "capacities",
                "sim",
                "papi",
                "level",
                "lb",
                "x",
            ]
        ),
        toml_values,
        max_size=4,
    ),
    max_size=4,
)


def check_config(data: dict) -> None:
    try:
        from_dict(data)
    except ConfigError as exc:
        assert str(exc).startswith("<dict>: ")


def check_trace(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trace.csv"
        path.write_bytes(text)
        try:
            tr = load(path)
        except TraceError as exc:
            assert "trace.csv" in str(exc)
            return
        assert (
            (np.diff(tr.arrival) >= 0).all() and (tr.work > 0).all() and np.isfinite(tr.work).all()
        )


csv_like = st.lists(
    st.lists(
        st.sampled_from(["0", "1.5", "-1", "nan", "inf", "1e9", "x", "", "0.25", "2"]),
        min_size=1,
        max_size=4,
    ).map(",".join),
    max_size=8,
).map(lambda rows: ("timestamp,work\n" + "\n".join(rows)).encode())
frame_bytes = st.binary(min_size=0, max_size=_FRAME)


@pytest.mark.parametrize(
    "profile", [QUICK, pytest.param(LONG, marks=pytest.mark.fuzz)], ids=["quick", "long"]
)
def test_fuzz_frames(profile: settings) -> None:
    profile(given(frame_bytes, st.integers(0, 2**64 - 1))(check_frame))()


@pytest.mark.parametrize(
    "profile", [QUICK, pytest.param(LONG, marks=pytest.mark.fuzz)], ids=["quick", "long"]
)
def test_fuzz_weights_slot(profile: settings) -> None:
    profile(given(st.binary(max_size=L.weights_size(4)))(check_weights))()


@pytest.mark.parametrize(
    "profile", [QUICK, pytest.param(LONG, marks=pytest.mark.fuzz)], ids=["quick", "long"]
)
def test_fuzz_config(profile: settings) -> None:
    profile(given(config_like)(check_config))()


@pytest.mark.parametrize(
    "profile", [QUICK, pytest.param(LONG, marks=pytest.mark.fuzz)], ids=["quick", "long"]
)
def test_fuzz_trace_files(profile: settings) -> None:
    profile(given(csv_like | st.binary(max_size=200))(check_trace))()
