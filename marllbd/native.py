"""Locate and load the C data-plane library and tools built from vpp-plugin/.

`make setup` builds them into build/native/.  MARLLB_NATIVE_DIR overrides the
directory (for installs outside the source tree).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from marllbd.errors import MarllbdError

_REPO = Path(__file__).resolve().parent.parent


class NativeMissingError(MarllbdError, RuntimeError):
    """The C library or tool has not been built."""


def native_dir() -> Path:
    """Directory holding libmarllb.so and the C tools."""
    override = os.environ.get("MARLLB_NATIVE_DIR")
    return Path(override) if override else _REPO / "build" / "native"


def native_path(name: str) -> Path:
    """Path of a built artefact (library or executable); raises if absent."""
    path = native_dir() / name
    if not path.exists():
        raise NativeMissingError(
            f"{path} not found: build the C side with `make native` "
            "(or set MARLLB_NATIVE_DIR to the directory that holds it)"
        )
    return path


def header_dir() -> Path:
    """Directory of the C headers (the layout contract)."""
    return _REPO / "vpp-plugin" / "include"


@functools.cache
def load_library() -> ctypes.CDLL:
    """Load libmarllb.so once per process."""
    return ctypes.CDLL(str(native_path("libmarllb.so")))
