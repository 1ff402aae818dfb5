"""Checkpoints: tensors in safetensors plus a JSON manifest; loading never unpickles.

A checkpoint is a directory holding `weights.safetensors` and `manifest.json`.
The manifest names the algorithm, the network dimensions, the feature spec
version it was trained on, the scenario, hyperparameters, seed and the
marllbd version.  `load` checks all of it before a tensor reaches a network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from marllbd import __version__
from marllbd.features import FEATURE_NAMES, FEATURE_SPEC_VERSION

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
FORMAT = 1
REQUIRED = ("format", "algorithm", "dims", "feature_spec_version", "feature_names", "seed")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the running code."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def save(
    path: str | Path,
    *,
    algorithm: str,
    dims: dict[str, int],
    tensors: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    seed: int,
) -> Path:
    """Write a checkpoint directory atomically enough: tensors first, manifest last."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "algorithm": algorithm,
        "dims": dict(dims),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "seed": seed,
        "marllbd_version": __version__,
        **(extra or {}),
    }
    tmp_w = out / (WEIGHTS + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp_w))
    tmp_w.replace(out / WEIGHTS)
    tmp_m = out / (MANIFEST + ".tmp")
    tmp_m.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp_m.replace(out / MANIFEST)
    return out


def load(path: str | Path, *, algorithm: str, dims: dict[str, int] | None = None) -> Checkpoint:
    """Read and validate a checkpoint; CheckpointError names what is wrong and what was expected."""
    root = Path(path)
    if root.is_file() and root.name in (WEIGHTS, MANIFEST):
        root = root.parent
    mpath, wpath = root / MANIFEST, root / WEIGHTS
    if not mpath.is_file() or not wpath.is_file():
        raise CheckpointError(
            f"{root}: expected a checkpoint directory with {MANIFEST} and {WEIGHTS}"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{mpath}: expected a JSON object")
    for key in REQUIRED:
        if key not in manifest:
            raise CheckpointError(f"{mpath}: missing key {key!r}")
    if manifest["format"] != FORMAT:
        raise CheckpointError(f"{mpath}: format: expected {FORMAT}, got {manifest['format']!r}")
    if manifest["algorithm"] != algorithm:
        raise CheckpointError(
            f"{mpath}: algorithm: expected {algorithm!r}, got {manifest['algorithm']!r}"
        )
    if manifest["feature_spec_version"] != FEATURE_SPEC_VERSION or manifest[
        "feature_names"
    ] != list(FEATURE_NAMES):
        raise CheckpointError(
            f"{mpath}: feature_spec_version: trained on {manifest['feature_spec_version']!r}, "
            f"this marllbd computes version {FEATURE_SPEC_VERSION}; retrain the policy"
        )
    if dims is not None:
        for key, want in dims.items():
            got = manifest["dims"].get(key)
            if got != want:
                raise CheckpointError(f"{mpath}: dims.{key}: expected {want}, got {got!r}")
    try:
        with open(wpath, "rb"):  # safetensors reports any open() failure as a missing file
            pass
    except OSError as exc:
        raise CheckpointError(f"{wpath}: cannot read ({exc.strerror})") from None
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{wpath}: corrupt or truncated safetensors file ({exc})") from None
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{wpath}: tensor {name!r} holds non-finite values")
    return Checkpoint(root, manifest, tensors)
