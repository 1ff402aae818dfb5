"""Heuristic policies: valid weights always, capacity-proportional where promised,
active-wcmp moves weight away from busy servers."""

from __future__ import annotations

import numpy as np
import pytest

from marllbd.features import NUM_FEATURES
from marllbd.ipc.weights import check_weights
from marllbd.policies import GroundTruth, PolicyContext, PolicyError, load

N = 4
CAPS = np.array([1.0, 2.0, 4.0, 1.0])
STATIC = {
    "ecmp": "ecmp",
    "wcmp": "wcmp",
    "lsq": "lsq",
    "sed": "sed",
    "lsq2": "lsq2",
    "sed2": "sed2",
    "peak-ewma": "peak-ewma",
    "prequal": "prequal",
}
BY_CAPACITY = {"wcmp", "sed", "sed2", "gsq", "peak-ewma", "prequal"}
ALL = [*STATIC, "active-wcmp", "gsq"]


def _inputs(seed: int) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
    rng = np.random.default_rng(seed)
    features = rng.exponential(1.0, (N, NUM_FEATURES))
    active = rng.random(N) < 0.8
    truth = GroundTruth(rng.random(N), rng.integers(0, 50, N), CAPS * rng.uniform(0.5, 1.5, N))
    return features, active, truth


@pytest.mark.parametrize("name", ALL)
def test_weights_are_always_valid(name: str) -> None:
    policy = load(name)
    policy.reset(PolicyContext(N, CAPS, seed=1))
    for seed in range(20):
        w = policy.decide(*_inputs(seed))
        assert w.shape == (N,) and w.dtype == np.float64
        check_weights(w, N, 100.0)  # finite, > 0, within ratio 100


@pytest.mark.parametrize("name", ALL)
def test_weights_stay_within_ratio_for_extreme_capacities(name: str) -> None:
    caps = np.array([1e-3, 1.0, 1e4])
    policy = load(name)
    policy.reset(PolicyContext(3, caps))
    truth = GroundTruth(np.array([0.0, 1.0, 1.0]), np.zeros(3), caps)
    w = policy.decide(np.zeros((3, NUM_FEATURES)), np.ones(3, dtype=bool), truth)
    check_weights(w, 3, 100.0)


@pytest.mark.parametrize("name", STATIC)
def test_static_policies_dispatch_by_their_rule(name: str) -> None:
    policy = load(name)
    policy.reset(PolicyContext(N, CAPS))
    w = policy.decide(*_inputs(0))
    assert policy.dispatch == STATIC[name]
    if name in BY_CAPACITY:
        np.testing.assert_allclose(w, CAPS / CAPS.mean())
    else:
        assert (w == 1.0).all()


def test_gsq_names_the_oracle_and_returns_capacity_weights() -> None:
    policy = load("gsq")
    policy.reset(PolicyContext(N, CAPS))
    assert policy.dispatch == "gsq"
    np.testing.assert_allclose(policy.decide(*_inputs(0)), CAPS / CAPS.mean())


def test_only_active_wcmp_and_gsq_need_ground_truth() -> None:
    assert {name for name in ALL if load(name).needs_ground_truth} == {"active-wcmp", "gsq"}


def test_active_wcmp_shifts_weight_away_from_a_busy_server() -> None:
    policy = load("active-wcmp")
    caps = np.full(3, 2.0)
    policy.reset(PolicyContext(3, caps))
    feats, active = np.zeros((3, NUM_FEATURES)), np.ones(3, dtype=bool)
    calm = policy.decide(feats, active, GroundTruth(np.full(3, 0.2), np.zeros(3), caps))
    busy = policy.decide(feats, active, GroundTruth(np.array([0.95, 0.2, 0.2]), np.zeros(3), caps))
    busy_share, calm_share = busy / busy.sum(), calm / calm.sum()
    assert busy_share[0] < calm_share[0] / 5
    assert busy_share[1] > calm_share[1]


def test_active_wcmp_follows_real_capacity_and_floors_saturated_servers() -> None:
    policy = load("active-wcmp")
    policy.reset(PolicyContext(3, np.ones(3)))
    truth = GroundTruth(np.array([0.5, 0.5, 1.0]), np.zeros(3), np.array([1.0, 3.0, 3.0]))
    w = policy.decide(np.zeros((3, NUM_FEATURES)), np.ones(3, dtype=bool), truth)
    np.testing.assert_allclose(w / w[0], [1.0, 3.0, 3.0 * 0.01 / 0.5])


def test_active_wcmp_without_ground_truth_says_why() -> None:
    policy = load("active-wcmp")
    policy.reset(PolicyContext(N, CAPS))
    with pytest.raises(PolicyError, match="needs ground truth"):
        policy.decide(np.zeros((N, NUM_FEATURES)), np.ones(N, dtype=bool), None)


@pytest.mark.parametrize("name", ALL)
def test_decide_before_reset_is_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="reset"):
        load(name).decide(*_inputs(0))


@pytest.mark.parametrize("name", ALL)
def test_deterministic(name: str) -> None:
    runs = []
    for _ in range(2):
        policy = load(name)
        policy.reset(PolicyContext(N, CAPS, seed=3))
        runs.append([policy.decide(*_inputs(seed)) for seed in range(5)])
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)


def test_returned_weights_are_the_callers_to_keep() -> None:
    policy = load("sed")
    policy.reset(PolicyContext(N, CAPS))
    w = policy.decide(*_inputs(0))
    w[:] = -1.0
    check_weights(policy.decide(*_inputs(0)), N, 100.0)


@pytest.mark.parametrize("name", STATIC)
def test_warming_a_static_policy_is_deciding(name: str) -> None:
    policy = load(name)
    policy.reset(PolicyContext(N, CAPS))
    features, active, _ = _inputs(3)
    np.testing.assert_array_equal(
        policy.warm(features, active), policy.decide(features, active, None)
    )
