"""TrainingPipeline: the original call builds the right TrainConfig and trains through the loop."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from marllbd.sim.scenario import WikiTrace, from_dict, load_scenario, presets
from marllbd.training import TrainingError, TrainingPipeline
from marllbd.training.pipeline import pipeline_scenario, scenario_toml


def test_sixteen_poisson_servers_train_on_the_seed_16_preset(tmp_path: Path) -> None:
    pipe = TrainingPipeline(agent_type="qmix", num_servers=16, out=tmp_path)
    config = pipe.config(num_episodes=3)
    assert config.scenario == "seed-16" and config.algo == "qmix"
    assert config.steps == 3 * 239  # 60 s of 0.25 s intervals, less the one reset consumes
    assert not (tmp_path / "scenario.toml").exists()


def test_wiki_trace_keeps_the_seed_16_servers_and_is_written_out(tmp_path: Path) -> None:
    pipe = TrainingPipeline(agent_type="sac-gru", num_servers=16, trace_type="wiki", out=tmp_path)
    config = pipe.config(num_episodes=1)
    written = load_scenario(config.scenario)
    assert Path(config.scenario) == tmp_path / "scenario.toml"
    assert isinstance(written.trace, WikiTrace)
    assert written.servers == load_scenario("seed-16").servers
    assert written.groups == load_scenario("seed-16").groups


def test_other_server_counts_use_a_synthetic_scenario(tmp_path: Path) -> None:
    config = TrainingPipeline(num_servers=5, out=tmp_path).config(num_episodes=2)
    sc = load_scenario(config.scenario)
    assert sc.name == "synthetic-5" and [s.workers for s in sc.servers] == [1, 1, 2, 2, 4]


@pytest.mark.parametrize("name", presets())
def test_scenario_toml_round_trips_every_preset(name: str) -> None:
    sc = load_scenario(name)
    assert from_dict(tomllib.loads(scenario_toml(sc))) == sc


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TrainingError, match="agent_type: expected one of qmix, sac-gru"):
        TrainingPipeline(agent_type="dqn")
    with pytest.raises(TrainingError, match="trace_type: expected one of poisson, wiki"):
        pipeline_scenario(16, "csv")
    with pytest.raises(TrainingError, match="num_episodes: expected a positive integer"):
        TrainingPipeline().config(0)
    with pytest.raises(TrainingError, match="reward_fn: give reward_metric='custom' together"):
        TrainingPipeline(reward_metric="custom")
    with pytest.raises(TrainingError, match="reward_metric: expected 'custom'"):
        TrainingPipeline(reward_metric="jain")


def test_importing_the_training_package_does_not_import_torch() -> None:
    code = "import sys; "
    code += "from marllbd.training import TrainingPipeline; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.slow
def test_seed_call_trains_and_leaves_a_best_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pipe = TrainingPipeline(
        agent_type="sac-gru", num_servers=3, seed=0, out=tmp_path, hyper={"hidden": 16}
    )
    result = pipe.train(num_episodes=1)
    assert result.steps == 239  # exactly: the last lockstep steps one env
    assert (result.best / "manifest.json").is_file()
    assert (tmp_path / "scenario.toml").is_file() and result.metrics_csv.is_file()
