"""Reservoir updates per second, C and Python, each beside its naive same-run baseline.

The headline figures use 64 servers x 128 samples and reset every reservoir
once per window of 1024 updates per server, so about 38% of updates replace a
sample instead of mostly taking the reject path.  The Python baseline loop
sees the same 1024-update windows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio, run_native
from marllbd.dataplane.reservoir import DUR, Reservoir, ReservoirBank

SERVERS, K, WINDOW = 64, 128, 1024  # WINDOW: updates per server per publication window

_C_EXTRA = (
    "scalar_batch_value",
    "simd",
    "inline_value",
    "call_value",
    "steady_value",
    "steady_baseline_value",
    "steady_inline_value",
    "servers",
    "k",
    "updates",
    "window_per_server",
    "reps",
)


@benchmark("reservoir_c")
def reservoir_c(quick: bool) -> list[BenchResult]:
    """marllb_reservoir_bank_add_batch (one call per 256-update frame, on the path the bank
    picks: "simd" is "avx2" or "none") against Algorithm R on libc rand() % seen; the same
    bank forced onto its scalar path is scalar_batch_value, the per-item inline update
    inline_value."""
    out = run_native("marllb-bench-reservoir", quick, ("value", "baseline_value", *_C_EXTRA))
    value, base = float(out["value"]), float(out["baseline_value"])
    extra = {key: out[key] for key in _C_EXTRA}
    return [
        BenchResult(
            name="reservoir_c",
            value=value,
            unit="Mupdates/s",
            baseline="rand_mod_k_c",
            baseline_value=base,
            ratio=ratio(value, base),
            extra=extra,
        )
    ]


def _median_rate(one_pass: Callable[[], None], updates: int, reps: int) -> float:
    """Mupdates/s of the median of `reps` timed passes, after one warm-up pass."""
    one_pass()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    return updates / statistics.median(times) / 1e6


@benchmark("reservoir_py_batch")
def reservoir_py_batch(quick: bool) -> list[BenchResult]:
    """ReservoirBank.add_batch over 64 servers against a Python loop of Reservoir.add."""
    reps = 3 if quick else 7
    windows = 8 if quick else 64
    loop_items = 20_000 if quick else 100_000
    rng = np.random.default_rng(0)
    batch = SERVERS * WINDOW
    servers = rng.integers(0, SERVERS, batch)
    values = rng.exponential(0.1, batch)
    t_ns = np.arange(batch, dtype=np.uint64)

    bank = ReservoirBank(SERVERS, K, seed=1)

    def bank_pass() -> None:
        for _ in range(windows):
            bank.reset()
            bank.add_batch(DUR, servers, values, t_ns)

    single = Reservoir(K, seed=2)

    def numpy_pass() -> None:
        for _ in range(max(1, windows // 8)):
            single.reset()
            single.add_batch(values, t_ns)

    loop = Reservoir(K, seed=3)
    loop_values = values[:loop_items].tolist()

    def loop_pass() -> None:
        for i, v in enumerate(loop_values):
            if i % WINDOW == 0:
                loop.reset()
            loop.add(v, i)

    value = _median_rate(bank_pass, windows * batch, reps)
    numpy_value = _median_rate(numpy_pass, max(1, windows // 8) * batch, reps)
    base = _median_rate(loop_pass, len(loop_values), reps)
    return [
        BenchResult(
            name="reservoir_py_batch",
            value=value,
            unit="Mupdates/s",
            baseline="reservoir_add_python_loop",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={
                "numpy_add_batch_value": numpy_value,
                "numpy_add_batch_size": batch,
                "servers": SERVERS,
                "k": K,
                "window_per_server": WINDOW,
                "updates": windows * batch,
                "baseline_updates": len(loop_values),
                "reps": reps,
            },
        )
    ]
