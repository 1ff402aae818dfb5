"""Training: the one training loop and its Python API; algorithms are plugins (entry points).

    from marllbd.training import Trainer, TrainingPipeline

Importing this package does not import torch: the algorithms (marllbd_rl,
the `rl` extra) load when a trainer is made.
"""

from __future__ import annotations

from marllbd.training.errors import TrainingError
from marllbd.training.pipeline import TrainingPipeline
from marllbd.training.trainer import (
    Algorithm,
    Collected,
    Hooks,
    TrainConfig,
    Trainer,
    TrainResult,
    algorithms,
    train,
)

__all__ = [
    "Algorithm",
    "Collected",
    "Hooks",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingPipeline",
    "algorithms",
    "train",
]
