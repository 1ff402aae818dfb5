"""SAC-GRU training throughput on seed-16, beside the env-only stepping rate of the same envs.

value: environment steps per second of wall time inside `train` (rollouts,
inference, gradient updates, evaluations and checkpoints, default
hyperparameters except an early start of learning so the short run spends
most of its time with updates on).  baseline: the same number of
LoadBalanceEnv instances stepped in lockstep with fixed actions.  ratio =
value / baseline: the share of the env's speed that survives the learner.
one_thread_update_steps_per_s: the same training with `update_threads=1` (the update's
passes in turn on one thread), in the same run.  Both after a short warm-up training.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.envs import LoadBalanceEnv
from marllbd.training import TrainConfig, Trainer, TrainResult

SCENARIO, ENVS = "seed-16", TrainConfig.envs  # the shipped default


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


def timed_training(
    algo: str,
    steps: int,
    hyper: tuple[tuple[str, Any], ...],
    episode_seconds: float | None = None,
    then: Callable[[Trainer], Any] = lambda trainer: None,
) -> tuple[TrainResult, float, Any]:
    """Train `algo` on SCENARIO for `steps` in a scratch directory, one evaluation at the
    end; returns the TrainResult, its env steps per second of wall time, and
    then(trainer), called while the scratch checkpoints still exist."""
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            algo=algo,
            scenario=SCENARIO,
            out=Path(tmp),
            steps=steps,
            envs=ENVS,
            eval_every=steps,
            eval_seeds=(1001,),
            episode_seconds=episode_seconds,
            progress=False,
            hyper=hyper,
        )
        trainer = Trainer(config)
        result = trainer.learn()
        kept = then(trainer)
    return result, result.steps / result.wall_seconds, kept


def training_result(
    name: str, value: float, base: float, steps: int, extra: dict[str, Any]
) -> BenchResult:
    """The JSON line of a training benchmark: steps/s beside the env-only rate."""
    return BenchResult(
        name=name,
        value=value,
        unit="steps/s",
        baseline="env_only",
        baseline_value=base,
        ratio=ratio(value, base),
        extra={
            "steps": steps,
            "envs": ENVS,
            "scenario": SCENARIO,
            **extra,
            "learner_time_fraction": 1.0 - value / base,
        },
    )


@benchmark("train_sac")
def train_sac(quick: bool) -> list[BenchResult]:
    """Env steps/s of SAC-GRU training (updates included) against env-only stepping."""
    from marllbd_rl.sac_gru import SacGruConfig

    steps = 6400 if quick else 64_000  # (quick: ~100 updates at the default rate)
    # Warm-up: the process's first training loads numba's caches and torch's kernels
    # (~0.6 s, a tenth of a quick run), which would fall on whichever run came first.
    timed_training("sac-gru", 640, (("learning_starts", 100),))
    result, value, _ = timed_training("sac-gru", steps, (("learning_starts", 100),))
    # The same training with the update's passes in turn on one thread (update_threads 1).
    one = (("learning_starts", 100), ("update_threads", 1))
    _, one_thread, _ = timed_training("sac-gru", steps, one)
    base = _env_only_rate(steps)
    extra = {
        "updates_per_step": SacGruConfig().updates_per_step,
        "one_thread_update_steps_per_s": one_thread,
    }
    return [training_result("train_sac", value, base, result.steps, extra)]
