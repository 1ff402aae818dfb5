"""The original description's `TrainingPipeline`: a scenario from a server count and trace type.

    from marllbd.training import TrainingPipeline
    TrainingPipeline(agent_type="qmix", num_servers=16, trace_type="wiki").train(num_episodes=100)

    # reward_metric="custom": a reward computed by the caller from each interval's features
    TrainingPipeline(reward_metric="custom", reward_fn=lambda features, active: ...)

It only builds a `TrainConfig` and runs `marllbd.training.Trainer`, so it
trains exactly what `marllbd train` does; torch is imported by the plugin,
not here.  A scenario that is not a preset is written to out/scenario.toml
(the run's record, and what the config names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from marllbd.sim.family import scenario_toml
from marllbd.sim.scenario import Scenario, load_scenario, synthetic
from marllbd.training.errors import TrainingError
from marllbd.training.trainer import Hooks, TrainConfig, TrainResult, algorithms, train

TRACE_TYPES = ("poisson", "wiki")
DEFAULT_SCENARIO = "seed-16"
"""The preset behind `num_servers=16` (MARLLB's layout: 16 servers in 4 groups of 4)."""


def pipeline_scenario(num_servers: int, trace_type: str) -> Scenario:
    """seed-16 for 16 servers (its trace swapped for a wiki-like one if asked), else synthetic."""
    if trace_type not in TRACE_TYPES:
        raise TrainingError(
            f"trace_type: expected one of {', '.join(TRACE_TYPES)}, got {trace_type!r}"
        )
    if num_servers == 16:
        sc = load_scenario(DEFAULT_SCENARIO)
        if trace_type == "wiki":
            sc = sc.replace(name=f"{DEFAULT_SCENARIO}-wiki", trace={"kind": "wiki", "load": 0.9})
        return sc
    return synthetic(num_servers, trace=trace_type)


_WRITTEN_BY = "Written by marllbd.training.pipeline: the scenario this run trained on."


class TrainingPipeline:
    """Offline training of a learned policy from the original description's few arguments.

    One episode is one scenario run (duration / control_interval steps), so
    `train(num_episodes)` trains for num_episodes times that many env steps.
    """

    def __init__(
        self,
        agent_type: str = "sac-gru",
        num_servers: int = 16,
        trace_type: str = "poisson",
        seed: int = 0,
        out: str | Path | None = None,
        *,
        envs: int = TrainConfig.envs,
        eval_every_episodes: int = 10,
        progress: bool = False,
        hyper: Mapping[str, Any] | None = None,
        reward_metric: str | None = None,
        reward_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
    ) -> None:
        known = algorithms()
        if agent_type not in known:
            raise TrainingError(
                f"agent_type: expected one of {', '.join(sorted(known))}, got {agent_type!r}"
            )
        if reward_metric not in (None, "custom"):
            raise TrainingError(
                f"reward_metric: expected 'custom' (with reward_fn) or None (the default "
                f"reward), got {reward_metric!r}; other rewards are set with "
                f"hyper={{'reward_field': ...}}"
            )
        if (reward_metric == "custom") != (reward_fn is not None):
            raise TrainingError(
                "reward_fn: give reward_metric='custom' together with a callable "
                "reward_fn(features, active) -> float"
            )
        if reward_fn is not None and not callable(reward_fn):
            raise TrainingError(f"reward_fn: expected a callable, got {type(reward_fn).__name__}")
        if eval_every_episodes < 1:
            raise TrainingError(
                f"eval_every_episodes: expected a positive integer, got {eval_every_episodes}"
            )
        self.agent_type = agent_type
        self.scenario = pipeline_scenario(num_servers, trace_type)
        self.seed = seed
        self.out = Path(out) if out is not None else Path("runs") / agent_type
        self.envs = envs
        self.eval_every_episodes = eval_every_episodes
        self.progress = progress
        self.hyper = dict(hyper or {})
        self.reward_fn = reward_fn

    @property
    def steps_per_episode(self) -> int:
        """Env steps of one episode: every control interval after the one reset consumes."""
        return round(self.scenario.duration / self.scenario.control_interval) - 1

    def config(self, num_episodes: int) -> TrainConfig:
        """The TrainConfig `train(num_episodes)` runs; writes out/scenario.toml for a non-preset."""
        if num_episodes < 1:
            raise TrainingError(f"num_episodes: expected a positive integer, got {num_episodes}")
        name = self.scenario.name
        if name == DEFAULT_SCENARIO:
            scenario_ref = name
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            path = self.out / "scenario.toml"
            path.write_text(scenario_toml(self.scenario, comment=_WRITTEN_BY), encoding="utf-8")
            scenario_ref = str(path)
        return TrainConfig(
            algo=self.agent_type,
            scenario=scenario_ref,
            out=self.out,
            steps=num_episodes * self.steps_per_episode,
            seed=self.seed,
            envs=self.envs,
            eval_every=self.eval_every_episodes * self.steps_per_episode,
            progress=self.progress,
            hyper=tuple(self.hyper.items()),
        )

    def train(self, num_episodes: int = 10) -> TrainResult:
        """Train for `num_episodes` episodes; the best checkpoint is TrainResult.best."""
        return train(self.config(num_episodes), Hooks(reward_fn=self.reward_fn))
