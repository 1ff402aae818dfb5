"""Joining a Ray cluster (or starting a local one) and running plain functions as Ray tasks.

`connect(address, num_cpus)` is a context manager: with an address ("auto",
"HOST:6379", "ray://HOST:10001") it connects to that cluster; with None it
starts a local one of `num_cpus` CPUs.  A Ray session already initialised in
this process (a test's fixture, a notebook) is used as it is and left running.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

from marllbd.errors import MarllbdError

P = ParamSpec("P")
T = TypeVar("T")

EXTRA = "pip install -c constraints.txt -e '.[distributed]'"


class DistributedError(MarllbdError):
    """Ray is missing, or the cluster cannot be reached or refused the work."""


def ray_module() -> ModuleType:
    """The `ray` package, or a DistributedError that names the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise DistributedError(f"--ray needs the distributed extra ({EXTRA}): {exc}") from None


@contextmanager
def connect(address: str | None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, initialised for the block: on the cluster at `address`, else a local cluster
    of `num_cpus` CPUs (all of the machine's if None)."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, **options)  # never a cluster found
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the cluster at {address}" if address else "a local cluster"
        raise DistributedError(f"--ray: cannot start or join {where}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class RayExecutor(Executor):
    """A concurrent.futures Executor whose `submit` runs the function as a Ray task (one
    CPU each) on the initialised cluster: marllbd.training.evaluate takes it as `executor`."""

    def __init__(self, num_cpus: float = 1.0) -> None:
        self._ray = ray_module()
        self._num_cpus = num_cpus
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        task = self._remote.get(fn)
        if task is None:
            task = self._remote[fn] = self._ray.remote(num_cpus=self._num_cpus)(fn)
        future: Future[T] = task.remote(*args, **kwargs).future()
        return future
