"""Shared fixtures: unique region names, the built C tools."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marllbd.native import NativeMissingError, native_path


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels() -> None:
    """Compile the numba kernels once up front (a fresh clone has no cache yet), so that
    timing-bounded tests and the data-plane processes they start load them warm."""
    import numpy as np

    from marllbd import features
    from marllbd.ipc.ring import Frame
    from marllbd.sim.engine import compile_kernels

    compile_kernels()
    raw = np.zeros(4096, dtype=np.uint8)
    raw[32:36] = np.array([1], dtype="<u4").view(np.uint8)  # num_servers = 1
    features.compute(Frame(raw, 1, 8), np.ones(1))


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


@pytest.fixture(autouse=True)
def _dump_tasks_if_stuck(request: pytest.FixtureRequest) -> Iterator[None]:
    """If a test runs for over 150 s, print every asyncio task's stack (a hang's cause)."""
    import asyncio
    import sys
    import threading

    loops: list[asyncio.AbstractEventLoop] = []
    original = asyncio.BaseEventLoop.run_forever

    def dump() -> None:
        for loop in loops:
            if loop.is_running():

                def show() -> None:
                    for task in asyncio.all_tasks():
                        task.print_stack(file=sys.stderr)

                loop.call_soon_threadsafe(show)

    def run_forever(self: asyncio.BaseEventLoop) -> None:
        loops.append(self)
        original(self)

    asyncio.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]
    timer = threading.Timer(150, dump)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        asyncio.BaseEventLoop.run_forever = original  # type: ignore[method-assign]
