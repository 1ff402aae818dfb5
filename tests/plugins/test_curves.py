"""Training telemetry: one CSV header, a rendered plot, and progress that respects TTYs."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from marllbd_rl.curves import MetricsLog, Progress, plot_learning_curve, read_metrics


def test_metrics_rows_keep_their_columns_and_resume_appends(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    log = MetricsLog(path, ("step", "loss", "eval"))
    log.write({"step": 1, "loss": 0.5})
    log.write({"step": 2, "eval": 0.25})
    MetricsLog(path, ("step", "loss", "eval")).write({"step": 3, "loss": 0.125})
    cols = read_metrics(path)
    assert cols["step"] == [1.0, 2.0, 3.0] and cols["loss"][2] == 0.125
    assert math.isnan(cols["loss"][1]) and math.isnan(cols["eval"][0])


def test_metrics_refuse_a_different_header_and_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    MetricsLog(path, ("step", "loss"))
    with pytest.raises(ValueError, match="existing header"):
        MetricsLog(path, ("step", "reward"))
    with pytest.raises(KeyError, match="unknown fields"):
        MetricsLog(path, ("step", "loss")).write({"step": 1, "los": 2.0})


def test_learning_curve_is_a_png(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.csv", ("step", "ret", "eval"))
    for i in range(20):
        log.write({"step": i, "ret": float(i), "eval": None if i % 5 else -float(i)})
    png = plot_learning_curve(tmp_path / "m.csv", tmp_path / "c.png", ys=("ret", "eval", "gone"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_one_line_on_a_tty_and_only_the_summary_elsewhere() -> None:
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        progress = Progress(10, enabled=True, stream=stream)
        for step in range(1, 11):
            progress.update(step, ret=1.5)
        progress.close("done")
    assert tty.getvalue().startswith("\r1/10") and "ret 1.5" in tty.getvalue()
    assert "\n" not in tty.getvalue()[:-1] and tty.getvalue().endswith("done\n")
    assert pipe.getvalue() == "done\n"
    quiet = io.StringIO()
    Progress(10, enabled=False, stream=quiet).close("done")
    assert quiet.getvalue() == ""
