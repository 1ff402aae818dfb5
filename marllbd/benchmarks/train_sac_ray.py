"""SAC-GRU training throughput with 2 Ray rollout workers, beside 1 worker in the same run.

value: environment steps per second of wall time inside `train --ray --workers 2`
on seed-16 (each worker stepping 2 envs; defaults otherwise, learning from step
100), timed from the first chunk the learner receives to the end (the local
cluster's start and the workers' imports left out).  baseline: the same run
with 1 worker.  ratio = value / baseline.  With the shipped defaults the learner
(this process) takes most of the wall time, so the ratio shows how little a
second actor adds while the learner is the bottleneck (docs/distributed.md).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.training import TrainConfig, Trainer

SCENARIO, ENVS = "seed-16", 2


def _rate(workers: int, steps: int) -> float:
    """Env steps/s of a Ray run with `workers` actors, after its first chunk."""
    marks: list[tuple[float, int]] = []

    def mark(trainer: Trainer, info: Mapping[str, Any]) -> None:
        if info["event"] == "step":
            marks.append((time.perf_counter(), int(info["step"])))

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            algo="sac-gru", scenario=SCENARIO, out=Path(tmp), steps=steps, envs=ENVS,
            eval_every=10 * steps, eval_seeds=(1001,), eval_baseline=None, progress=False,
            hyper=(("learning_starts", 100),), workers=workers,
        )  # fmt: skip
        Trainer(config).learn(callback=mark)
    (t0, s0), (t1, s1) = marks[0], marks[-1]
    return (s1 - s0) / max(t1 - t0, 1e-9)


@benchmark("train_sac_ray")
def train_sac_ray(quick: bool) -> list[BenchResult]:
    """Env steps/s of SAC-GRU training with 2 Ray rollout workers against 1."""
    from marllbd.distributed.cluster import connect

    steps = 1200 if quick else 8000
    with connect(None, num_cpus=2):
        base = _rate(1, steps)
        value = _rate(2, steps)
    return [
        BenchResult(
            name="train_sac_ray",
            value=value,
            unit="steps/s",
            baseline="one_worker",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={"steps": steps, "envs_per_worker": ENVS, "scenario": SCENARIO},
        )
    ]
