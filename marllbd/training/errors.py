"""The training package's error: bad training input (algorithm, scenario, resume, hyper)."""

from __future__ import annotations

from marllbd.errors import MarllbdError


class TrainingError(MarllbdError, ValueError):
    """Bad training input (algorithm, scenario, resume checkpoint, hyperparameter, ...)."""
