"""`marllbd sweep`: the search space's parser, and one small sweep on the Ray cluster."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from marllbd import cli
from marllbd.distributed import sweep
from marllbd.training import TrainConfig, logs

TINY = """\
duration = 5.0
control_interval = 0.25

[servers]
workers = [1, 1, 4]

[trace]
kind = "poisson"
load = 0.95
"""
SMALL = {"hidden": 8, "burn_in": 2, "seq_len": 3, "batch_size": 4, "learning_starts": 10}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr", "expected NAME=KIND(ARGS) or NAME=KIND:A:B"),
        ("lr=normal(0, 1)", "unknown kind 'normal'"),
        ("lr=uniform(1)", "expects two finite numbers (lo, hi), got [1]"),
        ("lr=uniform(2, 1)", "expects lo < hi, got 2 and 1"),
        ("lr=loguniform(0, 1)", "expects 0 < lo, got 0"),
        ("lr=randint(1.5, 4)", "expects integers"),
        ("lr=choice()", "needs at least one value"),
        ("lr=choice(a b)", "comma-separated TOML values"),
    ],
)
def test_bad_space_items_are_named(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"--space") as err:
        sweep.parse_space([item])
    assert message in str(err.value)


def test_space_kinds_and_values() -> None:
    items = ["hidden=choice(8, 16)", "gamma=uniform(0.9, 0.99)"]
    space = sweep.parse_space([*items, "actor_lr=loguniform(1e-4, 1e-2)", "seq_len=randint(2, 5)"])
    assert [(d.name, d.kind, d.values) for d in space] == [
        ("hidden", "choice", (8, 16)),
        ("gamma", "uniform", (0.9, 0.99)),
        ("actor_lr", "loguniform", (1e-4, 1e-2)),
        ("seq_len", "randint", (2, 5)),
    ]
    colon = sweep.parse_space(["actor_lr=loguniform:1e-4:1e-2,hidden=choice:8:16"])
    assert [(d.name, d.kind, d.values) for d in colon] == [
        ("actor_lr", "loguniform", (1e-4, 1e-2)),
        ("hidden", "choice", (8, 16)),
    ]
    with pytest.raises(ValueError, match="unknown kind 'normal'"):
        sweep.parse_space(["hidden=choice:8,lr=normal:0:1"])
    with pytest.raises(ValueError, match="--space gamma: given twice"):
        sweep.parse_space(["gamma=uniform(0.9, 0.99)", "gamma=choice(0.9)"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--space", "nope=choice(1, 2)"], "hyper.nope: unknown sac-gru hyperparameter"),
        (["--space", "gamma=choice(2.0)"], "hyper.gamma must be in [0, 1)"),
        (["--space", "hidden=choice(8)", "--hyper", "hidden=8"], "--space hidden: also fixed"),
        (["--space", "hidden=choice(8)", "--eval-baseline", "none"], "--eval-baseline"),
        (["--space", "hidden=choice(8)", "--samples", "0"], "--samples"),
        ([], "--space: expected at least one"),
    ],
)
def test_sweep_refuses_bad_input_before_starting_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    pytest.importorskip("torch")
    argv = ["sweep", "--algo", "sac-gru", "--scenario", "paper-7", "--out", str(tmp_path)]
    assert cli.main([*argv, *extra]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and message in err[0], err


def test_a_small_sweep_ranks_its_trials_by_their_logged_ratio(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    base = TrainConfig(
        algo="sac-gru", scenario=str(scenario), out=tmp_path / "sweep", steps=20, envs=1,
        eval_every=10, eval_seeds=(5, 6), progress=False, hyper=tuple(SMALL.items()),
    )  # fmt: skip
    space = sweep.parse_space(["actor_lr=loguniform(1e-4, 1e-2)", "gamma=choice(0.9, 0.99)"])
    trials = sweep.run(base, space, samples=2, search_seed=7)
    assert len(trials) == 2
    for t in trials:
        assert 1e-4 <= t.hyper["actor_lr"] <= 1e-2 and t.hyper["gamma"] in (0.9, 0.99)
        # What the trial reported is what its own run logged at its last evaluation.
        series = logs.read(t.out / "metrics.csv")
        steps, ratios = series["eval/ratio_mean_fct"]
        assert steps[-1] == t.step == 20
        assert ratios[-1] == pytest.approx(t.ratio_mean_fct, rel=1e-7)
        assert math.isfinite(t.ratio_p90_fct)
    assert trials[0].ratio_mean_fct <= trials[1].ratio_mean_fct
    table = sweep.write(trials, base.out, "sed")
    assert "mean FCT / sed" in table and (base.out / "sweep.md").read_text() == table
    with (base.out / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["trial"] for r in rows] == [t.trial_id for t in trials]
    assert sweep.hyper_args(trials[0]).startswith("--hyper actor_lr=")
    # The search's draws take their seed: the same seed draws the same hyperparameters.
    again = sweep.run(replace(base, out=tmp_path / "again"), space, samples=2, search_seed=7)
    assert sorted(t.hyper["actor_lr"] for t in again) == sorted(t.hyper["actor_lr"] for t in trials)
