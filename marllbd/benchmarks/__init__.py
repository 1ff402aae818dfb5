"""Benchmarks: each figure is measured beside its baseline in the same run.

A benchmark is a function `(quick: bool) -> list[BenchResult]` registered with
`@benchmark("name")`; `marllbd bench` runs them and prints one JSON object per
result line.  Absolute times on shared machines are noise; the ratio to the
baseline measured in the same run is the figure that holds.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

BenchFn = Callable[[bool], list["BenchResult"]]

_REGISTRY: dict[str, BenchFn] = {}


@dataclass(frozen=True)
class BenchResult:
    """One measured figure and its same-run baseline."""

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d


def benchmark(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register a benchmark under `name` (the `--only` key)."""

    def deco(fn: BenchFn) -> BenchFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def registry() -> dict[str, BenchFn]:
    """All benchmarks, importing their modules on first use."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return dict(_REGISTRY)


def ratio(value: float, baseline_value: float) -> float:
    """value / baseline_value, or inf when the baseline is zero."""
    return value / baseline_value if baseline_value else float("inf")


def latency_result(
    name: str, us: np.ndarray, base_us: np.ndarray, baseline: str, **extra: Any
) -> BenchResult:
    """The JSON line of a latency benchmark: the median of `us` (microseconds per call)
    beside the median of `base_us`, the baseline's measured in the same run, with both
    p99s and the count of calls."""
    med, base = float(np.median(us)), float(np.median(base_us))
    return BenchResult(
        name=name,
        value=med,
        unit="us",
        baseline=baseline,
        baseline_value=base,
        ratio=ratio(med, base),
        extra={
            "p99_us": float(np.percentile(us, 99)),
            "baseline_p99_us": float(np.percentile(base_us, 99)),
            "decisions": int(np.size(us)),
            **extra,
        },
    )


def run_native(name: str, quick: bool, keys: tuple[str, ...]) -> dict[str, Any]:
    """Run the C benchmark program `name` (built by `make native`, `--quick` when quick) and
    return the one JSON object it prints, which must hold every key in `keys`;
    RuntimeError naming the program otherwise."""
    import json
    import subprocess

    from marllbd.native import native_path

    exe = native_path(name)
    proc = subprocess.run(
        [str(exe), *(["--quick"] if quick else [])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} exited with status {proc.returncode}: {proc.stderr.strip()}")
    try:
        out = json.loads(proc.stdout)
        missing = [key for key in keys if key not in out]
    except (json.JSONDecodeError, TypeError):
        missing = list(keys)
    if missing:
        raise RuntimeError(
            f"{exe} printed {proc.stdout.strip()!r}; expected one JSON object with "
            f"{', '.join(keys)}"
        )
    return dict(out)
