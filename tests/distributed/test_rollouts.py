"""`marllbd train --ray --workers N`: rollout actors on Ray feeding one learner."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from marllbd import checkpoint
from marllbd.policies import load as load_policy
from marllbd.training import Trainer
from marllbd.training.errors import TrainingError

pytest.importorskip("marllbd_rl")

HYPER = {"learning_starts": 64, "batch_size": 8, "hidden": 16, "updates_per_step": 0.25}


def _train(out: Path) -> Trainer:
    trainer = Trainer.make(
        "sac-gru", "seed-16", out=out, seed=3, workers=2, envs=2, eval_every=10_000,
        eval_seeds=(1001,), eval_baseline=None, hyper=HYPER, rollout_steps=32,
        broadcast_every=4, log_every=100,
    )  # fmt: skip
    trainer.learn(400)
    return trainer


def test_two_workers_feed_one_learner_reproducibly(ray_cluster: ModuleType, tmp_path: Path) -> None:
    trainer = _train(tmp_path / "a")
    remote = trainer.algorithm
    assert trainer.steps == 400  # the budget stays exact across chunks of 32
    samples = remote.samples  # type: ignore[attr-defined]
    assert samples.sum() == 400 and (samples > 0).all()  # both actors fed the learner
    assert (remote.worker_versions > 0).all()  # type: ignore[attr-defined]  # broadcasts reached both
    assert remote.updates > 0
    ckpt = checkpoint.load(tmp_path / "a" / "checkpoints" / "last")
    assert ckpt.manifest["progress"]["steps"] == 400
    policy = load_policy(f"sac-gru:{tmp_path / 'a' / 'checkpoints' / 'last'}")
    assert policy is not None
    lags = [line for line in (tmp_path / "a" / "metrics.csv").read_text().splitlines()
            if "train/policy_lag" in line]  # fmt: skip
    assert lags  # off-policy data is tagged with its version; the lag is logged
    again = _train(tmp_path / "b").algorithm.arrays()
    first = remote.arrays()
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)  # round robin: reproducible


def test_an_algorithm_without_remote_rollouts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="qmix has no remote rollouts"):
        Trainer.make("qmix", "paper-7", out=tmp_path, workers=2)


def test_ray_address_needs_workers(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="ray_address"):
        Trainer.make("sac-gru", "seed-16", out=tmp_path, ray_address="auto")


def test_training_on_a_cluster_by_address(ray_cluster: ModuleType, tmp_path: Path) -> None:
    # --ray ADDRESS: the workers' own configs must not carry the address (they run no Ray)
    trainer = Trainer.make(
        "sac-gru", "seed-16", out=tmp_path, seed=3, workers=1, envs=1, eval_every=10_000,
        eval_seeds=(1001,), eval_baseline=None, hyper=HYPER, rollout_steps=32,
        ray_address="auto", log_every=100,
    )  # fmt: skip
    trainer.learn(96)
    assert trainer.steps == 96 and trainer.algorithm.samples.sum() == 96  # type: ignore[attr-defined]


def test_train_sac_ray_benchmark_times_a_ray_run(ray_cluster: ModuleType) -> None:
    from marllbd.benchmarks import registry, train_sac_ray

    assert registry()["train_sac_ray"] is train_sac_ray.train_sac_ray
    assert train_sac_ray._rate(1, 200) > 0  # chunks of 64 steps: timed from the first one


def test_rollout_steps_must_be_a_multiple_of_envs(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"rollout_steps: expected a multiple of envs \(2\)"):
        Trainer.make("sac-gru", "seed-16", out=tmp_path, workers=1, envs=2, rollout_steps=33)
