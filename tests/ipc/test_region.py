"""Region create/attach/validate/unlink: every bad region is refused by name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from marllbd.ipc import layout as L
from marllbd.ipc.region import Region, RegionError, region_path


def test_create_then_attach_roundtrip(region_name: str) -> None:
    r = Region.create(region_name, 16, capacity=32, ring_len=4, k=64)
    path = region_path(region_name)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == L.region_size(32, 4, 64)
    a = Region.attach(region_name)
    assert (a.geometry.capacity, a.geometry.num_servers, a.geometry.ring_len, a.geometry.k) == (
        32,
        16,
        4,
        64,
    )
    assert a.epoch == r.epoch and int(a.hdr["producer_pid"]) == os.getpid()
    assert not a.owner and r.owner
    with pytest.raises(RegionError, match="did not create"):
        a.unlink()
    a.close()
    r.unlink()
    assert not path.exists()


def test_group_mode_0660(region_name: str) -> None:
    Region.create(region_name, 2, mode=0o660)
    assert stat.S_IMODE(os.stat(region_path(region_name)).st_mode) == 0o660


@pytest.mark.parametrize("mode", [0o666, 0o644, 0o700, 0o400])
def test_create_refuses_unsafe_modes(region_name: str, mode: int) -> None:
    with pytest.raises(RegionError, match="mode"):
        Region.create(region_name, 2, mode=mode)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ring_len": 6}, "ring_len"),
        ({"ring_len": 1}, "ring_len"),
        ({"k": 0}, "reservoir_k"),
        ({"capacity": 2}, "num_servers"),
        ({"max_weight_ratio": 0.5}, "max_weight_ratio"),
    ],
)
def test_create_refuses_bad_geometry(region_name: str, kwargs: dict, field: str) -> None:
    with pytest.raises(RegionError, match=field):
        Region.create(region_name, 4, **kwargs)


def test_bad_names_are_refused() -> None:
    for bad in ["", "../etc/passwd", "a/b", "x" * 300]:
        with pytest.raises(RegionError, match="region name"):
            region_path(bad)


def test_attach_missing(region_name: str) -> None:
    with pytest.raises(RegionError, match="does not exist"):
        Region.attach(region_name)


def _corrupt(region_name: str, offset: int, data: bytes) -> None:
    with open(region_path(region_name), "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("magic", 0x1234, "magic: expected 0x4853424c4c52414d"),
        ("version", 2, "version: expected 1"),
        ("header_size", 128, "header_size: expected 256"),
        ("frame_size", 64, "frame_size: expected"),
        ("ring_len", 3, "ring_len: expected a power of two"),
        ("server_capacity", 0, "capacity: expected 1..1024"),
        ("num_servers", 99, "num_servers: expected 0..capacity"),
        ("ring_offset", 8, "ring_offset: expected"),
        ("total_size", 1, "total_size: expected"),
    ],
)
def test_attach_names_the_bad_field(region_name: str, field: str, value: int, message: str) -> None:
    r = Region.create(region_name, 4, ring_len=4, k=8)
    r.close()
    dt, off = L.REGION_HDR.fields[field][:2]
    _corrupt(region_name, off, np.array(value, dtype=dt).tobytes())
    with pytest.raises(RegionError, match=message):
        Region.attach(region_name)


def test_attach_truncated(region_name: str) -> None:
    Region.create(region_name, 4).close()
    os.truncate(region_path(region_name), 100)
    with pytest.raises(RegionError, match="truncated"):
        Region.attach(region_name)
    os.truncate(region_path(region_name), 4096)
    with pytest.raises(RegionError, match="total_size"):
        Region.attach(region_name)


def test_attach_refuses_world_writable(region_name: str) -> None:
    Region.create(region_name, 4).close()
    os.chmod(region_path(region_name), 0o666)
    with pytest.raises(RegionError, match="world-writable"):
        Region.attach(region_name)


def test_attach_refuses_unexpected_owner(region_name: str) -> None:
    Region.create(region_name, 4).close()
    with pytest.raises(RegionError, match="owner uid"):
        Region.attach(region_name, allowed_uids=[os.geteuid() + 12345])


def test_attach_refuses_symlink(region_name: str, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"\0" * 4096)
    region_path(region_name).symlink_to(target)
    with pytest.raises(RegionError):
        Region.attach(region_name)


def test_recreate_is_detected_as_replaced(region_name: str) -> None:
    Region.create(region_name, 4)
    a = Region.attach(region_name)
    assert not a.replaced()
    Region.create(region_name, 4)  # producer restart: new file, new epoch
    assert a.replaced()
    b = Region.attach(region_name)
    assert b.epoch != a.epoch
    region_path(region_name).unlink()
    assert b.replaced()
