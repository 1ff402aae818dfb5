"""Create, attach, validate and unlink a shared-memory region over mmap.

The data plane owns the region (`/dev/shm/marllb-<name>`) and creates it; the
daemon only attaches.  We map the file directly instead of using
multiprocessing.shared_memory, whose resource tracker unlinks segments that
the process did not create.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marllbd.errors import MarllbdError
from marllbd.ipc import layout as L

SHM_DIR = Path("/dev/shm")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class RegionError(MarllbdError):
    """A region is missing or its contents contradict the layout contract."""


@dataclass(frozen=True)
class Geometry:
    """The shape of a region: what the header's size fields are derived from."""

    capacity: int
    num_servers: int
    ring_len: int
    k: int

    def validate(self) -> None:
        if not 1 <= self.capacity <= L.MAX_SERVERS:
            raise RegionError(f"capacity: expected 1..{L.MAX_SERVERS}, got {self.capacity}")
        if not 0 <= self.num_servers <= self.capacity:
            raise RegionError(
                f"num_servers: expected 0..capacity ({self.capacity}), got {self.num_servers}"
            )
        rl = self.ring_len
        if not 2 <= rl <= L.MAX_RING_LEN or rl & (rl - 1):
            raise RegionError(f"ring_len: expected a power of two in 2..{L.MAX_RING_LEN}, got {rl}")
        if not 1 <= self.k <= L.MAX_K:
            raise RegionError(f"reservoir_k: expected 1..{L.MAX_K}, got {self.k}")


def region_path(name: str) -> Path:
    """The file behind region `name`; the name may not contain a path."""
    if not _NAME_RE.match(name):
        raise RegionError(
            f"region name {name!r}: expected 1-200 characters of letters, digits, '_', '.', '-'"
        )
    return SHM_DIR / f"marllb-{name}"


def _realtime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


