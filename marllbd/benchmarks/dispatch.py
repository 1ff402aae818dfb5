"""dispatch_pick_peak_ewma, dispatch_pick_prequal: C nanoseconds per new-flow pick of the
stateful rules, each beside the C SED pick measured in the same run.

Both run vpp-plugin/bench/bench_dispatch.c (marllb-bench-dispatch), which times the
three contenders interleaved over 16 and 64 servers on precomputed server states and
prints one JSON line; each benchmark reports one result per server count (the issue's
target: ratio <= 2, i.e. at most twice the SED pick).
"""

from __future__ import annotations

import functools
import json
import subprocess
from typing import Any

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.native import native_path

_KEYS = ("servers", "sed_ns", "peak_ewma_ns", "prequal_ns", "picks", "reps", "checksum")


@functools.cache
def _run(quick: bool) -> dict[str, Any]:
    """marllb-bench-dispatch's JSON (once per process and mode: both benchmarks share it)."""
    exe = native_path("marllb-bench-dispatch")
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
        if not all(key in out for key in _KEYS):
            raise KeyError(next(key for key in _KEYS if key not in out))
    except (json.JSONDecodeError, KeyError) as exc:
        raise RuntimeError(
            f"{exe} printed {proc.stdout.strip()!r}; expected one JSON object with "
            f"{', '.join(_KEYS)}"
        ) from exc
    return dict(out)


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
