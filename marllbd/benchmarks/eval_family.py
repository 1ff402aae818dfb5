"""eval_family: scenarios evaluated per minute with `jobs=2` worker processes, beside `jobs=1`.

The workload is a family evaluation (issue 14: 20 samples × 3 seeds × 8
policies): samples of a 16-server family of 60 s scenarios (FAMILY), the eight
policies of POLICIES, 3 seeds; the quick run takes 8 samples, the full one 20.
One scenario counts as evaluated when all its (policy, seed) runs are done.
The jobs=2 figure includes the worker processes' start-up (a forkserver that
imports the simulator once), as `marllbd eval --jobs 2` pays it.  Both runs are
checked to give the same results; `identical` reports it.
"""

from __future__ import annotations

import time

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.sim.family import parse_family
from marllbd.sim.scenario import Scenario
from marllbd.training.evaluate import Result, evaluate_scenarios
from marllbd.training.report import CSV_COLUMNS

POLICIES = ("sed", "wcmp", "lsq", "sed2", "adaptive-sed", "peak-ewma", "prequal", "gsq")
"""The issue's eight: static heuristics, the adaptive baselines and the oracle gsq."""
SEEDS = (1, 2, 3)
SERVERS = 16
FAMILY = {
    "description": "16 servers, 60 s, loads 0.5-0.9, every work distribution, drift",
    "duration": 60.0,
    "servers": {"count": SERVERS, "workers": {"range": [1, 8]}},
    "trace": {
        "kind": "poisson",
        "load": {"range": [0.5, 0.9]},
        "work": {"choice": ["exp", "lognormal", "pareto", "bimodal"]},
    },
    "faults": {
        "drift": {
            "events": {"range": [0, 3]},
            "servers": {"range": [1, 4]},
            "workers": {"range": [1, 8]},
            "at": {"range": [0.15, 0.85]},
        }
    },
}
"""A 16-server family of the shipped ones' shape (drift.toml with the server count fixed)."""


def scenarios(count: int) -> list[Scenario]:
    """The first `count` samples of FAMILY."""
    return parse_family(FAMILY, name=f"bench-{SERVERS}", source="<eval_family>").samples(count)


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
