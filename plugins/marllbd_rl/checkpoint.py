"""The torch side of checkpoints: tensors in and out of marllbd.checkpoint's numpy arrays.

The schema, its validation and the one loader are marllbd.checkpoint's (numpy
only, so a daemon serves a policy without torch); this module converts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marllbd import checkpoint as _schema
from marllbd.checkpoint import MANIFEST, WEIGHTS, CheckpointError

__all__ = ["MANIFEST", "WEIGHTS", "Checkpoint", "CheckpointError", "load", "save", "to_arrays"]


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def to_arrays(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """numpy copies of `tensors` (detached, on the CPU): later training does not change them."""
    return {k: v.detach().cpu().contiguous().numpy().copy() for k, v in tensors.items()}


def save(
    path: str | Path, manifest: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> Path:
    """marllbd.checkpoint.save of the tensors' values."""
    return _schema.save(path, manifest, to_arrays(tensors))


def load(path: str | Path, *, algorithm: str, dims: Mapping[str, int] | None = None) -> Checkpoint:
    """marllbd.checkpoint.load, with the arrays as (writable, CPU) tensors."""
    ckpt = _schema.load(path, algorithm=algorithm, dims=dims)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in ckpt.arrays.items()}
    return Checkpoint(ckpt.path, ckpt.manifest, tensors)
