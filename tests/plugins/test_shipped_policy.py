"""The shipped pretrained policy loads through the registry and serves seed-16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from marllbd.features import FEATURE_SPEC_VERSION, NUM_FEATURES
from marllbd.ipc.weights import check_weights
from marllbd.policies import PolicyContext, load

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "policies" / "seed-16-sac-gru"


def test_shipped_policy_is_small_and_described() -> None:
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size <= 5 * 1024 * 1024
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["algorithm"] == "sac-gru" and manifest["scenario"] == "seed-16"
    assert manifest["feature_spec_version"] == FEATURE_SPEC_VERSION and manifest["seed"] == 0


def test_shipped_policy_decides_valid_weights() -> None:
    policy = load(f"sac-gru:{SHIPPED}")
    caps = np.array([1, 1, 2, 2, 1, 2, 2, 4, 1, 1, 1, 2, 2, 2, 4, 4], dtype=np.float64)
    policy.reset(PolicyContext(num_servers=16, capacities=caps, seed=0))
    rng = np.random.default_rng(0)
    for _ in range(5):
        feats = rng.random((16, NUM_FEATURES))
        w = policy.decide(feats, np.ones(16, dtype=bool), None)
        check_weights(np.asarray(w, dtype=np.float64), 16, 100.0)


@pytest.mark.parametrize("name", ["seed-16-sac-gru", "drift-7-sac-gru"])
def test_shipped_policy_reproduces_its_evaluation(name: str) -> None:
    """`make pretrain` selected each checkpoint on seeds 1001-1003; the same evaluation
    gives the numbers its manifest records."""
    from marllbd_rl.rollout import evaluate

    from marllbd.sim.scenario import load_scenario

    path = SHIPPED.parent / name
    manifest = json.loads((path / "manifest.json").read_text())
    ev = evaluate(load(f"sac-gru:{path}"), load_scenario(manifest["scenario"]), (1001, 1002, 1003))
    assert ev.fct_mean == pytest.approx(manifest["eval_fct_mean"], rel=1e-3)
    assert ev.fct_p90 == pytest.approx(manifest["eval_fct_p90"], rel=1e-3)


def test_drift_policy_beats_sed_on_p90_on_held_out_seeds() -> None:
    """The capacities of drift-7 move away from the static weights at t = 20 s; the shipped
    policy, which reads completion times, beats SED with those weights on p90 FCT."""
    from marllbd_rl.rollout import evaluate

    from marllbd.sim.scenario import load_scenario

    scenario = load_scenario("drift-7")
    for seed in (2001, 2002, 2003):
        learned = evaluate(load(f"sac-gru:{SHIPPED.parent / 'drift-7-sac-gru'}"), scenario, (seed,))
        sed = evaluate(load("sed"), scenario, (seed,))
        assert learned.fct_p90 < 0.98 * sed.fct_p90, (seed, learned.fct_p90, sed.fct_p90)
