"""Paired comparison: ratios to a baseline with intervals, several scenarios, worker processes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from marllbd import cli, stats
from marllbd.policies import load
from marllbd.sim.scenario import Scenario, from_dict
from marllbd.training import evaluate as ev
from marllbd.training import report

SEEDS = (1, 2, 3)


def short(name: str, workers: list[int], load_: float = 0.9) -> Scenario:
    return from_dict(
        {
            "name": name,
            "duration": 5.0,
            "servers": {"workers": workers},
            "trace": {"kind": "poisson", "load": load_},
        }
    )


SCENARIOS = (short("uneven", [1, 1, 4]), short("two", [1, 3], 0.85))


@pytest.fixture(scope="module")
def results() -> list[ev.Result]:
    return ev.evaluate_scenarios(SCENARIOS, ["sed", "ecmp", "lsq"], SEEDS)


# -- the statistics --------------------------------------------------------------------


def test_paired_ratio_matches_a_hand_computed_case() -> None:
    # Ratios 2/1, 4/1, 8/2 = 2, 4, 4; in log2: 1, 2, 2, mean 5/3, sample sd
    # sqrt(((-2/3)² + (1/3)² + (1/3)²) / 2) = sqrt(1/3), standard error sqrt(1/3)/sqrt(3) = 1/3.
    # t(0.975, 2 df) = 4.302653 (tables), so the interval is 2^(5/3 ± 4.302653/3):
    # geometric mean 2^1.666667 = 3.174802, low 2^0.232449 = 1.174828, high 2^3.100884 = 8.579445.
    est = stats.paired_ratio([2.0, 4.0, 8.0], [1.0, 1.0, 2.0])
    assert est.n == 3 and est.confidence == 0.95
    assert est.mean == pytest.approx(3.174802, abs=1e-6)
    assert est.low == pytest.approx(1.174828, abs=1e-6)
    assert est.high == pytest.approx(8.579445, abs=1e-6)
    assert est.excludes(1.0) and not est.excludes(3.0)


def test_paired_ratio_invariants() -> None:
    a = [0.31, 0.27, 0.45, 0.38]
    b = [0.25, 0.29, 0.30, 0.33]
    same = stats.paired_ratio(a, a)
    assert (same.mean, same.low, same.high, same.half_width) == (1.0, 1.0, 1.0, 0.0)
    assert not same.excludes(1.0)
    ab, ba = stats.paired_ratio(a, b), stats.paired_ratio(b, a)
    assert ab.mean == pytest.approx(1 / ba.mean)
    assert ab.low == pytest.approx(1 / ba.high) and ab.high == pytest.approx(1 / ba.low)
    assert ab.low * ab.high == pytest.approx(ab.mean**2)  # multiplicative interval
    scaled = stats.paired_ratio([7 * x for x in a], [7 * x for x in b])
    assert scaled.mean == pytest.approx(ab.mean) and scaled.low == pytest.approx(ab.low)
    one = stats.paired_ratio([2.0], [4.0])
    assert one.mean == 0.5 and math.isnan(one.low) and not one.excludes(1.0)


def test_paired_ratio_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="baselines: expected one per value"):
        stats.paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"baselines: expected positive numbers .*, got 0\.0"):
        stats.paired_ratio([1.0], [0.0])
    with pytest.raises(ValueError, match="values: expected positive"):
        stats.paired_ratio([math.nan], [1.0])


# -- evaluation over scenarios ---------------------------------------------------------


def test_runs_every_scenario_policy_and_seed_in_order(results: list[ev.Result]) -> None:
    assert [(r.scenario, r.policy, r.seed) for r in results] == [
        (sc.name, p, s) for sc in SCENARIOS for p in ("sed", "ecmp", "lsq") for s in SEEDS
    ]
    # Paired: at a (scenario, seed) every policy saw the same trace.
    for sc in SCENARIOS:
        for seed in SEEDS:
            flows = {r.flows for r in results if (r.scenario, r.seed) == (sc.name, seed)}
            assert len(flows) == 1
    assert [s.scenario for s in ev.summary(results)] == ["uneven"] * 3 + ["two"] * 3


def test_two_jobs_give_the_same_results_as_one(results: list[ev.Result]) -> None:
    parallel = ev.evaluate_scenarios(SCENARIOS, ["sed", "ecmp", "lsq"], SEEDS, jobs=2)
    assert len(parallel) == len(results)
    for a, b in zip(results, parallel, strict=True):
        for field in report.CSV_COLUMNS:
            assert getattr(a, field) == getattr(b, field), field
        for array in ("fct", "t", "utilization"):
            np.testing.assert_array_equal(getattr(a, array), getattr(b, array))


def test_bad_arguments_are_refused_before_running() -> None:
    source = ev.PolicySource("mine", lambda lb: load("sed"))
    with pytest.raises(ValueError, match="jobs: policy 'mine' is a PolicySource"):
        ev.evaluate_scenarios(SCENARIOS, ["sed", source], [1], jobs=2)
    with pytest.raises(ValueError, match="jobs: expected an integer >= 1, got 0"):
        ev.evaluate_scenarios(SCENARIOS, ["sed"], [1], jobs=0)
    with pytest.raises(ValueError, match="scenarios: expected distinct names"):
        ev.evaluate_scenarios([SCENARIOS[0], SCENARIOS[0]], ["sed"], [1])
    with pytest.raises(ValueError, match="scenarios: expected at least one"):
        ev.evaluate_scenarios([], ["sed"], [1])


# -- paired ratios ---------------------------------------------------------------------


def test_compare_pairs_by_scenario_and_seed(results: list[ev.Result]) -> None:
    ratios = ev.compare(results, "sed")
    assert [(r.scenario, r.policy, r.pairs) for r in ratios] == [
        ("uneven", "ecmp", 3), ("uneven", "lsq", 3), ("two", "ecmp", 3), ("two", "lsq", 3),
        (None, "ecmp", 6), (None, "lsq", 6),
    ]  # fmt: skip
    by = {(r.scenario, r.policy, r.seed): r for r in results}
    pooled = ratios[4]
    logs = [
        math.log(by[sc.name, "ecmp", s].p90_fct / by[sc.name, "sed", s].p90_fct)
        for sc in SCENARIOS
        for s in SEEDS
    ]
    assert pooled.p90_fct.mean == pytest.approx(math.exp(np.mean(logs)), rel=1e-12)
    assert pooled.baseline == "sed" and pooled.mean_fct.n == 6
    # ECMP overloads the 1-worker servers of "uneven" on every seed: slower beyond the noise.
    assert ratios[0].mean_fct.low > 1.0 and ratios[0].mean_fct.excludes(1.0)


def test_the_baseline_against_itself_is_exactly_one() -> None:
    again = ev.PolicySource("sed again", lambda lb: load("sed", lb=lb))
    runs = ev.evaluate_scenarios(SCENARIOS[:1], ["sed", again], [1, 2])
    (per_scenario, pooled) = ev.compare(runs, "sed")
    for r in (per_scenario, pooled):
        for field in ev.CI_FIELDS:
            e = getattr(r, field)
            assert (e.mean, e.low, e.high) == (1.0, 1.0, 1.0)


def test_compare_refuses_a_missing_baseline_or_unpaired_runs(results: list[ev.Result]) -> None:
    with pytest.raises(ValueError, match="baseline: expected one of the evaluated policies"):
        ev.compare(results, "wcmp")
    with pytest.raises(ValueError, match="policy 'ecmp' was not run on the same"):
        ev.compare([r for r in results if (r.policy, r.seed) != ("ecmp", 3)], "sed")


def test_ratio_table_marks_intervals_that_exclude_one() -> None:
    def est(mean: float, low: float, high: float, n: int = 3) -> stats.Estimate:
        return stats.Estimate(mean, low, high, n)

    faster, slower, same = est(0.8, 0.7, 0.9), est(1.5, 1.2, 1.9), est(1.05, 0.9, 1.2)
    one = est(0.5, math.nan, math.nan, 1)
    table = report.ratios_markdown(
        [
            ev.Ratio("a", "sed", "s1", 3, faster, slower, same),
            ev.Ratio("a", "sed", "s2", 1, one, one, one),
            ev.Ratio("a", "sed", None, 4, faster, faster, same),
        ]
    )
    lines = table.splitlines()
    assert lines[2] == (
        "| s1 | a | 3 | **0.800× [0.700, 0.900]** ↓ | **1.500× [1.200, 1.900]** ↑ "
        "| 1.050× [0.900, 1.200] |"
    )
    assert lines[3] == "| s2 | a | 1 | 0.500× | 0.500× | 0.500× |"
    assert lines[4].startswith("| all scenarios | a | 4 | **0.800×")
    assert lines[-1] == report.RATIO_MARK_NOTE and "excludes 1" in lines[-1]
    # One scenario: its pooled rows would repeat it, so only the per-scenario rows show.
    rows = [ev.Ratio("a", "sed", sc, 3, faster, slower, same) for sc in ("s1", None)]
    single = report.ratios_markdown(rows)
    assert "all scenarios" not in single and single.count("| s1 | a |") == 1


def test_report_with_a_baseline(results: list[ev.Result], tmp_path: Path) -> None:
    table = report.write(results, SCENARIOS, tmp_path, baseline="sed")
    assert (tmp_path / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| scenario | policy | seed |" in table  # several scenarios: a scenario column
    assert "Ratio to sed, paired by (scenario, seed)" in table
    assert "| all scenarios | ecmp | 6 | **" in table
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["scenario"], r["policy"], int(r["seed"])) for r in rows] == [
        (r.scenario, r.policy, r.seed) for r in results
    ]
    doc = json.loads(json.dumps(report.to_json(results, SCENARIOS, "sed")))
    assert doc["scenarios"] == ["uneven", "two"] and doc["scenario"] is None
    assert doc["baseline"] == "sed" and len(doc["ratios"]) == 6
    pooled = doc["ratios"][4]
    assert pooled["scenario"] is None and pooled["pairs"] == 6
    assert pooled["mean_fct"]["mean"] == ev.compare(results, "sed")[4].mean_fct.mean
    assert "ratios" not in report.to_json(results, SCENARIOS)


# -- the command -----------------------------------------------------------------------

TOML = """\
name = "{name}"
duration = 5.0
[servers]
workers = [1, 1, 4]
[trace]
kind = "poisson"
load = 0.9
"""


def _scenario_files(tmp_path: Path) -> list[str]:
    paths = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.toml"
        path.write_text(TOML.format(name=name))
        paths.append(str(path))
    return paths


def test_command_with_a_baseline_prints_marked_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _scenario_files(tmp_path)
    out = tmp_path / "out"
    argv = ["eval", "--scenario", first, "--scenario", second, "--policies", "ecmp",
            "--baseline", "sed", "--seeds", "1,2,3", "--jobs", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text == (out / "results.md").read_text()
    assert "| first | ecmp | 3 | **" in text and "| all scenarios | ecmp | 6 | **" in text
    assert "↑" in text and report.RATIO_MARK_NOTE in text
    assert text.count("| sed |") == 2 * 3 + 2  # baseline added: per seed and per scenario
    assert (out / "ratios.png").exists()
    assert cli.main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["scenario"] for r in doc["ratios"]] == ["first", "second", None]


def test_command_without_a_baseline_writes_no_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _scenario_files(tmp_path)
    out = tmp_path / "out"
    argv = ["eval", "--scenario", f"{first},{second}", "--policies", "sed", "--seeds", "1"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Ratio to" not in text and not (out / "ratios.png").exists()
    assert "| first | sed | 1 |" in text and "| second | sed | 1 |" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "nope"], "--baseline: "),
        (["--jobs", "0"], "--jobs: expected an integer >= 1, got '0'"),
        (["--jobs", "two"], "--jobs: expected an integer >= 1, got 'two'"),
        (["--scenario", "SAME"], "--scenario: expected scenarios with distinct names"),
    ],
)
def test_bad_baseline_or_jobs_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = _scenario_files(tmp_path)
    if args[1] == "SAME":
        args = ["--scenario", first]
    argv = ["eval", "--scenario", first, "--policies", "sed", "--seeds", "1",
            "--out", str(tmp_path / "out"), *args]  # fmt: skip
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("marllbd eval: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_command_on_a_family_evaluates_its_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    family = tmp_path / "tiny.toml"
    family.write_text(
        "duration = 5.0\n[servers]\ncount = {range = [2, 6]}\nworkers = {range = [1, 4]}\n"
        '[trace]\nkind = "poisson"\nload = {range = [0.5, 0.9]}\n'
    )
    from marllbd.sim.family import load_family

    expected = [sc.name for sc in load_family(family).samples(3, 5)]
    argv = ["eval", "--family", str(family), "--samples", "3", "--family-seed", "5",
            "--policies", "lsq", "--baseline", "sed", "--seeds", "1,2",
            "--out", str(tmp_path / "out"), "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["scenario"] for r in doc["ratios"]] == [*expected, None]
    assert cli.main([*argv[:3], "--scenario", "paper-7", *argv[3:]]) == 2
    assert "give one of --scenario" in capsys.readouterr().err
