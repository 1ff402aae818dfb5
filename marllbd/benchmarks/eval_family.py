"""eval_family: scenarios evaluated per minute with `jobs=2` worker processes, beside `jobs=1`.

The workload is the shape of a family evaluation (issue 14: 20 samples × 3
seeds × 8 policies): 16-server scenarios of 60 s that differ in load, every
heuristic policy, 3 seeds; the quick run takes 8 scenarios, the full one 20.
One scenario counts as evaluated when all its (policy, seed) runs are done.
The jobs=2 figure includes the worker processes' start-up (a forkserver that
imports the simulator once), as `marllbd eval --jobs 2` pays it.  Both runs are
checked to give the same results; `identical` reports it.
"""

from __future__ import annotations

import time

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.sim.scenario import Scenario, synthetic
from marllbd.training.evaluate import Result, evaluate_scenarios
from marllbd.training.report import CSV_COLUMNS

POLICIES = ("ecmp", "wcmp", "active-wcmp", "lsq", "lsq2", "sed", "sed2", "gsq")
"""Every heuristic policy (gsq, the oracle, included): what a family table compares."""
SEEDS = (1, 2, 3)
SERVERS = 16


def scenarios(count: int) -> list[Scenario]:
    """`count` 16-server scenarios (synthetic's capacities 1-4 workers, 60 s), loads
    spread over 0.5-0.95 in a fixed order; a stand-in for a family's samples."""
    out = []
    for i in range(count):
        load = 0.5 + 0.45 * ((7 * i) % 10) / 9
        sc = synthetic(SERVERS, duration=60.0)
        trace = {"kind": "poisson", "load": round(load, 3)}
        out.append(sc.replace(name=f"synthetic-{SERVERS}-{i}", trace=trace))
    return out


def _same(a: list[Result], b: list[Result]) -> bool:
    """Whether two evaluations gave the same runs: every CSV figure and every flow's FCT."""
    return len(a) == len(b) and all(
        all(getattr(x, c) == getattr(y, c) for c in CSV_COLUMNS) and np.array_equal(x.fct, y.fct)
        for x, y in zip(a, b, strict=True)
    )


@benchmark("eval_family")
def eval_family(quick: bool) -> list[BenchResult]:
    """Scenarios per minute of evaluate_scenarios with jobs=2 against jobs=1, same run."""
    scs = scenarios(8 if quick else 20)
    evaluate_scenarios(scs[:1], ["sed"], [1])  # load the compiled engine before timing
    t0 = time.perf_counter()
    serial = evaluate_scenarios(scs, POLICIES, SEEDS, jobs=1)
    t1 = time.perf_counter()
    parallel = evaluate_scenarios(scs, POLICIES, SEEDS, jobs=2)
    t2 = time.perf_counter()
    value = len(scs) / (t2 - t1) * 60.0
    base = len(scs) / (t1 - t0) * 60.0
    return [
        BenchResult(
            name="eval_family",
            value=value,
            unit="scenarios/min",
            baseline="jobs_1",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={
                "jobs": 2,
                "scenarios": len(scs),
                "servers": SERVERS,
                "policies": len(POLICIES),
                "seeds": len(SEEDS),
                "runs": len(serial),
                "seconds": t2 - t1,
                "baseline_seconds": t1 - t0,
                "identical": _same(serial, parallel),
            },
        )
    ]
