"""SAC-GRU training throughput on seed-16, beside the env-only stepping rate of the same envs.

value: environment steps per second of wall time inside `train` (rollouts,
inference, gradient updates, evaluations and checkpoints, default
hyperparameters except an early start of learning so the short run spends
most of its time with updates on).  baseline: the same number of
LoadBalanceEnv instances stepped in lockstep with fixed actions.  ratio =
value / baseline: the share of the env's speed that survives the learner.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.envs import LoadBalanceEnv
from marllbd.training import TrainConfig

SCENARIO, ENVS = "seed-16", 2


def _env_only_rate(steps: int) -> float:
    """Env steps per second of ENVS LoadBalanceEnv instances stepped in lockstep."""
    envs = [LoadBalanceEnv(SCENARIO) for _ in range(ENVS)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    zeros = np.zeros(envs[0].num_servers, dtype=np.float32)
    done = 0
    t0 = time.perf_counter()
    while done < steps:
        for env in envs:
            truncated = env.step(zeros)[3]
            if truncated:
                env.reset()
        done += ENVS
    return done / (time.perf_counter() - t0)


@benchmark("train_sac")
def train_sac(quick: bool) -> list[BenchResult]:
    """Env steps/s of SAC-GRU training (updates included) against env-only stepping."""
    from marllbd_rl.sac_gru import SacGruConfig, train

    steps = 600 if quick else 6000
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            algo="sac-gru",
            scenario=SCENARIO,
            out=Path(tmp),
            steps=steps,
            envs=ENVS,
            eval_every=steps,
            eval_seeds=(1001,),
            progress=False,
            hyper=(("learning_starts", 100),),
        )
        result = train(config)
    value = result.steps / result.wall_seconds
    base = _env_only_rate(steps)
    return [
        BenchResult(
            name="train_sac",
            value=value,
            unit="steps/s",
            baseline="env_only",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={
                "steps": result.steps,
                "envs": ENVS,
                "scenario": SCENARIO,
                "updates_per_step": SacGruConfig().updates_per_step,
                "learner_time_fraction": 1.0 - value / base,
            },
        )
    ]
