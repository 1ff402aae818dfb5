"""Training: configuration and dispatch to the learned-policy plugins (which own torch)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAINERS = {"sac-gru": "marllbd_rl.sac_gru", "qmix": "marllbd_rl.qmix"}
"""Algorithm name → plugin module exposing `train(config: TrainConfig) -> TrainResult`."""


class TrainingError(ValueError):
    """Bad training input (algorithm, scenario, resume checkpoint, ...)."""


@dataclass(frozen=True)
class TrainConfig:
    """What `marllbd train` was asked to do."""

    algo: str
    scenario: str
    out: Path
    steps: int = 20_000
    """Environment steps (control intervals) to train for."""
    seed: int = 0
    resume: Path | None = None
    """A checkpoint directory to continue from."""
    envs: int = 2
    """Simulator instances stepped for rollouts."""
    eval_every: int = 2_000
    """Steps between evaluations (and best-by-evaluation checkpoints)."""
    eval_seeds: tuple[int, ...] = (1001, 1002)
    """Held-out scenario seeds used by the periodic evaluation."""
    episode_seconds: float | None = None
    """Override the scenario's duration for training episodes."""
    progress: bool = True
    hyper: tuple[tuple[str, Any], ...] = ()
    """Hyperparameter overrides as (name, value) pairs."""


@dataclass(frozen=True)
class TrainResult:
    best: Path
    """The best-by-evaluation checkpoint directory."""
    last: Path
    steps: int
    wall_seconds: float
    metrics_csv: Path


def trainer(algo: str) -> Any:
    """The plugin module that trains `algo`; a clear error if unknown or not installed."""
    if algo not in TRAINERS:
        raise TrainingError(f"--algo: expected one of {', '.join(TRAINERS)}, got {algo!r}")
    try:
        return importlib.import_module(TRAINERS[algo])
    except ImportError as exc:
        raise TrainingError(
            f"--algo {algo}: the learned policies need the rl extra "
            f"(pip install -c constraints.txt 'marllbd[rl]'): {exc}"
        ) from None


def train(config: TrainConfig) -> TrainResult:
    result: TrainResult = trainer(config.algo).train(config)
    return result
