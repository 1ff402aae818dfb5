"""Training telemetry: a metrics CSV, its learning-curve PNG, and a one-line TTY progress display.

Shared by every trainer so runs of different algorithms produce comparable
files.  Plotting uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any


class MetricsLog:
    """Appends rows to a CSV with a fixed header; missing fields are written empty.

    An existing file with the same header is appended to (resumed runs keep one
    history); a file with a different header is an error rather than a mixed CSV.
    """

    def __init__(self, path: str | Path, fields: Iterable[str]) -> None:
        self.path = Path(path)
        self.fields = tuple(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as fh:
                header = next(csv.reader(fh), [])
            if tuple(header) != self.fields:
                raise ValueError(
                    f"{self.path}: existing header {header} differs from the fields "
                    f"{list(self.fields)}; write to a fresh output directory"
                )
        else:
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.fields)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row; keys outside `fields` are an error (a typo would vanish silently)."""
        unknown = set(row) - set(self.fields)
        if unknown:
            raise KeyError(f"metrics row: unknown fields {sorted(unknown)}; known {self.fields}")
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([_cell(row.get(f)) for f in self.fields])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_metrics(csv_path: str | Path) -> dict[str, list[float]]:
    """Columns of a metrics CSV as floats (NaN where a row left the field empty)."""
    with Path(csv_path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in rows[0]}


def plot_learning_curve(
    csv_path: str | Path,
    png_path: str | Path,
    x: str = "step",
    ys: tuple[str, ...] = ("episode_return",),
) -> Path:
    """Plot each column in `ys` against `x`, one panel per column, skipping empty cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_metrics(csv_path)
    if x not in cols and cols:
        raise KeyError(f"{csv_path}: no column {x!r}; columns are {sorted(cols)}")
    present = [y for y in ys if y in cols]
    fig, axes = plt.subplots(
        max(len(present), 1), 1, figsize=(7, 2.2 * max(len(present), 1)), sharex=True
    )
    axes_list = list(axes) if len(present) > 1 else [axes]
    for ax, y in zip(axes_list, present, strict=False):
        pts = [(a, b) for a, b in zip(cols[x], cols[y], strict=True) if not math.isnan(b)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else "")
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    axes_list[-1].set_xlabel(x)
    # A fixed layout: tight_layout costs seconds, more than the training steps of a short run.
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.14, right=0.97, top=1 - 0.15 / height, bottom=0.55 / height)
    out = Path(png_path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


class Progress:
    """One carriage-return line of live figures on a TTY; on a non-TTY only the final summary."""

    def __init__(self, total: int, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self._start = time.monotonic()
        self._last = 0.0
        self._width = 0

    def update(self, step: int, **live: float) -> None:
        """Redraw the line at most ten times a second (cheap enough to call every step)."""
        if not self.live:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and step < self.total:
            return
        self._last = now
        rate = step / max(now - self._start, 1e-9)
        parts = [f"{step}/{self.total}", f"{rate:.0f} steps/s"]
        parts += [f"{k} {v:.4g}" for k, v in live.items()]
        line = "  ".join(parts)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self, summary: str) -> None:
        """End the live line and write `summary` (always, TTY or not) when `enabled`."""
        if self.live:
            self.stream.write("\r" + " " * self._width + "\r")
        if self.enabled:
            self.stream.write(summary + "\n")
            self.stream.flush()
