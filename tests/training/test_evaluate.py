"""Policy evaluation: runs, metrics, reports and the `marllbd eval` command."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from marllbd import cli
from marllbd.features import FEATURE_NAMES, NUM_FEATURES
from marllbd.policies import GroundTruth, PolicyContext
from marllbd.sim.engine import REJECT_PENALTY
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
    monkeypatch.setattr(ev, "load", lambda spec: Recorder(needs_truth))
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
    monkeypatch.setattr(ev, "load", lambda spec: rec)
    with pytest.raises(ev.EvaluationError, match=r"policy 'broken' at t = 0.25 s: weights"):
        ev.run(tiny(), "broken", 1)


def test_summary_averages_seeds_in_first_seen_order(results: list[ev.Result]) -> None:
    rows = ev.summary(results)
    assert [s.policy for s in rows] == ["ecmp", "sed", "active-wcmp"]
    sed = rows[1]
    runs = [r for r in results if r.policy == "sed"]
    assert sed.seeds == 2
    for field in ("reward", "jain", "mean_fct", "p95_fct"):
        assert getattr(sed, field) == pytest.approx(np.mean([getattr(r, field) for r in runs]))


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
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    sed_row = next(line for line in lines if line.startswith("| sed |"))
    assert sed_row.count("1.00×") == 2  # best mean and best p90 on this scenario


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
    assert proc.stdout.startswith("| policy |") and proc.stdout.count("\n") == 4
    assert {p.name for p in out.iterdir()} >= {"results.csv", "fct_cdf.png", "load_gsq.png"}