class Region:
    """A mapped region: header view, raw bytes, and who owns it."""

    def __init__(self, name: str, path: Path, mm: mmap.mmap, owner: bool, inode: tuple[int, int]):
        self.name = name
        self.path = path
        self.owner = owner
        self._mm: mmap.mmap | None = mm
        self.buf = np.frombuffer(mm, dtype=np.uint8)
        self.hdr = self.buf[: L.REGION_HDR.itemsize].view(L.REGION_HDR)[0]
        self._hdr_u64 = self.buf[: L.REGION_HDR.itemsize].view("<u8")
        self.inode = inode
        self.epoch = int(self.hdr["epoch"])
        self.geometry = Geometry(
            capacity=int(self.hdr["server_capacity"]),
            num_servers=int(self.hdr["num_servers"]),
            ring_len=int(self.hdr["ring_len"]),
            k=int(self.hdr["reservoir_k"]),
        )

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        num_servers: int,
        *,
        capacity: int | None = None,
        ring_len: int = 8,
        k: int = L.DEFAULT_K,
        mode: int = 0o600,
        gid: int | None = None,
        max_weight_ratio: float = L.DEFAULT_MAX_WEIGHT_RATIO,
        publish_period_ns: int = 250_000_000,
    ) -> Region:
        """Create (replacing any previous one) and initialise a region; magic last."""
        geo = Geometry(capacity or num_servers, num_servers, ring_len, k)
        geo.validate()
        if mode not in (0o600, 0o660):
            raise RegionError(f"mode: expected 0600 or 0660, got {mode:04o}")
        if not (max_weight_ratio >= 1.0 and np.isfinite(max_weight_ratio)):
            raise RegionError(
                f"max_weight_ratio: expected a finite value >= 1, got {max_weight_ratio}"
            )
        path = region_path(name)
        # A fresh inode on every creation: a reader still mapping the old file
        # never sees a half-initialised header.
        path.unlink(missing_ok=True)
        size = L.region_size(geo.capacity, geo.ring_len, geo.k)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            if gid is not None:
                os.fchown(fd, -1, gid)
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            st = os.fstat(fd)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        hdr = np.frombuffer(mm, dtype=np.uint8, count=L.REGION_HDR.itemsize).view(L.REGION_HDR)[0]
        hdr["version"] = L.VERSION
        hdr["header_size"] = L.REGION_HDR.itemsize
        hdr["frame_size"] = L.frame_size(geo.capacity, geo.k)
        hdr["server_stride"] = L.server_stride(geo.k)
        hdr["weights_size"] = L.weights_size(geo.capacity)
        hdr["server_capacity"] = geo.capacity
        hdr["num_servers"] = geo.num_servers
        hdr["ring_len"] = geo.ring_len
        hdr["reservoir_k"] = geo.k
        hdr["producer_pid"] = os.getpid()
        hdr["epoch"] = _realtime_ns()
        hdr["weights_offset"] = L.weights_offset()
        hdr["ring_offset"] = L.ring_offset(geo.capacity)
        hdr["total_size"] = size
        hdr["max_weight_ratio"] = max_weight_ratio
        hdr["publish_period_ns"] = publish_period_ns
        hdr["heartbeat_ns"] = time.monotonic_ns()
        # x86-64 keeps stores in program order (TSO), so the magic written
        # last becomes visible after every field above.
        hdr["magic"] = L.MAGIC
        del hdr
        return cls(name, path, mm, owner=True, inode=(st.st_dev, st.st_ino))

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        allowed_uids: Iterable[int] | None = None,
        writable: bool = True,
    ) -> Region:
        """Map an existing region and validate it; errors name the field and what was expected.

        allowed_uids: owners we accept (default: this process's uid and root).
        """
        path = region_path(name)
        allowed = set(allowed_uids) if allowed_uids is not None else {os.geteuid(), 0}
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise RegionError(
                f"{path}: region does not exist (is the data plane running?)"
            ) from None
        except PermissionError:
            raise RegionError(
                f"{path}: permission denied (expected mode 0600/0660 owned by us or our group)"
            ) from None
        except OSError as exc:  # ELOOP from O_NOFOLLOW: a symlink planted at the path
            raise RegionError(
                f"{path}: cannot open ({exc.strerror}); expected a regular file"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RegionError(f"{path}: not a regular file")
            if st.st_mode & 0o002:
                raise RegionError(
                    f"{path}: mode {stat.S_IMODE(st.st_mode):04o} is world-writable; "
                    "expected 0600 or 0660"
                )
            if st.st_uid not in allowed:
                raise RegionError(
                    f"{path}: owner uid {st.st_uid}; expected one of {sorted(allowed)}"
                )
            if st.st_size < L.REGION_HDR.itemsize:
                raise RegionError(
                    f"{path}: truncated: size {st.st_size} < header_size {L.REGION_HDR.itemsize}"
                )
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, prot)
        finally:
            os.close(fd)
        try:
            validate_header(mm, st.st_size, path)
        except RegionError:
            mm.close()
            raise
        return cls(name, path, mm, owner=False, inode=(st.st_dev, st.st_ino))

    def close(self) -> None:
        """Unmap (once every view into the mapping is gone)."""
        if self._mm is None:
            return
        mm, self._mm = self._mm, None
        del self.buf, self.hdr, self._hdr_u64
        # A reader or writer may still hold a view; the mapping then goes with it.
        with contextlib.suppress(BufferError):
            mm.close()

    def unlink(self) -> None:
        """Remove the region's file; only the owner (the data plane) does this."""
        if not self.owner:
            raise RegionError(f"{self.path}: not unlinking a region this process did not create")
        if self.path.exists() and os.stat(self.path).st_ino == self.inode[1]:
            self.path.unlink()

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- live fields ------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._mm is None

    def frames_published(self) -> int:
        return int(self._hdr_u64[L.OFF_FRAMES_PUBLISHED // 8])

    def heartbeat_ns(self) -> int:
        return int(self._hdr_u64[L.OFF_HEARTBEAT // 8])

    def current_epoch(self) -> int:
        return int(self._hdr_u64[L.OFF_EPOCH // 8])

    def replaced(self) -> bool:
        """True when the producer restarted: a new epoch or a new file at the path."""
        if self.current_epoch() != self.epoch:
            return True
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self.inode

    def heartbeat(self) -> None:
        """Producer: mark the data plane alive without publishing a frame."""
        self._hdr_u64[L.OFF_HEARTBEAT // 8] = time.monotonic_ns()


def validate_header(buf: mmap.mmap | bytes, size: int, where: Path | str) -> None:
    """Check every header field against the layout; raise RegionError naming the first bad one."""
    # A copy: no view into the mapping may outlive a failed attach.
    head = bytes(memoryview(buf)[: L.REGION_HDR.itemsize])
    hdr = np.frombuffer(head, dtype=L.REGION_HDR)[0]

    def bad(field: str, expected: object, got: object) -> RegionError:
        return RegionError(f"{where}: header field {field}: expected {expected}, got {got}")

    if int(hdr["magic"]) != L.MAGIC:
        raise bad("magic", hex(L.MAGIC), hex(int(hdr["magic"])))
    if int(hdr["version"]) != L.VERSION:
        raise bad("version", L.VERSION, int(hdr["version"]))
    if int(hdr["header_size"]) != L.REGION_HDR.itemsize:
        raise bad("header_size", L.REGION_HDR.itemsize, int(hdr["header_size"]))
    geo = Geometry(
        int(hdr["server_capacity"]),
        int(hdr["num_servers"]),
        int(hdr["ring_len"]),
        int(hdr["reservoir_k"]),
    )
    try:
        geo.validate()
    except RegionError as exc:
        raise RegionError(f"{where}: header field {exc}") from None
    derived = {
        "frame_size": L.frame_size(geo.capacity, geo.k),
        "server_stride": L.server_stride(geo.k),
        "weights_size": L.weights_size(geo.capacity),
        "weights_offset": L.weights_offset(),
        "ring_offset": L.ring_offset(geo.capacity),
        "total_size": L.region_size(geo.capacity, geo.ring_len, geo.k),
    }
    for field, expected in derived.items():
        if int(hdr[field]) != expected:
            raise bad(field, expected, int(hdr[field]))
    if size != derived["total_size"]:
        raise bad("total_size", f"the file size {size}", derived["total_size"])
    ratio = float(hdr["max_weight_ratio"])
    if not (np.isfinite(ratio) and ratio >= 1.0):
        raise bad("max_weight_ratio", "a finite value >= 1", ratio)
