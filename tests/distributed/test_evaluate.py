"""`marllbd eval --ray`: the runs as Ray tasks give the floats `--jobs 1` gives."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from marllbd import cli
from marllbd.distributed import RayExecutor
from marllbd.training import evaluate as ev
from marllbd.training import report
from tests.training.test_compare import SCENARIOS, SEEDS, _scenario_files


def test_ray_tasks_give_the_same_results_as_one_job(ray_cluster: ModuleType) -> None:
    policies = ["sed", "ecmp"]
    serial = ev.evaluate_scenarios(SCENARIOS, policies, SEEDS)
    on_ray = ev.evaluate_scenarios(SCENARIOS, policies, SEEDS, executor=RayExecutor())
    assert len(on_ray) == len(serial) == len(SCENARIOS) * len(policies) * len(SEEDS)
    for a, b in zip(serial, on_ray, strict=True):
        for field in report.CSV_COLUMNS:
            if field != "wall_seconds":
                assert getattr(a, field) == getattr(b, field), field
        for array in ("fct", "t", "utilization"):
            np.testing.assert_array_equal(getattr(a, array), getattr(b, array))


def test_a_policy_source_cannot_go_to_ray_tasks(ray_cluster: ModuleType) -> None:
    source = ev.PolicySource("mine", lambda lb: ev.load("sed"))
    with pytest.raises(ValueError, match="executor: policy 'mine' is a PolicySource"):
        ev.evaluate_scenarios(SCENARIOS, ["sed", source], [1], executor=RayExecutor())


def test_eval_command_on_ray_prints_what_one_job_prints(
    ray_cluster: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _scenario_files(tmp_path)
    argv = ["eval", "--scenario", f"{first},{second}", "--policies", "ecmp", "--baseline", "sed",
            "--seeds", "1,2", "--json"]  # fmt: skip
    assert cli.main([*argv, "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--out", str(tmp_path / "ray"), "--ray"]) == 0
    on_ray = json.loads(capsys.readouterr().out)
    for doc in (one, on_ray):
        for row in doc["runs"]:
            row.pop("wall_seconds")
        for row in doc["summary"]:
            row.pop("wall_seconds")
    assert on_ray == one


def test_an_empty_address_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--scenario", "paper-7", "--policies", "sed", "--seeds", "1",
            "--out", str(tmp_path), "--ray", " "]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "marllbd eval: error: --ray: expected a cluster address (e.g. auto or HOST:6379), got ''\n"
    )
