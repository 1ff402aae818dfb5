"""`marllbd train --ray --workers N`: rollout actors on Ray feeding one learner."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from marllbd import checkpoint
from marllbd.distributed.rollouts import RayRollouts, Worker
from marllbd.policies import load as load_policy
from marllbd.sim.scenario import load_scenario
from marllbd.training import Trainer
from marllbd.training.errors import TrainingError
from marllbd.training.trainer import Hooks, TrainConfig, factory

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


QMIX_HYPER = {"warmup_steps": 64, "batch_size": 4, "hidden": 16, "eps_anneal_steps": 800}


def _train_qmix(out: Path) -> Trainer:
    trainer = Trainer.make(
        "qmix", "paper-7", out=out, seed=3, workers=2, envs=2, eval_every=10_000,
        episode_seconds=15.0,
        eval_seeds=(1001,), eval_baseline=None, hyper=QMIX_HYPER, rollout_steps=32,
        broadcast_every=4, log_every=100,
    )  # fmt: skip
    trainer.learn(480)
    return trainer


def test_qmix_workers_feed_whole_episodes_to_one_learner_reproducibly(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    """15 s episodes are 60 lockstep steps of a worker's 2 envs (120 env steps): in 480
    steps each worker ends at least one pair; the episodes reach the learner's replay, it
    updates, and a second run with the same seed reproduces it."""
    trainer = _train_qmix(tmp_path / "a")
    remote = trainer.algorithm
    assert trainer.steps == 480
    samples = remote.samples  # type: ignore[attr-defined]
    assert samples.sum() == 480 and (samples >= 120).all()
    assert len(remote.buffer) >= 4 and remote.updates > 0
    assert remote.learner.agent.norm.count > 0  # the workers' normaliser updates replayed
    policy = load_policy(f"qmix:{tmp_path / 'a' / 'checkpoints' / 'last'}")
    assert policy is not None
    again = _train_qmix(tmp_path / "b").algorithm.arrays()
    first = remote.arrays()
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_a_qmix_worker_explores_at_the_runs_step(tmp_path: Path) -> None:
    """A worker's chunk starts at the run's step `at` (what the learner has received and
    asked for): QMIX's ε anneals over the whole run's steps, not the worker's share."""
    config = TrainConfig(
        algo="qmix", scenario="paper-7", out=tmp_path, seed=3, envs=2, episode_seconds=15.0,
        hyper=tuple(QMIX_HYPER.items()), progress=False,
    )  # fmt: skip
    scenario = load_scenario("paper-7")
    algo = factory("qmix")(config, scenario, Hooks())
    worker = Worker(config, scenario, Hooks(), 0, algo.remote_taps)
    chunk = worker.rollout(algo.arrays(), 0, 4, at=600)
    cfg = algo.cfg
    assert chunk.live["eps"] == pytest.approx(cfg.epsilon(602)) != cfg.epsilon(2)
    assert chunk.calls == []  # no episode ended: nothing for the learner yet


def test_an_algorithm_without_remote_rollouts_is_refused(tmp_path: Path) -> None:
    class NoTaps:  # an algorithm that declares no remote rollouts
        name = "no-taps"

    with pytest.raises(TrainingError, match="no-taps has no remote rollouts"):
        config = TrainConfig(algo="no-taps", scenario="paper-7", out=tmp_path, workers=2)
        RayRollouts(NoTaps(), config, None, Hooks())  # type: ignore[arg-type]


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
