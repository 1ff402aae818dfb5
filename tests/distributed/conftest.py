"""One local Ray cluster of two CPUs for every test of this package (starting one takes ~5 s)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ModuleType]:
    ray = pytest.importorskip("ray")  # the distributed extra: make setup installs it
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
