"""The shipped pretrained policy loads through the registry and serves seed-16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marllbd.features import FEATURE_SPEC_VERSION, NUM_FEATURES
from marllbd.ipc.weights import check_weights
from marllbd.policies import PolicyContext, load
from marllbd.sim.scenario import load_scenario
from marllbd.training import evaluate as ev

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
    """`make pretrain` selected each checkpoint by marllbd.training.evaluate on held-out
    seeds; the same evaluation gives the numbers its manifest records."""
    path = SHIPPED.parent / name
    manifest = json.loads((path / "manifest.json").read_text())
    recorded = manifest["eval"]
    (s,) = ev.summary(
        ev.evaluate(load_scenario(manifest["scenario"]), [f"sac-gru:{path}"], recorded["seeds"])
    )
    assert (s.mean_fct, s.p90_fct, s.p99_fct) == (
        recorded["fct_mean"],
        recorded["fct_p90"],
        recorded["fct_p99"],
    )


def test_drift_policy_beats_sed_on_p90_on_held_out_seeds() -> None:
    """The capacities of drift-7 move away from the static weights at t = 20 s; the shipped
    policy, which reads completion times, beats SED with those weights on p90 FCT."""
    learned = f"sac-gru:{SHIPPED.parent / 'drift-7-sac-gru'}"
    results = ev.evaluate(load_scenario("drift-7"), [learned, "sed"], (2001, 2002, 2003))
    by = {(r.policy, r.seed): r for r in results}
    for seed in (2001, 2002, 2003):
        ratio = by[learned, seed].p90_fct / by["sed", seed].p90_fct
        assert ratio < 0.98, (seed, ratio)


@pytest.mark.parametrize("name", ["seed-16-sac-gru", "drift-7-sac-gru"])
def test_shipped_checkpoint_resumes_into_the_current_learner_unchanged(name: str) -> None:
    """Networks, normalisers and the (for-each) Adam moments the shipped checkpoints hold load
    into today's learner (fused Adam) and come back out array for array."""
    pytest.importorskip("torch")
    from marllbd_rl import sac_gru

    from marllbd import checkpoint

    ckpt = checkpoint.load(SHIPPED.parent / name)
    dims = ckpt.manifest["dims"]
    cfg = sac_gru.SacGruConfig.from_pairs(tuple(ckpt.manifest["hyper"].items()))
    learner = sac_gru.Learner(cfg, dims["obs_dim"], dims["num_servers"], seed=0)
    learner.load_arrays(ckpt.arrays, ckpt.path)
    back = learner.arrays()
    assert set(back) == set(ckpt.arrays)
    for key, value in ckpt.arrays.items():
        assert np.array_equal(back[key], value), key


UNIVERSAL = SHIPPED.parent / "sac-gru"


def test_the_universal_policy_reproduces_its_evaluation_on_its_family_sample() -> None:
    """`make pretrain-universal` trained on the drift family and kept its best checkpoint
    by evaluating the family's sample named in the manifest ("drift-0") on the validation
    seeds; rebuilding that sample from the family gives the recorded numbers."""
    from marllbd.sim.family import load_family

    manifest = json.loads((UNIVERSAL / "manifest.json").read_text())
    assert manifest["accepts"] == {"num_servers": "any"}
    assert manifest["hyper"]["residual"] == manifest["hyper"]["hint"] == "adaptive"
    family, seed = manifest["scenario"].rsplit("-", 1)
    recorded = manifest["eval"]
    scenario = load_family(family).sample(int(seed))
    (s,) = ev.summary(ev.evaluate(scenario, [f"sac-gru:{UNIVERSAL}"], recorded["seeds"]))
    assert (s.mean_fct, s.p90_fct, s.p99_fct) == (
        recorded["fct_mean"],
        recorded["fct_p90"],
        recorded["fct_p99"],
    )


def test_the_universal_policy_serves_any_server_count_and_beats_sed_on_a_drift_sample() -> None:
    """One checkpoint on 2 to 64 servers; on a held-out drift sample (family seed 100,
    not the validation sample) it beats static SED on mean FCT on each test seed."""
    from marllbd.sim.family import load_family
    from marllbd.sim.scenario import synthetic

    spec = f"sac-gru:{UNIVERSAL}"
    for n in (2, 7, 64):
        result = ev.run(synthetic(n, duration=2.0), spec, seed=1)
        assert result.flows > 0 and np.isfinite(result.mean_fct)
    scenario = load_family("drift").sample(100)
    results = ev.evaluate(scenario, [spec, "sed"], (2001, 2002))
    by = {(r.policy, r.seed): r for r in results}
    for seed in (2001, 2002):
        assert by[spec, seed].mean_fct < by["sed", seed].mean_fct, seed
