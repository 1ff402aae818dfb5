"""Training logs, one schema for every algorithm: a scalar CSV, TensorBoard, curves, progress.

metrics.csv is tidy: one row per scalar, `step,wall_seconds,tag,value`, with
TensorBoard-style tags that every trainer shares:

- episode/return, episode/reward_mean, episode/fct_mean  when an episode ends;
- train/<loss name>                                     every `log_every` steps
  (the mean over the updates since the last row), and train/steps_per_second;
- eval/fct_mean, eval/fct_p90, eval/fct_p99             at each evaluation, and
  eval/ratio_mean_fct, eval/ratio_p90_fct, eval/ratio_p99_fct: those FCTs over the
  evaluation baseline's (static SED by default) on the same seeds, as the geometric
  mean of the per-seed ratios (marllbd.training.evaluate.compare).

learning_curve.png plots them against wall time: the time-to-quality curve.

The same scalars go to TensorBoard (out/tensorboard/) when the `tensorboard`
package is installed.  A resumed run appends to the same CSV after dropping
any row past the step it resumes from (a crashed run's tail).  Plotting uses
matplotlib's Agg canvas without pyplot.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

HEADER = ("step", "wall_seconds", "tag", "value")
CURVES = (
    "eval/ratio_mean_fct",
    "eval/ratio_p90_fct",
    "eval/fct_mean",
    "eval/fct_p90",
    "episode/return",
    "episode/fct_mean",
)
"""The tags the learning-curve PNG shows (any train/ tag is added after them)."""
X_AXES = {"step": "step", "wall_seconds": "wall time (s)"}
"""The columns a curve can be plotted against, with their axis labels."""


class RunLog:
    """Scalars to out/metrics.csv and, if available, TensorBoard."""

    def __init__(
        self, out: str | Path, *, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = Path(out) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start = time.monotonic()
        self._wall0 = 0.0
        if resume_step is not None and self.path.exists() and self.path.stat().st_size > 0:
            rows = _read_rows(self.path)
            kept = [r for r in rows if int(r["step"]) <= resume_step]
            self._wall0 = max((float(r["wall_seconds"]) for r in kept), default=0.0)
            self._rewrite(kept)
        else:
            self._rewrite([])
        self._tb = _tensorboard(Path(out) / "tensorboard", resume_step) if tensorboard else None

    @property
    def wall_seconds(self) -> float:
        """Training wall time, carried over a resume."""
        return self._wall0 + time.monotonic() - self._start

    def write(self, step: int, scalars: Mapping[str, float | None]) -> None:
        """Append every finite scalar of `scalars` at `step`."""
        wall = self.wall_seconds
        rows = [
            (step, f"{wall:.3f}", tag, f"{float(v):.8g}")
            for tag, v in scalars.items()
            if v is not None and math.isfinite(float(v))
        ]
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerows(rows)
        if self._tb is not None:
            for _, _, tag, value in rows:
                self._tb.add_scalar(tag, float(value), step, walltime=None)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        with self.path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows([r[h] for h in HEADER] for r in rows)


def _tensorboard(path: Path, resume_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch or tensorboard not installed: the CSV is the record
        return None
    purge = None if resume_step is None else resume_step + 1
    return SummaryWriter(str(path), purge_step=purge)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != HEADER:
            raise ValueError(
                f"{path}: header {reader.fieldnames} is not {list(HEADER)}; "
                "write to a fresh output directory"
            )
        return list(reader)


def read(path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """metrics.csv as tag → (steps, values), in file order."""
    return {tag: (list(map(int, xs)), vs) for tag, (xs, vs) in _series(path, "step").items()}


def _series(path: str | Path, x: str) -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in _read_rows(Path(path)):
        xs, values = series.setdefault(row["tag"], ([], []))
        xs.append(float(row[x]))
        values.append(float(row["value"]))
    return series


def plot(
    csv_path: str | Path,
    png_path: str | Path,
    tags: Iterable[str] = CURVES,
    *,
    x: str = "step",
) -> Path:
    """One panel per tag present (then every train/ tag), value against x ("step" or
    "wall_seconds"); a ratio panel (eval/ratio_*) has a line at 1, parity with the baseline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in X_AXES:
        raise ValueError(f"x: expected one of {', '.join(X_AXES)}, got {x!r}")
    series = _series(csv_path, x)
    wanted = [t for t in tags if t in series]
    wanted += sorted(t for t in series if t.startswith("train/") and t not in wanted)
    panels = max(len(wanted), 1)
    fig = Figure(figsize=(7, 2.0 * panels))
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, tag in zip(axes, wanted, strict=False):
        steps, values = series[tag]
        ax.plot(steps, values, marker="." if len(steps) < 50 else "")
        if tag.startswith("eval/ratio_"):
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_ylabel(tag, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(X_AXES[x])
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.16, right=0.97, top=1 - 0.15 / height, bottom=0.5 / height)
    out = Path(png_path)
    fig.savefig(out, dpi=100)
    return out


class Progress:
    """A tqdm bar on a terminal; elsewhere a `key=value` line every `every` seconds.

    Both end with the run's one-line summary.  `clock` is injectable for tests.
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        enabled: bool = True,
        stream: IO[str] | None = None,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.enabled, self.every, self._clock = total, enabled, every, clock
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        if enabled and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(
                    total=total, initial=initial, file=self.stream, unit="step", dynamic_ncols=True
                )
        self._step = initial
        self._t0 = clock()
        self._s0 = initial
        self._last = self._t0

    def update(self, step: int, **live: float) -> None:
        """Advance to `step` with some live figures (cheap: call it every step)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._step)
            self._step = step
            now = self._clock()
            if now - self._last >= 0.5:
                self._last = now
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in live.items()}, refresh=False)
            return
        self._step = step
        now = self._clock()
        if now - self._last < self.every:
            return
        self._last = now
        rate = (step - self._s0) / max(now - self._t0, 1e-9)
        fields = {"step": step, "total": self.total, "steps_per_second": f"{rate:.0f}"}
        fields.update({k: f"{v:.4g}" for k, v in live.items()})
        self.stream.write("train " + " ".join(f"{k}={v}" for k, v in fields.items()) + "\n")
        self.stream.flush()

    def close(self, summary: str) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.enabled:
            self.stream.write(summary + "\n")
            self.stream.flush()
