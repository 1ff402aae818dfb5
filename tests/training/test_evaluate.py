"""Policy evaluation: runs, metrics, reports and the `marllbd eval` command."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from marllbd import cli, stats
from marllbd.features import FEATURE_NAMES, NUM_FEATURES
from marllbd.policies import GroundTruth, PolicyContext, PolicyError, load
from marllbd.sim.engine import REJECT_PENALTY, Engine
from marllbd.sim.scenario import Scenario, build_trace, from_dict
from marllbd.training import evaluate as ev
from marllbd.training import report

TINY = """\
duration = 5.0
control_interval = 0.25
lb_nodes = 2

[servers]
workers = [1, 1, 4]

[trace]
kind = "poisson"
load = 0.95
"""


def tiny(**changes: object) -> Scenario:
    data: dict[str, object] = {
        "name": "tiny",
        "duration": 5.0,
        "lb_nodes": 2,
        "servers": {"workers": [1, 1, 4]},
        "trace": {"kind": "poisson", "load": 0.95},
    }
    data.update(changes)
    return from_dict(data)


@pytest.fixture(scope="module")
def results() -> list[ev.Result]:
    return ev.evaluate(tiny(), ["ecmp", "sed", "active-wcmp"], [1, 2], progress=False)


def test_one_result_per_policy_and_seed_with_sane_metrics(results: list[ev.Result]) -> None:
    assert [(r.policy, r.seed) for r in results] == [
        (p, s) for p in ("ecmp", "sed", "active-wcmp") for s in (1, 2)
    ]
    for r in results:
        assert r.flows == len(build_trace(tiny().replace(seed=r.seed))) == r.fct.size
        assert r.unfinished == 0 and r.reject_rate == 0.0
        assert 0 < r.p50_fct <= r.p90_fct <= r.p95_fct <= r.p99_fct <= r.fct.max()
        assert r.mean_fct == pytest.approx(r.fct.mean())
        assert 1 / 3 <= r.jain <= 1.0 and 1 / 3 <= r.reward <= 1.0
        # 20 intervals of the duration, then the drain; utilization per server.
        assert r.t[19] == 5.0 and r.utilization.shape == (r.t.size, 3)


def test_dispatch_rule_of_the_policy_is_what_runs(results: list[ev.Result]) -> None:
    # ECMP gives each server a third of the flows, so the 1-worker ones overflow;
    # SED follows the capacities.
    by = {(r.policy, r.seed): r for r in results}
    for seed in (1, 2):
        assert by["ecmp", seed].mean_fct > 2 * by["sed", seed].mean_fct
        assert by["ecmp", seed].jain < by["sed", seed].jain
    assert by["sed", 1].mean_fct != by["sed", 2].mean_fct  # seeds give different traces


def test_rejected_flows_count_at_the_timeout() -> None:
    sc = tiny(servers={"workers": [1, 1, 4], "backlog": 0}, trace={"kind": "poisson", "load": 1.5})
    (r,) = ev.evaluate(sc, ["ecmp"], [3], progress=False)
    rejected = round(r.reject_rate * r.flows)
    assert rejected > 0
    assert int((r.fct == REJECT_PENALTY).sum()) == rejected


class Recorder:
    """A policy that logs what it is given and returns a new weight vector every interval."""

    instances: list[Recorder] = []  # noqa: RUF012 - a test registry

    def __init__(self, needs_truth: bool) -> None:
        self.name = "recorder"
        self.dispatch = "wcmp"
        self.needs_ground_truth = needs_truth
        self.contexts: list[PolicyContext] = []
        self.calls: list[tuple[npt.NDArray[np.float64], GroundTruth | None]] = []
        self.returned: list[npt.NDArray[np.float64]] = []
        Recorder.instances.append(self)

    def reset(self, ctx: PolicyContext) -> None:
        self.contexts.append(ctx)

    def decide(
        self,
        features: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        truth: GroundTruth | None,
    ) -> npt.NDArray[np.float64]:
        self.calls.append((features.copy(), truth))
        w = np.array([1.0, 2.0, 3.0]) + len(self.calls)
        self.returned.append(w)
        return w


@pytest.mark.parametrize("needs_truth", [False, True])
def test_one_policy_per_lb_fed_its_own_features(
    monkeypatch: pytest.MonkeyPatch, needs_truth: bool
) -> None:
    Recorder.instances = []
    monkeypatch.setattr(ev, "load", lambda spec, lb=None: Recorder(needs_truth))
    ev.run(tiny(), "recorder", 7)
    lb0, lb1 = Recorder.instances
    assert [c.seed for c in lb0.contexts] == [ev.policy_seed(7, 0)] != [ev.policy_seed(7, 1)]
    assert [c.seed for c in lb1.contexts] == [ev.policy_seed(7, 1)]
    np.testing.assert_array_equal(lb0.contexts[0].capacities, [1.0, 1.0, 4.0])
    prev = FEATURE_NAMES.index("prev_weight")
    for p in (lb0, lb1):
        first, truth = p.calls[0]
        assert first.shape == (3, NUM_FEATURES)
        np.testing.assert_array_equal(first[:, prev], [1.0, 1.0, 4.0])  # static start
        assert (truth is not None) == needs_truth
        # Each decision is applied: the next interval's features carry it as prev_weight.
        for (feats, _), w in zip(p.calls[1:], p.returned, strict=False):
            np.testing.assert_array_equal(feats[:, prev], w)
    # Decentralised: the two LBs see different flows.
    assert not np.array_equal(lb0.calls[5][0], lb1.calls[5][0])


def test_invalid_weights_name_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(False)
    monkeypatch.setattr(rec, "decide", lambda f, a, t: np.array([1.0, np.nan, 1.0]))
    monkeypatch.setattr(ev, "load", lambda spec, lb=None: rec)
    with pytest.raises(ev.EvaluationError, match=r"policy 'broken' at t = 0.25 s: weights"):
        ev.run(tiny(), "broken", 1)


def test_summary_averages_seeds_in_first_seen_order(results: list[ev.Result]) -> None:
    rows = ev.summary(results)
    assert [s.policy for s in rows] == ["ecmp", "sed", "active-wcmp"]
    sed = rows[1]
    runs = [r for r in results if r.policy == "sed"]
    assert sed.seeds == (1, 2)
    for field in ("reward", "jain", "mean_fct", "p95_fct", "unfinished"):
        assert getattr(sed, field) == pytest.approx(np.mean([getattr(r, field) for r in runs]))
    # Two seeds: the interval is mean ± t(0.975, 1) · s / √2 = mean ± 12.706 · |a - b| / 2.
    for field in ev.CI_FIELDS:
        a, b = (getattr(r, field) for r in runs)
        est = getattr(sed, f"{field}_ci")
        assert est.mean == getattr(sed, field) and est.n == 2
        assert est.half_width == pytest.approx(12.7062047362 * abs(a - b) / 2, rel=1e-9)
        assert est.low < min(a, b) <= max(a, b) < est.high


def test_report_files_and_table(results: list[ev.Result], tmp_path: Path) -> None:
    table = report.write(results, tiny(), tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "fct_cdf.png",
        "load_active-wcmp.png",
        "load_ecmp.png",
        "load_sed.png",
        "results.csv",
        "results.md",
    ]
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    for column in ("policy", "seed", "mean_fct", "p50_fct", "p90_fct", "p99_fct", "jain"):
        assert column in rows[0]
    assert float(rows[2]["mean_fct"]) == results[2].mean_fct  # full precision
    assert (tmp_path / "results.md").read_text() == table
    per_seed, means = table.split("Mean over seeds")
    seed_rows = [line for line in per_seed.splitlines() if line.startswith("|")]
    assert len(seed_rows) == 2 + 6  # header, rule, one row per (policy, seed)
    assert seed_rows[2].startswith(
        f"| ecmp | 1 | {results[0].flows} | {results[0].mean_fct * 1e3:.1f} |"
    )
    lines = [line for line in means.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3
    sed_row = next(line for line in lines if line.startswith("| sed |"))
    assert sed_row.count("1.00×") == 2  # best mean and best p90 on this scenario
    (sed,) = (s for s in ev.summary(results) if s.policy == "sed")
    half = sed.mean_fct_ci.half_width
    assert sed_row.startswith(f"| sed | 2 | {sed.mean_fct * 1e3:.1f} ± {half * 1e3:.1f} | 1.00× |")


def test_json_has_runs_and_summary_with_intervals(results: list[ev.Result]) -> None:
    doc = json.loads(json.dumps(report.to_json(results, tiny())))
    assert doc["scenario"] == "tiny"
    assert [(r["policy"], r["seed"]) for r in doc["runs"]] == [(r.policy, r.seed) for r in results]
    assert doc["runs"][3]["p99_fct"] == results[3].p99_fct
    sed = doc["summary"][1]
    assert sed["policy"] == "sed" and sed["seeds"] == [1, 2]
    est = ev.summary(results)[1].p90_fct_ci
    assert sed["p90_fct_ci"] == {
        "mean": est.mean, "low": est.low, "high": est.high, "n": 2, "confidence": 0.95,
    }  # fmt: skip
    one = report.to_json(results[:1], tiny())["summary"][0]["mean_fct_ci"]
    assert one["low"] is None and one["high"] is None and one["n"] == 1


def test_same_inputs_write_the_same_csv(results: list[ev.Result], tmp_path: Path) -> None:
    again = ev.evaluate(tiny(), ["ecmp", "sed", "active-wcmp"], [1, 2], progress=False)
    report.write_csv(results, tmp_path / "a.csv")
    report.write_csv(again, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_progress_bar_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    ev.evaluate(tiny(duration=1.0), ["sed"], [1], progress=False)
    assert capsys.readouterr().err == ""
    ev.evaluate(tiny(duration=1.0), ["sed"], [1], progress=True)
    err = capsys.readouterr().err
    assert "run 1/1: sed seed 1" in err and err.endswith("\r")


def test_slugs_are_file_names_and_distinct() -> None:
    assert report.slugs(["sed", "sac-gru:runs/a b", "sac-gru_runs_a_b"]) == {
        "sed": "sed",
        "sac-gru:runs/a b": "sac-gru_runs_a_b",
        "sac-gru_runs_a_b": "sac-gru_runs_a_b-2",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "no-such-preset"], "unknown scenario preset 'no-such-preset'"),
        (["--scenario", "missing/x.toml"], "--scenario: cannot read missing/x.toml"),
        (["--policies", "sed,nope"], "--policies: unknown policy 'nope'"),
        (["--policies", "sed,sed"], "--policies: expected distinct"),
        (["--seeds", "1,x"], "--seeds: expected distinct comma-separated integers"),
        (["--seeds", "-1"], "--seeds"),
        (["--seeds", "2,2"], "--seeds"),
        (["--out", "FILE"], "--out: cannot write into"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    (tmp_path / "FILE").write_text("")
    given = {"--scenario": str(scenario), "--policies": "sed", "--seeds": "1"}
    given["--out"] = str(tmp_path / "out")
    given.update(dict(zip(args[::2], args[1::2], strict=True)))
    if given["--out"] == "FILE":
        given["--out"] = str(tmp_path / "FILE" / "out")
    argv = ["eval", *[x for kv in given.items() for x in kv]]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("marllbd eval: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_command_writes_files_and_prints_only_the_table(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    out = tmp_path / "out"
    argv = ["eval", "--scenario", str(scenario), "--policies", "sed,gsq", "--seeds", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "marllbd.cli", *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not a terminal: no progress bar
    assert proc.stdout == (out / "results.md").read_text()
    assert proc.stdout.startswith("Per seed:\n\n| policy | seed |")
    assert proc.stdout.count("\n| sed |") == 2 and proc.stdout.count("\n| gsq |") == 2
    assert {p.name for p in out.iterdir()} >= {"results.csv", "fct_cdf.png", "load_gsq.png"}


def test_command_json_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    argv = ["eval", "--scenario", str(scenario), "--policies", "sed", "--seeds", "1,2"]
    assert cli.main([*argv, "--out", str(tmp_path / "out"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in doc["runs"]] == [1, 2]
    (row,) = doc["summary"]
    assert row["mean_fct"] == np.mean([r["mean_fct"] for r in doc["runs"]])
    assert row["mean_fct_ci"]["low"] < row["mean_fct"] < row["mean_fct_ci"]["high"]
    assert (tmp_path / "out" / "results.md").exists()


# -- policies given as factories ---------------------------------------------------------


def test_a_policy_source_makes_one_policy_per_lb_and_run() -> None:
    made: list[int] = []

    def make(lb: int) -> Recorder:
        made.append(lb)
        return Recorder(False)

    Recorder.instances = []
    source = ev.PolicySource("live", make)
    results = ev.evaluate(tiny(), [source, "sed"], [1, 2])
    assert made == [0, 1, 0, 1]  # fresh per (run, LB node)
    assert len({id(p) for p in Recorder.instances}) == 4
    assert [r.policy for r in results] == ["live", "live", "sed", "sed"]
    assert all(len(p.contexts) == 1 for p in Recorder.instances)


def test_a_factory_of_a_spec_gives_the_specs_numbers() -> None:
    by_spec = ev.run(tiny(), "sed", 4)
    by_factory = ev.run(tiny(), ev.PolicySource("mine", lambda lb: load("sed")), 4)
    np.testing.assert_array_equal(by_spec.fct, by_factory.fct)
    assert (by_factory.policy, by_factory.mean_fct) == ("mine", by_spec.mean_fct)


def test_a_policy_that_does_not_fit_the_servers_is_an_evaluation_error() -> None:
    class TooFew(Recorder):
        def reset(self, ctx: PolicyContext) -> None:
            raise PolicyError("trained for 2 servers, the data plane has 3")

    with pytest.raises(ev.EvaluationError, match=r"policy 'few': trained for 2 servers"):
        ev.run(tiny(), ev.PolicySource("few", lambda lb: TooFew(False)), 1)


# -- draining and unfinished flows ---------------------------------------------------------


def test_flows_in_flight_at_the_end_are_drained_to_completion() -> None:
    sc = tiny().replace(seed=1)
    engine = Engine(sc, rule="sed")
    while not engine.done:
        engine.step()
    in_flight = int(np.isnan(engine.f_fct).sum())
    assert in_flight > 0  # a loop that stopped here would drop these flows
    r = ev.run(tiny(), "sed", 1)
    assert r.unfinished == 0 and r.fct.size == engine.f_fct.size
    assert np.isfinite(r.fct).all() and r.fct.max() < REJECT_PENALTY
    assert r.t[-1] > sc.duration  # it kept stepping after the arrivals ended


def test_flows_unfinished_at_the_drain_limit_are_counted_and_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ev, "DRAIN_LIMIT", 0.5)
    sc = tiny(trace={"kind": "poisson", "load": 1.4})
    r = ev.run(sc, "sed", 2)
    assert r.unfinished > 0
    assert r.t[-1] == pytest.approx(sc.duration + 0.5)
    rejected = round(r.reject_rate * r.flows)
    assert int((r.fct == REJECT_PENALTY).sum()) == r.unfinished + rejected
    assert r.flows == len(build_trace(sc.replace(seed=2)))
    (row,) = ev.summary([r])
    assert row.unfinished == r.unfinished


# -- confidence intervals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [  # Student's t quantiles, to 10 significant digits (standard tables)
        (0.975, 1, 12.70620474),
        (0.975, 2, 4.302652730),
        (0.975, 3, 3.182446305),
        (0.975, 4, 2.776445105),
        (0.975, 9, 2.262157163),
        (0.975, 10, 2.228138852),
        (0.975, 30, 2.042272456),
        (0.975, 120, 1.979930405),
        (0.975, math.inf, 1.959963985),
        (0.995, 5, 4.032142984),
        (0.95, 7, 1.894578605),
        (0.9, 1, 3.077683537),
        (0.025, 4, -2.776445105),
    ],
)
def test_t_quantiles_match_the_tables(p: float, df: float, expected: float) -> None:
    assert stats.t_quantile(p, df) == pytest.approx(expected, rel=1e-9)


def test_t_quantile_refuses_bad_arguments() -> None:
    for p, df, word in ((0.0, 3, "p"), (1.0, 3, "p"), (0.9, 0, "df"), (0.9, 2.5, "df")):
        with pytest.raises(ValueError, match=rf"^{word}: expected"):
            stats.t_quantile(p, df)


def test_interval_of_a_known_sample() -> None:
    est = stats.mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446305
    half = 3.182446305 * math.sqrt(5 / 3) / 2
    assert est.mean == 2.5 and est.n == 4
    assert est.low == pytest.approx(2.5 - half, rel=1e-9)
    assert est.high == pytest.approx(2.5 + half, rel=1e-9)
    single = stats.mean_ci([0.3])
    assert single.mean == 0.3 and math.isnan(single.low) and math.isnan(single.half_width)


def test_intervals_cover_the_true_mean_95_percent_of_the_time() -> None:
    """3 seeds (df 2): the t interval holds the mean of the distribution in 95 % of samples;
    a normal (z) interval would in only ~ 81 %."""
    rng = np.random.default_rng(11)
    samples = rng.normal(0.2, 0.05, size=(4000, 3))
    hits = sum(e.low <= 0.2 <= e.high for e in map(stats.mean_ci, samples.tolist()))
    # 4000 draws: the standard error of the coverage is 0.0034.
    assert 0.94 <= hits / 4000 <= 0.96


# -- one loop: the trainer's evaluation is `marllbd eval`'s ----------------------------------


def test_training_evaluation_and_the_eval_command_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SAC-GRU picks its best checkpoint by the mean FCT of this module's loop; `marllbd eval`
    on that checkpoint, same scenario and seeds, reports the same figures to the bit."""
    pytest.importorskip("torch")
    from marllbd.training import TrainConfig, Trainer, logs

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    seeds = (5, 6)
    hyper = {"hidden": 16, "burn_in": 3, "seq_len": 5, "batch_size": 8, "learning_starts": 20}
    result = Trainer(
        TrainConfig(
            algo="sac-gru",
            scenario=str(scenario),
            out=tmp_path / "run",
            steps=80,
            envs=2,
            eval_every=40,
            eval_seeds=seeds,
            progress=False,
            hyper=tuple(hyper.items()),
        )
    ).learn()
    steps, values = logs.read(result.metrics_csv)["eval/fct_mean"]
    evals = dict(zip(steps, values, strict=True))
    assert steps == [0, 40, 80]
    for ckpt in (result.best, result.last):
        manifest = json.loads((ckpt / "manifest.json").read_text())
        recorded = manifest["eval"]
        assert recorded["seeds"] == list(seeds)
        argv = ["eval", "--scenario", str(scenario), "--policies", f"sac-gru:{ckpt}"]
        out = tmp_path / f"eval-{ckpt.name}"
        argv += ["--seeds", "5,6", "--out", str(out), "--json", "--baseline", "sed"]
        assert cli.main(argv) == 0
        doc = json.loads(capsys.readouterr().out)
        row = next(r for r in doc["summary"] if r["policy"] != "sed")
        assert row["mean_fct"] == recorded["fct_mean"] and row["p90_fct"] == recorded["fct_p90"]
        logged = evals[manifest["progress"]["steps"]]
        assert logged == pytest.approx(row["mean_fct"], rel=1e-7)
        # The time-to-quality ratio is the eval command's paired ratio to SED.
        (ratio, *_) = doc["ratios"]
        assert recorded["baseline"] == "sed"
        for f in ("mean_fct", "p90_fct", "p99_fct"):
            assert recorded[f"ratio_{f}"] == ratio[f]["mean"]
        ratio_steps, ratio_values = logs.read(result.metrics_csv)["eval/ratio_mean_fct"]
        assert ratio_steps == steps
        logged_ratio = dict(zip(ratio_steps, ratio_values, strict=True))
        assert logged_ratio[manifest["progress"]["steps"]] == pytest.approx(
            ratio["mean_fct"]["mean"], rel=1e-7
        )
    best = json.loads((result.best / "manifest.json").read_text())["eval"]["fct_mean"]
    assert best == pytest.approx(min(values), rel=1e-7)


def test_training_without_an_eval_baseline_logs_no_ratio(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from marllbd.training import TrainConfig, Trainer, logs

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    hyper = {"hidden": 8, "burn_in": 2, "seq_len": 3, "batch_size": 4, "learning_starts": 10}
    result = Trainer(
        TrainConfig(
            algo="sac-gru", scenario=str(scenario), out=tmp_path / "run", steps=12, envs=1,
            eval_every=12, eval_seeds=(5,), progress=False, hyper=tuple(hyper.items()),
            eval_baseline=None,
        )
    ).learn()  # fmt: skip
    tags = logs.read(result.metrics_csv)
    assert "eval/fct_mean" in tags
    assert not [t for t in tags if t.startswith("eval/ratio_")]
    manifest = json.loads((result.last / "manifest.json").read_text())
    assert "baseline" not in manifest["eval"]


def test_two_policies_of_one_name_are_refused() -> None:
    # Summaries and pairing go by name: two sources called "sed" would be averaged together.
    with pytest.raises(ValueError, match=r"policies: expected distinct names"):
        ev.evaluate(tiny(), ["sed", ev.PolicySource("sed", lambda lb: load("wcmp"))], [1])
