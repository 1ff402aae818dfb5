"""Training logs: one tidy CSV schema, resume drops a crashed tail, curves, periodic progress."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from marllbd.training import logs


def test_scalars_are_tidy_rows_and_non_finite_values_are_left_out(tmp_path: Path) -> None:
    log = logs.RunLog(tmp_path, tensorboard=False)
    log.write(0, {"eval/fct_mean": 0.5})
    log.write(10, {"episode/return": 3.0, "train/loss": float("nan"), "x": None})
    log.close()
    header, *rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert header == "step,wall_seconds,tag,value"
    assert [r.split(",")[::2] for r in rows] == [["0", "eval/fct_mean"], ["10", "episode/return"]]
    series = logs.read(tmp_path / "metrics.csv")
    assert series == {"eval/fct_mean": ([0], [0.5]), "episode/return": ([10], [3.0])}


def test_resume_keeps_rows_up_to_its_step_and_appends(tmp_path: Path) -> None:
    log = logs.RunLog(tmp_path, tensorboard=False)
    for step in (0, 100, 200, 300):
        log.write(step, {"episode/return": float(step)})
    resumed = logs.RunLog(tmp_path, resume_step=200, tensorboard=False)
    resumed.write(300, {"episode/return": -1.0})
    assert logs.read(tmp_path / "metrics.csv")["episode/return"] == (
        [0, 100, 200, 300],
        [0.0, 100.0, 200.0, -1.0],
    )


def test_a_csv_of_another_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("step,episode\n1,2\n")
    with pytest.raises(ValueError, match="fresh output directory"):
        logs.RunLog(tmp_path, resume_step=1, tensorboard=False)


def test_learning_curve_is_a_png(tmp_path: Path) -> None:
    log = logs.RunLog(tmp_path, tensorboard=False)
    for step in range(5):
        log.write(step, {"episode/return": step * 2.0, "train/loss": 1.0 / (step + 1)})
    out = logs.plot(tmp_path / "metrics.csv", tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_to_quality_curve_is_against_wall_time(tmp_path: Path) -> None:
    log = logs.RunLog(tmp_path, tensorboard=False)
    log.write(0, {"eval/ratio_mean_fct": 1.02, "eval/ratio_p90_fct": 1.1})
    log.write(100, {"eval/ratio_mean_fct": 0.97, "eval/ratio_p90_fct": 0.95})
    out = logs.plot(tmp_path / "metrics.csv", tmp_path / "curve.png", x="wall_seconds")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="x: expected one of step, wall_seconds, got 'time'"):
        logs.plot(tmp_path / "metrics.csv", tmp_path / "curve.png", x="time")


def test_tensorboard_gets_the_same_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = logs.RunLog(tmp_path)
    log.write(5, {"eval/fct_mean": 0.25})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    (event,) = acc.Scalars("eval/fct_mean")
    assert event.step == 5 and event.value == pytest.approx(0.25)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_writes_a_line_every_period_then_the_summary() -> None:
    stream, clock = io.StringIO(), _Clock()
    progress = logs.Progress(1000, stream=stream, every=30.0, clock=clock)
    for step in range(1, 1001):
        clock.now = step * 0.1  # 10 steps a simulated second: a line every 300 steps
        progress.update(step, ret=1.5)
    progress.close("done")
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "done"
    assert [ln.split()[1] for ln in lines[:-1]] == ["step=300", "step=600", "step=900"]
    assert "steps_per_second=10" in lines[0] and "ret=1.5" in lines[0]


def test_progress_on_a_terminal_is_a_tqdm_bar() -> None:
    pytest.importorskip("tqdm")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = logs.Progress(10, stream=stream)
    for step in range(1, 11):
        progress.update(step)
    progress.close("done")
    assert "10/10" in stream.getvalue() and stream.getvalue().endswith("done\n")
    quiet = io.StringIO()
    logs.Progress(10, enabled=False, stream=quiet).close("done")
    assert quiet.getvalue() == ""
