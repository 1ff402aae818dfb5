"""Smoke test: the reservoir benchmarks run in quick mode and return well-formed results."""

from __future__ import annotations

import json
import math

import pytest

from marllbd.benchmarks import BenchResult, registry
from marllbd.benchmarks.reservoir import reservoir_c, reservoir_py_batch
from marllbd.native import NativeMissingError, native_path


def check_result(res: BenchResult, name: str, baseline: str) -> None:
    assert res.name == name and res.baseline == baseline
    assert res.unit == "Mupdates/s"
    assert math.isfinite(res.value) and res.value > 0
    assert math.isfinite(res.baseline_value) and res.baseline_value > 0
    assert res.ratio == pytest.approx(res.value / res.baseline_value)
    assert res.extra["servers"] == 64 and res.extra["k"] == 128
    assert res.extra["window_per_server"] == 1024
    line = json.loads(json.dumps(res.to_json_dict()))
    assert line["name"] == name and "value" in line and "servers" in line


def test_registered() -> None:
    names = registry()
    assert names["reservoir_c"] is reservoir_c
    assert names["reservoir_py_batch"] is reservoir_py_batch


def test_python_bench_quick() -> None:
    (res,) = reservoir_py_batch(True)
    check_result(res, "reservoir_py_batch", "reservoir_add_python_loop")
    assert res.extra["numpy_add_batch_value"] > 0


def test_c_bench_quick() -> None:
    try:
        native_path("marllb-bench-reservoir")
    except NativeMissingError as exc:
        pytest.skip(str(exc))
    (res,) = reservoir_c(True)
    check_result(res, "reservoir_c", "rand_mod_k_c")
    for key in (
        "scalar_batch_value",
        "inline_value",
        "call_value",
        "steady_value",
        "steady_baseline_value",
    ):
        assert res.extra[key] > 0
    assert res.extra["simd"] in ("avx2", "none")
