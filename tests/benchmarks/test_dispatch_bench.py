"""Smoke test: the C dispatch-pick benchmarks run in quick mode, one result per server
count, each a ratio to the SED pick of the same run."""

from __future__ import annotations

import json
import math

import pytest

from marllbd.benchmarks import BenchFn, registry
from marllbd.benchmarks.dispatch import dispatch_pick_peak_ewma, dispatch_pick_prequal
from marllbd.native import NativeMissingError, native_path


def test_registered() -> None:
    names = registry()
    assert names["dispatch_pick_peak_ewma"] is dispatch_pick_peak_ewma
    assert names["dispatch_pick_prequal"] is dispatch_pick_prequal


@pytest.mark.parametrize("bench", [dispatch_pick_peak_ewma, dispatch_pick_prequal])
def test_c_bench_quick(bench: BenchFn) -> None:
    try:
        native_path("marllb-bench-dispatch")
    except NativeMissingError as exc:
        pytest.skip(str(exc))
    results = bench(True)
    assert [r.extra["servers"] for r in results] == [16, 64]
    for res in results:
        assert res.name == getattr(bench, "__name__", None) and res.baseline == "sed_pick_c"
        assert res.unit == "ns/pick"
        assert math.isfinite(res.value) and res.value > 0
        assert res.ratio == pytest.approx(res.value / res.baseline_value)
        line = json.loads(json.dumps(res.to_json_dict()))
        assert line["servers"] == res.extra["servers"]
