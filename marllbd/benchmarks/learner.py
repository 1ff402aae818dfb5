"""Gradient updates per second of SAC-GRU and QMIX at their default hyperparameters.

value: updates/s of the current `Learner.update` (replay sampling included) on
seed-16 (SAC-GRU: 16 servers, 32 windows of 8 + 16 steps, the critics' heads on
the actor's GRU, critic_trunk 'shared'; QMIX: 4 agents x 4 servers, 16 windows
of 8 + 24 steps), after filling the replay with rollouts of the untrained
policy.  baseline: the pre-change update (marllbd_rl.reference; for SAC-GRU a
GRU per critic) from a learner of the same seed on batches from a copy of the
same replay, in the same run, alternated with the current one so both see the
same machine load.
Median time per update; one torch thread (the default: these small networks run
no faster on two, measured in docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio

SCENARIO = "seed-16"


def _median_seconds(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _race(new: Callable[[], Any], old: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Median seconds per call of each, measured in alternating blocks after a warm-up."""
    new(), old()
    a, b = [], []
    for _ in range(rounds):
        a.append(_median_seconds(new, 5))
        b.append(_median_seconds(old, 5))
    return float(np.median(a)), float(np.median(b))


def _result(algo: str, new_s: float, old_s: float, extra: dict[str, Any]) -> BenchResult:
    return BenchResult(
        name="learner_update",
        value=1.0 / new_s,
        unit="updates/s",
        baseline="pre_change_eager",
        baseline_value=1.0 / old_s,
        ratio=ratio(1.0 / new_s, 1.0 / old_s),
        extra={"algo": algo, "scenario": SCENARIO, "torch_threads": 1, **extra},
    )


@benchmark("learner_update")
def learner_update(quick: bool) -> list[BenchResult]:
    """Updates/s of the current SAC-GRU and QMIX updates against the pre-change ones."""
    import torch
    from marllbd_rl import qmix, reference, sac_gru

    from marllbd.sim.scenario import load_scenario
    from marllbd.training import Hooks, TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rounds = 4 if quick else 20
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(algo="sac-gru", scenario=SCENARIO, out=Path(tmp), envs=2)
            sac = sac_gru.SacGru(config, load_scenario(SCENARIO), Hooks())
            for _ in range(100 if quick else 800):
                sac.collect(2)
            torch.set_num_threads(1)  # SacGru set its torch_threads (1 by default)
            cfg = sac.cfg
            # The pre-change design: a GRU per critic, from the same seed and normalisers.
            own = dataclasses.replace(cfg, critic_trunk="own")
            old_learner = sac_gru.Learner(own, sac.obs_dim, sac.n, config.seed)
            old_learner.norm = copy.deepcopy(sac.learner.norm)
            old_learner.reward_norm = copy.deepcopy(sac.learner.reward_norm)
            old_replay = copy.deepcopy(sac.replay)
            ref = reference.SacReference(old_learner)
            new_s, old_s = _race(
                lambda: sac.learner.update(sac.replay.sample(cfg.batch_size, cfg.burn_in, False)),
                lambda: ref.update(old_replay.sample(cfg.batch_size, cfg.burn_in, False)),
                rounds,
            )
            out.append(
                _result("sac-gru", new_s, old_s, {"batch": cfg.batch_size, "window": cfg.window})
            )

            config = TrainConfig(algo="qmix", scenario=SCENARIO, out=Path(tmp), envs=2)
            qm = qmix.Qmix(config, load_scenario(SCENARIO).replace(duration=20.0), Hooks())
            for _ in range(100 if quick else 400):
                qm.collect(2)
            qc = qm.cfg
            old_q, old_buffer = copy.deepcopy(qm.learner), copy.deepcopy(qm.buffer)
            qref = reference.QmixReference(old_q)
            new_s, old_s = _race(
                lambda: qm.learner.update(qm.buffer.sample(qc.batch_size, qc.burn_in, qc.seq_len)),
                lambda: qref.update(old_buffer.sample(qc.batch_size, qc.burn_in, qc.seq_len)),
                rounds,
            )
            window = qc.burn_in + qc.seq_len
            out.append(_result("qmix", new_s, old_s, {"batch": qc.batch_size, "window": window}))
    finally:
        torch.set_num_threads(threads)
    return out
