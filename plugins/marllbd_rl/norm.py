"""Running standardisation of network inputs, saved with the networks.

One definition for every algorithm: a running mean and sum of squared
deviations (Chan et al.'s parallel update, float64), optionally after log1p
(features are non-negative seconds and counts with long tails), applied as
float32 `shift`/`scale` and clipped.  Only `count`, `mean` and `m2` are
saved; `shift` and `scale` follow from them (`refresh`), exactly as the numpy
serving code in marllbd.policies.learned derives them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from marllbd.policies.learned import NORM_VAR_EPS as VAR_EPS


class RunningNorm(nn.Module):
    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, clip: float, log1p: bool = False) -> None:
        super().__init__()
        self.clip, self.log1p = clip, log1p
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(dim), persistent=False)
        self.register_buffer("scale", torch.ones(dim), persistent=False)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def update(self, x: np.ndarray | torch.Tensor) -> None:
        """Fold a batch of raw rows (..., dim) into the statistics."""
        y = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1, self.dim)
        if y.shape[0] == 0:
            return
        if self.log1p:
            y = torch.log1p(y)
        n_b = float(y.shape[0])
        mean_b = y.mean(0)
        m2_b = ((y - mean_b) ** 2).sum(0)
        n_a = float(self.count)
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / total)
        self.m2 += m2_b + delta**2 * (n_a * n_b / total)
        self.count.fill_(total)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the float32 shift and scale the forward pass uses (after a load too)."""
        if float(self.count) < 2.0:
            return
        var = self.m2 / self.count
        self.shift.copy_(self.mean.float())
        self.scale.copy_(torch.rsqrt(var + VAR_EPS).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.log1p(x) if self.log1p else x
        return ((y - self.shift) * self.scale).clamp(-self.clip, self.clip)


class TokenNorm(RunningNorm):
    """The equivariant networks' normaliser: rows of per-server tokens (..., n * width),
    the F features then `width - F` columns that pass through (the capacity token, and
    the capacity hint if any: marllbd.policies.learned.server_tokens).  One set of
    statistics over the F features of every server, so it means the same for any n.
    The output is (..., n, width)."""

    def __init__(self, features: int, width: int, clip: float) -> None:
        super().__init__(features, clip, log1p=True)
        self.width = width

    def update(self, x: np.ndarray | torch.Tensor) -> None:
        rows = np.asarray(x, dtype=np.float64).reshape(-1, self.width)
        super().update(rows[:, : self.dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.reshape(*x.shape[:-1], -1, self.width)
        return torch.cat([super().forward(t[..., : self.dim]), t[..., self.dim :]], -1)
