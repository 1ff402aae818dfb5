"""The training loop's contract, for any algorithm: exact step budgets, registered trainers,
and the user's hooks (env factory, reward, network) reach the rollouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from marllbd_rl import sac_gru  # noqa: E402

from marllbd.envs import LoadBalanceEnv  # noqa: E402
from marllbd.training import TrainConfig, Trainer, TrainingError, algorithms, logs  # noqa: E402

TWO = """
duration = 8.0
lb_nodes = 1
[servers]
workers = [1, 2]
[trace]
kind = "poisson"
load = 0.8
mean_work = 0.05
"""
SMALL = {
    "hidden": 8,
    "burn_in": 2,
    "seq_len": 4,
    "batch_size": 4,
    "learning_starts": 10,
    "updates_per_step": 0.25,
}


@pytest.fixture
def two(tmp_path: Path) -> Path:
    path = tmp_path / "two.toml"
    path.write_text(TWO)
    return path


def test_both_algorithms_are_registered_trainers() -> None:
    assert {"sac-gru", "qmix"} <= set(algorithms())


def test_an_unknown_algorithm_names_the_known_ones(two: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"--algo: expected one of .*qmix.*sac-gru.*got 'dqn'"):
        Trainer(TrainConfig(algo="dqn", scenario=str(two), out=tmp_path))


@pytest.mark.parametrize(("algo", "envs", "steps"), [("sac-gru", 3, 50), ("qmix", 3, 61)])
def test_steps_means_exactly_that_many_environment_steps(
    algo: str, envs: int, steps: int, two: Path, tmp_path: Path
) -> None:
    hyper = {"hidden": 8} if algo == "qmix" else SMALL
    trainer = Trainer.make(algo, str(two), tmp_path, envs=envs, eval_every=1000,
                           eval_seeds=(1,), hyper=hyper)  # fmt: skip
    assert trainer.learn(steps).steps == steps


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_counts_are_named(bad: Any, two: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="steps: expected a positive integer"):
        TrainConfig(algo="sac-gru", scenario=str(two), out=tmp_path, steps=bad)


def test_a_custom_reward_reaches_the_rollouts(two: Path, tmp_path: Path) -> None:
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def reward(features: np.ndarray, active: np.ndarray) -> float:
        calls.append((features.shape, active.shape))
        return 0.5

    trainer = Trainer.make("sac-gru", str(two), tmp_path, envs=1, eval_every=1000,
                           eval_seeds=(1,), hyper=SMALL, reward_fn=reward)  # fmt: skip
    result = trainer.learn(31)  # one whole 31-step episode
    assert calls and set(calls) == {((2, 12), (2,))}
    _, returns = logs.read(result.metrics_csv)["episode/return"]
    assert returns == [pytest.approx(0.5 * 31)]


def test_a_users_env_factory_and_wrapper_are_used(two: Path, tmp_path: Path) -> None:
    made: list[gym.Env[Any, Any]] = []

    def factory(scenario: Any) -> gym.Env[Any, Any]:
        env = gym.wrappers.TransformReward(LoadBalanceEnv(scenario), lambda r: 0.0)
        made.append(env)
        return env

    trainer = Trainer.make("sac-gru", str(two), tmp_path, envs=2, eval_every=1000,
                           eval_seeds=(1,), hyper=SMALL, env_factory=factory)  # fmt: skip
    result = trainer.learn(62)
    assert len(made) == 2
    assert logs.read(result.metrics_csv)["episode/return"][1] == [0.0, 0.0]


def test_a_users_critic_network_is_trained(two: Path, tmp_path: Path) -> None:
    built: list[sac_gru.Critic] = []

    def critic(obs_dim: int, num_servers: int, cfg: sac_gru.SacGruConfig) -> sac_gru.Critic:
        net = sac_gru.Critic(obs_dim, num_servers, cfg)
        built.append(net)
        return net

    trainer = Trainer.make("sac-gru", str(two), tmp_path, envs=1, eval_every=1000,
                           eval_seeds=(1,), hyper=SMALL, network=critic)  # fmt: skip
    before = [p.detach().clone() for p in built[0].parameters()]
    trainer.learn(40)
    assert len(built) == 2 and trainer.algorithm.updates > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, built[0].parameters(), strict=True))


def test_load_continues_a_saved_run(two: Path, tmp_path: Path) -> None:
    trainer = Trainer.make("sac-gru", str(two), tmp_path / "run", envs=1, eval_every=1000,
                           eval_seeds=(1,), hyper=SMALL)  # fmt: skip
    trainer.learn(20)
    path = trainer.save(tmp_path / "saved")
    again = Trainer.load(path)
    assert (again.steps, again.config.algo, again.config.scenario) == (20, "sac-gru", str(two))
    assert again.learn(30).steps == 30


def test_a_reward_fn_beside_an_env_factory_is_refused(two: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="reward_fn: applies to the algorithm's own env"):
        Trainer.make("sac-gru", str(two), tmp_path, env_factory=LoadBalanceEnv,
                     reward_fn=lambda f, a: 0.0)  # fmt: skip
