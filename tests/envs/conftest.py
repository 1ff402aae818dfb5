"""What the environment tests share: a scenario overloaded with every kind of fault, one
replaying a trace file, and an unpickling that hands arrays over read-only."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from marllbd.sim import traces
from marllbd.sim.scenario import Scenario, from_dict

_T = TypeVar("_T")


def read_only_copy(obj: _T) -> _T:
    """obj pickled with out-of-band buffers and unpickled from read-only memory, as Ray's
    object store ships it: every array comes back read-only."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    assert buffers, "nothing went out of band: not the shared-memory path"
    return pickle.loads(data, buffers=[bytes(b.raw()) for b in buffers])  # type: ignore[no-any-return]


# Servers 0..2 with 1 worker, 3..5 with 2 (4 slots each) and a short backlog, so that
# backlogs fill and flows are rejected; two LB nodes, each with groups of three servers.
_SERVERS = [{"workers": w, "mp_level": 4, "backlog": 6} for w in (1, 1, 1, 2, 2, 2)]
_FAULTS = [
    {"time": 1.0, "server": 5, "kind": "speed", "speed": 0.5},
    {"time": 1.5, "server": 2, "kind": "down"},
    {"time": 2.5, "server": 3, "kind": "capacity", "workers": 1},
    {"time": 2.5, "server": 0, "kind": "capacity", "workers": 3},
    {"time": 3.5, "server": 2, "kind": "up"},
]


def _scenario(trace: dict[str, Any], **top: Any) -> Scenario:
    data = {
        "duration": 5.0,
        "control_interval": 0.25,
        "lb_nodes": 2,
        "servers": _SERVERS,
        "groups": [[0, 1, 2], [3, 4, 5]],
        "trace": trace,
        "faults": _FAULTS,
        **top,
    }
    return from_dict(data, name="env-test")


@pytest.fixture(scope="session")
def faulty_scenario() -> Scenario:
    """Offered load 1.3 over 5 s, with a server down and up, a capacity drop and rise, and
    a slowed server."""
    return _scenario({"kind": "poisson", "load": 1.3, "mean_work": 0.1})


@pytest.fixture(scope="session")
def file_trace_scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The faulty scenario's servers and faults, replaying a CSV trace file at load 0.95."""
    trace = traces.poisson(60.0, 5.0, seed=3)
    path = Path(tmp_path_factory.mktemp("trace")) / "trace.csv"
    rows = np.column_stack([trace.arrival, trace.work])
    np.savetxt(path, rows, delimiter=",", header="timestamp,work", comments="", fmt="%.9g")
    return _scenario({"kind": "file", "path": str(path), "load": 0.95})
