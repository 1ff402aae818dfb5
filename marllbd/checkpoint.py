"""TEMPORARY (lead's stand-in until the serving branch lands): numpy checkpoints, schema v2."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from marllbd import __version__
from marllbd.features import FEATURE_NAMES, FEATURE_SPEC_VERSION

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
FORMAT = 2


class CheckpointError(ValueError):
    pass


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]


def save(path: str | Path, manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    full = {
        "format": FORMAT,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "marllbd_version": __version__,
        **manifest,
    }
    tmp = out / (WEIGHTS + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    tmp.replace(out / WEIGHTS)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / MANIFEST)
    return out


def load(
    path: str | Path, *, algorithm: str | None = None, dims: Mapping[str, int] | None = None
) -> Checkpoint:
    root = Path(path)
    m = json.loads((root / MANIFEST).read_text())
    if algorithm is not None and m["algorithm"] != algorithm:
        raise CheckpointError(f"{root}: algorithm: expected {algorithm!r}, got {m['algorithm']!r}")
    for k, v in (dims or {}).items():
        if m["dims"].get(k) != v:
            raise CheckpointError(f"{root}: dims.{k}: expected {v}, got {m['dims'].get(k)!r}")
    return Checkpoint(root, m, load_file(str(root / WEIGHTS)))
