"""Frame ring: newest complete frame, torn reads and overruns counted, contents checked."""

from __future__ import annotations

import numpy as np
import pytest

from marllbd.ipc.region import Region
from marllbd.ipc.ring import FrameError, FrameReader, FrameWriter


def _publish(w: FrameWriter, n: int, fill: float = 1.0, **fields: object) -> int:
    rec = w.begin()
    rec["num_servers"] = n
    srv = rec["servers"]
    srv["active"][:n] = 1
    srv["active_flows"][:n] = np.arange(n) + int(rec["frame_no"])
    srv["dur"]["value"][:n] = fill
    srv["fct"]["value"][:n] = 2 * fill
    srv["n_dur"][:n] = w.k
    for key, value in fields.items():
        srv[key] = value
    return w.commit(rec)


@pytest.fixture
def pair(region_name: str) -> tuple[FrameWriter, FrameReader]:
    r = Region.create(region_name, 4, ring_len=4, k=8)
    return FrameWriter(r), FrameReader(Region.attach(region_name))


def test_reads_newest_once(pair: tuple[FrameWriter, FrameReader]) -> None:
    w, rd = pair
    assert rd.read_newest() is None
    for _ in range(3):
        _publish(w, 4)
    f = rd.read_newest()
    assert f is not None and f.frame_no == 2
    assert list(f.active_flows) == [2, 3, 4, 5]
    assert f.dur_values.shape == (4, 8) and (f.fct_values == 2.0).all()
    assert f.active.all() and (f.n_dur == 8).all()
    assert rd.read_newest() is None  # nothing new
    assert rd.stats.missed == 0  # frames before the first read are not "missed"
    for _ in range(3):
        _publish(w, 4)
    f = rd.read_newest()
    assert f is not None and f.frame_no == 5
    assert rd.stats.missed == 2 and rd.stats.overruns == 0


def test_overrun_is_counted(pair: tuple[FrameWriter, FrameReader]) -> None:
    w, rd = pair
    _publish(w, 4)
    assert rd.read_newest() is not None
    for _ in range(6):  # ring of 4: frames 1..4 are lost
        _publish(w, 4)
    f = rd.read_newest()
    assert f is not None and f.frame_no == 6
    assert rd.stats.overruns == 1 and rd.stats.missed == 5


def test_torn_slot_is_dropped_and_counted(pair: tuple[FrameWriter, FrameReader]) -> None:
    w, rd = pair
    _publish(w, 4)
    rec = w.begin()  # writer stalls mid-frame; newest complete is frame 0
    f = rd.read_newest()
    assert f is not None and f.frame_no == 0
    w.commit(rec)
    # Simulate the producer lapping the reader: the newest slot is odd again.
    rd.last_frame_no = None
    rd._seqs[1][0] += 1
    assert rd.read_newest() is None
    assert rd.stats.torn == 3  # three retries, each counted


def test_frame_copy_is_isolated_from_later_writes(pair: tuple[FrameWriter, FrameReader]) -> None:
    w, rd = pair
    _publish(w, 4, fill=1.0)
    f = rd.read_newest()
    for _ in range(8):
        _publish(w, 4, fill=9.0)
    assert f is not None and (f.dur_values == 1.0).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("active", 2, r"servers\[0\].active: expected 0 or 1"),
        ("n_dur", 9, r"servers\[0\].n_dur: expected <= k 8"),
        ("active_flows", np.uint64(2**64 - 1), r"servers\[0\].active_flows: .* out of range"),
    ],
)
def test_invalid_frames_raise_and_count(
    pair: tuple[FrameWriter, FrameReader], field: str, value: object, message: str
) -> None:
    w, rd = pair
    rec = w.begin()
    rec["num_servers"] = 4
    rec["servers"][field][0] = value
    w.commit(rec)
    with pytest.raises(FrameError, match=message) as err:
        rd.read_newest()
    assert err.value.field == field  # the metric label, without the server index
    assert rd.stats.invalid == 1 and rd.stats.frames == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -1.0])
def test_non_finite_or_negative_samples_rejected(
    pair: tuple[FrameWriter, FrameReader], bad: float
) -> None:
    w, rd = pair
    rec = w.begin()
    rec["num_servers"] = 4
    rec["servers"]["fct"]["value"][2, 5] = bad
    w.commit(rec)
    with pytest.raises(FrameError, match=r"servers\[2\].fct\[5\].value"):
        rd.read_newest()


@pytest.mark.parametrize(
    ("quantity", "server", "slot", "bad"),
    [("dur", 0, 0, -5e-324), ("dur", 3, 7, np.nan), ("fct", 0, 0, -np.inf), ("fct", 3, 7, -0.5)],
)
def test_bad_sample_found_in_every_corner(
    pair: tuple[FrameWriter, FrameReader], quantity: str, server: int, slot: int, bad: float
) -> None:
    """The first and last sample of each quantity of the first and last server are checked."""
    w, rd = pair
    rec = w.begin()
    rec["num_servers"] = 4
    rec["servers"][quantity]["value"][server, slot] = bad
    w.commit(rec)
    with pytest.raises(FrameError, match=rf"servers\[{server}\].{quantity}\[{slot}\].value") as err:
        rd.read_newest()
    assert err.value.field == quantity


def test_edge_sample_values_accepted(pair: tuple[FrameWriter, FrameReader]) -> None:
    """-0.0, the smallest subnormal and the largest finite double are valid samples."""
    w, rd = pair
    rec = w.begin()
    rec["num_servers"] = 4
    rec["servers"]["dur"]["value"][0, :3] = [-0.0, 5e-324, np.finfo(np.float64).max]
    rec["servers"]["fct"]["t_ns"][1, :] = np.uint64(2**64 - 1)  # timestamps are not values
    w.commit(rec)
    f = rd.read_newest()
    assert f is not None and rd.stats.invalid == 0 and f.flags == 0


def test_server_count_above_capacity(pair: tuple[FrameWriter, FrameReader]) -> None:
    w, rd = pair
    rec = w.begin()
    rec["num_servers"] = 5
    w.commit(rec)
    with pytest.raises(FrameError, match="num_servers: expected <= capacity 4") as err:
        rd.read_newest()
    assert err.value.field == "num_servers"


def test_frame_error_field_is_a_known_field() -> None:
    assert FrameError("n_fct", "servers[1].n_fct: ...").field == "n_fct"
    with pytest.raises(ValueError, match="FrameError field: expected one of"):
        FrameError("servers[1].n_fct", "a field with its index is not a field")


def test_only_the_owner_writes(region_name: str) -> None:
    Region.create(region_name, 2)
    with pytest.raises(ValueError, match="creator"):
        FrameWriter(Region.attach(region_name))
