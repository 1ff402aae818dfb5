"""dispatch_pick_peak_ewma, dispatch_pick_prequal: C nanoseconds per new-flow pick of the
stateful rules, each beside the C SED pick measured in the same run.

Both run vpp-plugin/bench/bench_dispatch.c (marllb-bench-dispatch), which times the
three contenders interleaved over 16 and 64 servers on precomputed server states and
prints one JSON line; each benchmark reports one result per server count (the issue's
target: ratio <= 2, i.e. at most twice the SED pick).
"""

from __future__ import annotations

import functools
from typing import Any

from marllbd.benchmarks import BenchResult, benchmark, ratio, run_native

_KEYS = ("servers", "sed_ns", "peak_ewma_ns", "prequal_ns", "picks", "reps", "checksum")


@functools.cache
def _run(quick: bool) -> dict[str, Any]:
    """marllb-bench-dispatch's JSON (once per process and mode: both benchmarks share it)."""
    return run_native("marllb-bench-dispatch", quick, _KEYS)


def _results(name: str, key: str, quick: bool) -> list[BenchResult]:
    out = _run(quick)
    return [
        BenchResult(
            name=name,
            value=float(value),
            unit="ns/pick",
            baseline="sed_pick_c",
            baseline_value=float(base),
            ratio=ratio(float(value), float(base)),
            extra={"servers": int(servers), "picks": out["picks"], "reps": out["reps"]},
        )
        for servers, value, base in zip(out["servers"], out[key], out["sed_ns"], strict=True)
    ]


@benchmark("dispatch_pick_peak_ewma")
def dispatch_pick_peak_ewma(quick: bool) -> list[BenchResult]:
    """marllb_peak_ewma_pick (power of two choices, one exp) against marllb_sed_pick."""
    return _results("dispatch_pick_peak_ewma", "peak_ewma_ns", quick)


@benchmark("dispatch_pick_prequal")
def dispatch_pick_prequal(quick: bool) -> list[BenchResult]:
    """marllb_prequal_pick on a pool of 16 probes (one refreshed per pick) against
    marllb_sed_pick."""
    return _results("dispatch_pick_prequal", "prequal_ns", quick)
