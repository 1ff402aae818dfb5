"""The training package's error: bad training input (algorithm, scenario, resume, hyper)."""

from __future__ import annotations


class TrainingError(ValueError):
    """Bad training input (algorithm, scenario, resume checkpoint, hyperparameter, ...)."""
