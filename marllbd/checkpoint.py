"""Checkpoints, schema format 2: numpy arrays in safetensors plus a JSON manifest.

A checkpoint is a directory holding `weights.safetensors` (float32, float64 or
int64 arrays) and `manifest.json`, whose keys are:

    format                  2
    algorithm               "sac-gru", "qmix", ... (the trainer's name)
    dims                    {str: int}: the algorithm's network sizes
    feature_spec_version    and feature_names: what marllbd.features computed in training
    seed, marllbd_version   the run's seed and the marllbd that wrote it
    scenario                the training scenario's name ("" if none)
    hyper                   the algorithm's hyperparameters
    action                  {"type", "levels", "base", "spread"} (marllbd.policies.actions)
    reward                  {"metric", "field", "shaping", "scale"}
    progress                {"steps", "episodes", "updates", "best_fct" (a number or null)}
    eval                    {"fct_mean", "fct_p90", "fct_p99", "seeds"}: the evaluation that
                            chose it (marllbd.training.evaluate), or absent
    layout                  an object (QMIX: agents, lbs, groups, num_servers) or null
    run                     {"scenario_path", "out"}: what Trainer.load resumes (optional)

Other keys are kept and ignored.  `load` checks all of the above, then every
array, before anything reaches a network, and never unpickles; `save` checks
the same, so what it writes loads.  numpy only: serving a policy needs neither
torch nor the training code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from marllbd import __version__
from marllbd.errors import MarllbdError
from marllbd.features import FEATURE_NAMES, FEATURE_SPEC_VERSION

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
FORMAT = 2
BASE_KEYS = ("format", "algorithm", "dims", "feature_spec_version", "feature_names", "seed")
"""Keys every format has: checked before the format, so an old checkpoint is told to retrain."""
KEYS = (
    *BASE_KEYS,
    "marllbd_version",
    "scenario",
    "hyper",
    "action",
    "reward",
    "progress",
    "layout",
)
DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))
_ADDED = ("format", "feature_spec_version", "feature_names", "marllbd_version")
"""Keys `save` fills in itself."""


class CheckpointError(MarllbdError, ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the running code."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    """The checkpoint directory."""
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def array(
        self, name: str, shape: tuple[int, ...] | None = None, dtype: Any = None
    ) -> np.ndarray:
        """The array `name`, checked like `take` does."""
        return take(self.arrays, name, shape, dtype, where=self.path / WEIGHTS)


def take(
    arrays: Mapping[str, np.ndarray],
    name: str,
    shape: tuple[int, ...] | None = None,
    dtype: Any = None,
    *,
    where: str | Path = "arrays",
) -> np.ndarray:
    """`arrays[name]` if present with that shape and dtype; CheckpointError naming it otherwise."""
    a = arrays.get(name)
    if a is None:
        raise CheckpointError(f"{where}: tensor {name!r}: missing")
    a = np.asarray(a)
    if (shape is not None and a.shape != tuple(shape)) or (
        dtype is not None and a.dtype != np.dtype(dtype)
    ):
        want_dtype = a.dtype if dtype is None else np.dtype(dtype)
        want = f"{want_dtype} {a.shape if shape is None else tuple(shape)}"
        raise CheckpointError(f"{where}: tensor {name!r}: expected {want}, got {a.dtype} {a.shape}")
    return a


def save(path: str | Path, manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a checkpoint directory, arrays first and the manifest last (each by rename), so a
    reader never sees a new manifest with old arrays.  Adds format, feature spec and version."""
    out = Path(path)
    full = {key: value for key, value in manifest.items() if key not in _ADDED}
    full.update(
        format=FORMAT,
        feature_spec_version=FEATURE_SPEC_VERSION,
        feature_names=list(FEATURE_NAMES),
        marllbd_version=__version__,
    )
    mpath, wpath = out / MANIFEST, out / WEIGHTS
    check_manifest(full, mpath)
    # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
    flat = {name: np.require(a, requirements="C") for name, a in arrays.items()}
    check_arrays(flat, wpath)
    try:
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{mpath}: not expressible as JSON ({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    tmp_w = out / (WEIGHTS + ".tmp")
    save_file(flat, str(tmp_w))
    tmp_w.replace(wpath)
    tmp_m = out / (MANIFEST + ".tmp")
    tmp_m.write_text(text)
    tmp_m.replace(mpath)
    return out


def load(
    path: str | Path, *, algorithm: str | None = None, dims: Mapping[str, int] | None = None
) -> Checkpoint:
    """Read and validate a checkpoint directory (or a path to one of its two files).

    `algorithm` and `dims`, when given, must match the manifest.  CheckpointError names the
    file, the key and what was expected.
    """
    root = Path(path)
    if root.is_file() and root.name in (WEIGHTS, MANIFEST):
        root = root.parent
    mpath, wpath = root / MANIFEST, root / WEIGHTS
    if not mpath.is_file() or not wpath.is_file():
        raise CheckpointError(
            f"{root}: expected a checkpoint directory with {MANIFEST} and {WEIGHTS}"
        )
    manifest = _read_manifest(mpath)
    check_manifest(manifest, mpath, algorithm=algorithm)
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
        arrays = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{wpath}: corrupt or truncated safetensors file ({exc})") from None
    check_arrays(arrays, wpath)
    return Checkpoint(root, manifest, arrays)


def _read_manifest(mpath: Path) -> dict[str, Any]:
    def constant(name: str) -> float:
        raise CheckpointError(f"{mpath}: not valid JSON ({name} is not a JSON number)")

    try:
        manifest = json.loads(mpath.read_bytes(), parse_constant=constant)
    except OSError as exc:
        raise CheckpointError(f"{mpath}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{mpath}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def check_manifest(
    manifest: Mapping[str, Any], where: str | Path, *, algorithm: str | None = None
) -> None:
    """Every schema rule of the module docstring; CheckpointError names the key."""
    for key in BASE_KEYS:
        if key not in manifest:
            raise CheckpointError(f"{where}: missing key {key!r}")
    fmt = manifest["format"]
    if fmt != FORMAT:
        hint = (
            "written by an older marllbd; retrain the policy (make pretrain for the shipped ones)"
            if isinstance(fmt, int) and fmt < FORMAT
            else "not a format this marllbd reads"
        )
        raise CheckpointError(f"{where}: format: expected {FORMAT}, got {fmt!r} ({hint})")
    for key in KEYS:
        if key not in manifest:
            raise CheckpointError(f"{where}: missing key {key!r}")
    if algorithm is not None and manifest["algorithm"] != algorithm:
        raise CheckpointError(
            f"{where}: algorithm: expected {algorithm!r}, got {manifest['algorithm']!r}"
        )
    if manifest["feature_spec_version"] != FEATURE_SPEC_VERSION or manifest[
        "feature_names"
    ] != list(FEATURE_NAMES):
        raise CheckpointError(
            f"{where}: feature_spec_version: trained on {manifest['feature_spec_version']!r}, "
            f"this marllbd computes version {FEATURE_SPEC_VERSION}; retrain the policy"
        )
    _expect(where, "algorithm", manifest["algorithm"], str, "a string")
    _expect(where, "scenario", manifest["scenario"], str, "a string")
    _expect(where, "marllbd_version", manifest["marllbd_version"], str, "a string")
    _integer(where, "seed", manifest["seed"])
    dims = _expect(where, "dims", manifest["dims"], dict, "an object")
    for key, value in dims.items():
        _integer(where, f"dims.{key}", value, minimum=0)
    _expect(where, "hyper", manifest["hyper"], dict, "an object")
    # The action's values are the policy's to check (marllbd.policies.actions.ActionSpec).
    action = _expect(where, "action", manifest["action"], dict, "an object")
    for key in ("type", "base"):
        _expect(where, f"action.{key}", action.get(key), str, "a string")
    levels = _expect(where, "action.levels", action.get("levels"), list, "a list of numbers")
    for i, x in enumerate(levels):
        _number(where, f"action.levels[{i}]", x)
    _number(where, "action.spread", action.get("spread"))
    reward = _expect(where, "reward", manifest["reward"], dict, "an object")
    for key in ("metric", "field", "shaping"):
        _expect(where, f"reward.{key}", reward.get(key), str, "a string")
    _number(where, "reward.scale", reward.get("scale"))
    progress = _expect(where, "progress", manifest["progress"], dict, "an object")
    for key in ("steps", "episodes", "updates"):
        _integer(where, f"progress.{key}", progress.get(key), minimum=0)
    if progress.get("best_fct", 0.0) is not None:
        _number(where, "progress.best_fct", progress.get("best_fct"))
    if "eval" in manifest:
        ev = _expect(where, "eval", manifest["eval"], dict, "an object")
        _number(where, "eval.fct_mean", ev.get("fct_mean"))
        _number(where, "eval.fct_p90", ev.get("fct_p90"))
        seeds = _expect(where, "eval.seeds", ev.get("seeds"), list, "a list of seeds")
        for i, s in enumerate(seeds):
            _integer(where, f"eval.seeds[{i}]", s)
    if manifest["layout"] is not None:
        _expect(where, "layout", manifest["layout"], dict, "an object or null")


def check_arrays(arrays: Mapping[str, np.ndarray], where: str | Path) -> None:
    """Only float32, float64 and int64 arrays, all finite."""
    for name, a in arrays.items():
        if a.dtype not in DTYPES:
            raise CheckpointError(
                f"{where}: tensor {name!r}: expected float32, float64 or int64, got {a.dtype}"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{where}: tensor {name!r} holds non-finite values")


def _expect(where: str | Path, key: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise CheckpointError(f"{where}: {key}: expected {what}, got {value!r}")
    return value


def _integer(where: str | Path, key: str, value: Any, minimum: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (minimum is not None and value < minimum)
    ):
        what = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise CheckpointError(f"{where}: {key}: expected {what}, got {value!r}")


def _number(where: str | Path, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckpointError(f"{where}: {key}: expected a finite number, got {value!r}")
