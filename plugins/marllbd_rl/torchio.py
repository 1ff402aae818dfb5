"""Torch state ↔ the numpy arrays of a marllbd checkpoint (marllbd.checkpoint).

Modules are saved under "<module>.<state key>", optimiser moments under
"opt.<optimiser>.<param index>.<key>", single tensors under their own name.
Loading checks every name and shape and names the first misfit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from marllbd.checkpoint import CheckpointError, take


def to_arrays(
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            out[f"{prefix}.{key}"] = _array(value)
    for name, opt in (optimizers or {}).items():
        for index, slot in opt.state_dict()["state"].items():
            for key, value in slot.items():
                out[f"opt.{name}.{index}.{key}"] = _array(torch.as_tensor(value))
    for name, value in (tensors or {}).items():
        out[name] = _array(value)
    return out


def _array(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), copy=True, order="C")


def load_arrays(
    arrays: Mapping[str, np.ndarray],
    where: Path,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Restore what `to_arrays` saved, in place."""
    for prefix, module in modules.items():
        own = module.state_dict()
        state = {}
        for key, value in own.items():
            state[key] = _tensor(arrays, f"{prefix}.{key}", value, where)
        module.load_state_dict(state)
        for sub in module.modules():  # normalisers derive their shift and scale
            refresh = getattr(sub, "refresh", None)
            if callable(refresh):
                refresh()
    for name, opt in (optimizers or {}).items():
        saved = opt.state_dict()
        slots: dict[int, dict[str, torch.Tensor]] = {}
        head = f"opt.{name}."
        for key, value in arrays.items():
            if key.startswith(head):
                index, field = key[len(head) :].split(".", 1)
                slots.setdefault(int(index), {})[field] = torch.from_numpy(np.array(value))
        try:
            opt.load_state_dict({"state": slots, "param_groups": saved["param_groups"]})
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{where}: optimiser {name!r} state does not fit: {exc}"
            ) from None
    with torch.no_grad():
        for name, target in (tensors or {}).items():
            target.copy_(_tensor(arrays, name, target, where))


def _tensor(
    arrays: Mapping[str, np.ndarray], name: str, like: torch.Tensor, where: Path
) -> torch.Tensor:
    dtype = torch.empty(0, dtype=like.dtype).numpy().dtype
    return torch.from_numpy(np.array(take(arrays, name, tuple(like.shape), dtype, where=where)))
