"""make soak's p99 per minute: read off the daemon's histogram between two scrapes."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from marllbd.daemon.metrics import LATENCY_BUCKETS

_spec = importlib.util.spec_from_file_location(
    "soak", Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
)
assert _spec is not None and _spec.loader is not None
soak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)


def _scrape(latencies: np.ndarray) -> dict[str, float]:
    """The cumulative bucket samples the daemon exports for these latencies."""
    out = {
        f'{soak.BUCKET_PREFIX}{{le="{le}"}}': float((latencies <= le).sum())
        for le in LATENCY_BUCKETS
    }
    out[f'{soak.BUCKET_PREFIX}{{le="+Inf"}}'] = float(latencies.size)
    return out


def test_p99_between_two_scrapes_is_within_its_bucket() -> None:
    rng = np.random.default_rng(7)
    first = rng.lognormal(np.log(300e-6), 0.3, 20_000)  # the minute before
    minute = rng.lognormal(np.log(900e-6), 0.4, 12_000)  # this minute, slower
    before, after = _scrape(first), _scrape(np.concatenate([first, minute]))
    got, exact = soak.p99(before, after), float(np.quantile(minute, 0.99))
    bounds = (0.0, *LATENCY_BUCKETS)
    i = int(np.searchsorted(bounds, exact))  # the bucket (bounds[i-1], bounds[i]] holding it
    assert bounds[i - 1] <= got <= bounds[i]
    assert abs(got - exact) / exact < 0.2, (got, exact)


def test_p99_edge_cases() -> None:
    none = _scrape(np.array([]))
    assert math.isnan(soak.p99(none, none))
    slow = _scrape(np.full(100, 5.0))  # all beyond the last bound: the last finite bound
    assert soak.p99({}, slow) == LATENCY_BUCKETS[-1]
