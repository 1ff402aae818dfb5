"""Shared fixtures: unique region names, the built C tools."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marllbd.native import NativeMissingError, native_path


@pytest.fixture
def region_name() -> Iterator[str]:
    """A region name unique to the test; its file is removed afterwards."""
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    Path(f"/dev/shm/marllb-{name}").unlink(missing_ok=True)


def require_native(name: str) -> Path:
    """Path of a built C artefact; a missing one fails in CI and skips locally."""
    try:
        return native_path(name)
    except NativeMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
