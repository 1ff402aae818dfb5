"""The learned-policy benchmarks' pieces on tiny inputs: a decision is features + policy on
real frames, and a timed training run reports its rate and keeps its checkpoint readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from marllbd.benchmarks import policy_infer, registry, train_qmix, train_sac
from marllbd.policies import load
from marllbd.training import Trainer


def test_registered() -> None:
    benches = registry()
    assert benches["policy_infer"] is policy_infer.policy_infer
    assert benches["policy_infer_equivariant"] is policy_infer.policy_infer_equivariant
    assert benches["train_sac"] is train_sac.train_sac
    assert benches["train_qmix"] is train_qmix.train_qmix


def test_policy_infer_times_features_and_decide_on_real_frames() -> None:
    stream, caps = policy_infer._frame_stream(30)
    assert len(stream) == 30 and stream[0].num_servers == 16 and caps.shape == (16,)
    assert len({obs.frame_no for obs in stream}) == 30  # consecutive frames, not one repeated
    wall, cpu = policy_infer._latencies_us(load("sed"), stream, caps, reps=2)
    assert wall.shape == cpu.shape == (57,)  # 2 × 30 decisions, minus the 3 of the warm-up
    assert (wall > 0).all() and np.median(wall) < 1e5


ON_ESTIMATES = {"hint": "adaptive", "residual": "adaptive"}


@pytest.mark.parametrize(
    ("arch", "n", "hyper"),
    [("flat", 16, {}), ("equivariant", 0, {}), ("equivariant", 0, ON_ESTIMATES)],
)
def test_the_benchmarked_policy_loads_as_the_daemon_loads_it(
    arch: str, n: int, hyper: dict[str, str]
) -> None:
    """A fresh actor saved as a complete checkpoint (the daemon's loader refuses less)."""
    policy = policy_infer._fresh_policy(arch=arch, num_servers=n, **hyper)
    stream, caps = policy_infer._frame_stream(12)
    wall, _ = policy_infer._latencies_us(policy, stream, caps, reps=1)
    assert wall.size == 11 and np.median(wall) < 1e5


def test_timed_training_reports_its_rate_and_keeps_the_checkpoint_until_then() -> None:
    pytest.importorskip("torch")
    small = (("learning_starts", 10), ("batch_size", 2), ("seq_len", 4), ("burn_in", 2))
    seen: list[Path] = []

    def then(trainer: Trainer) -> bool:
        last = trainer.out / "checkpoints" / "last"
        seen.append(last)
        return (last / "manifest.json").is_file()

    result, rate, kept = train_sac.timed_training("sac-gru", 20, small, then=then)
    assert kept is True and not seen[0].exists()  # read in time, then cleaned up
    assert result.steps == 20 and rate == pytest.approx(20 / result.wall_seconds)
    line = train_sac.training_result("train_x", rate, 4 * rate, result.steps, {"k": 1})
    assert line.ratio == pytest.approx(0.25) and line.extra["learner_time_fraction"] == 0.75
    assert line.extra["k"] == 1 and line.extra["scenario"] == "seed-16"


def test_a_latency_line_puts_the_median_beside_the_baselines_of_the_same_run() -> None:
    from marllbd.benchmarks import latency_result

    us, base = np.array([1.0, 2.0, 3.0, 40.0]), np.array([1.0, 1.0, 1.0, 2.0])
    line = latency_result("x_decide", us, base, "sed", servers=16).to_json_dict()
    assert (line["value"], line["baseline_value"], line["ratio"]) == (2.5, 1.0, 2.5)
    assert line["p99_us"] == pytest.approx(np.percentile(us, 99)) and line["p99_us"] > 30
    assert (line["unit"], line["baseline"], line["decisions"], line["servers"]) == (
        "us",
        "sed",
        4,
        16,
    )
