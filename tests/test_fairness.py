"""Fairness metrics: known values, documented edge cases, algebraic properties, shapings."""

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from marllbd import fairness
from marllbd.fairness import METRICS

NAMES = sorted(METRICS)
SCALE_INVARIANT = ["jain", "cv", "min_max", "gini", "product", "over_provision"]
PERFECT = {name: spec.ideal for name, spec in METRICS.items() if name != "makespan"}

# Zero or at least 1e-6: subnormal loads would underflow to 0 under scaling.
loads = arrays(
    np.float64,
    st.integers(1, 40),
    elements=st.one_of(st.just(0.0), st.floats(1e-6, 1e6)),
)
positive_loads = arrays(
    np.float64,
    st.integers(1, 40),
    elements=st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False),
)
scales = st.floats(1e-3, 1e3)


def gini_by_pairs(x: np.ndarray) -> float:
    """Textbook O(n²) Gini: mean absolute difference over twice the mean."""
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def test_known_values() -> None:
    x = [1.0, 2.0, 3.0]
    assert fairness.jain(x) == pytest.approx(36 / 42)
    assert fairness.cv(x) == pytest.approx(math.sqrt(2 / 3) / 2)
    assert fairness.min_max(x) == pytest.approx(1 / 3)
    assert fairness.variance(x) == pytest.approx(2 / 3)
    assert fairness.std(x) == pytest.approx(math.sqrt(2 / 3))
    assert fairness.makespan(x) == 3.0
    assert fairness.product(x) == pytest.approx((1 / 3 * 2 / 3) ** (1 / 3))
    assert fairness.gini(x) == pytest.approx(2 / 9)
    assert fairness.over_provision(x) == pytest.approx(1 - 3 / 2)


def test_jain_of_k_equal_shares_is_k_over_n() -> None:
    assert fairness.jain([0, 0, 5, 5, 5]) == pytest.approx(3 / 5)


@pytest.mark.parametrize("name", NAMES)
def test_empty_vector_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="no servers"):
        METRICS[name].fn([])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_names_the_first_bad_index(name: str, bad: float) -> None:
    with pytest.raises(ValueError, match=r"x\[2\] = .* is not finite"):
        METRICS[name].fn([1.0, 2.0, bad, math.nan])


@pytest.mark.parametrize("name", NAMES)
def test_negative_input_names_its_index(name: str) -> None:
    with pytest.raises(ValueError, match=r"x\[1\] = -0.5 is negative"):
        METRICS[name].fn([1.0, -0.5, 2.0])


def test_matrix_is_rejected_by_scalar_form() -> None:
    with pytest.raises(ValueError, match="must be 1-D"):
        fairness.jain([[1.0, 2.0]])


@pytest.mark.parametrize("name", sorted(PERFECT))
@pytest.mark.parametrize("x", [[7.0], [0.0], [0.0, 0.0, 0.0], [2.5, 2.5, 2.5, 2.5]])
def test_single_server_equal_and_idle_loads_are_perfectly_fair(name: str, x: list[float]) -> None:
    assert METRICS[name].fn(x) == pytest.approx(PERFECT[name], abs=1e-12)


def test_makespan_of_idle_cluster_is_zero() -> None:
    assert fairness.makespan([0.0, 0.0]) == 0.0


def test_zeros_mixed_with_positive_loads() -> None:
    x = [0.0, 0.0, 4.0]
    assert fairness.jain(x) == pytest.approx(1 / 3)
    assert fairness.min_max(x) == 0.0
    assert fairness.product(x) == 0.0
    assert fairness.gini(x) == pytest.approx(2 / 3)
    assert fairness.cv(x) == pytest.approx(math.sqrt(2))
    assert fairness.over_provision(x) == pytest.approx(-2.0)


def test_metric_lookup_names_the_bad_name_and_the_valid_ones() -> None:
    assert fairness.metric("gini").fn is fairness.gini
    with pytest.raises(ValueError, match=r"'ginni'.*cv, gini, jain"):
        fairness.metric("ginni")


def test_registry_has_the_documented_directions() -> None:
    fn, higher_is_better, *_ = METRICS["jain"]
    assert fn is fairness.jain and higher_is_better
    assert [n for n in NAMES if METRICS[n].higher_is_better] == [
        "jain",
        "min_max",
        "over_provision",
        "product",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_per_step_matches_row_by_row(name: str) -> None:
    rows = np.random.default_rng(3).exponential(size=(6, 5))
    rows[2] = 0.0
    rows[4, 1] = 0.0
    expected = [METRICS[name].fn(row) for row in rows]
    np.testing.assert_allclose(fairness.per_step(name, rows), expected, rtol=1e-12)


def test_per_step_names_the_bad_cell() -> None:
    with pytest.raises(ValueError, match=r"x\[1, 0\]"):
        fairness.per_step("jain", [[1.0, 2.0], [math.nan, 1.0]])


@given(loads)
def test_jain_bounds(x: np.ndarray) -> None:
    j = fairness.jain(x)
    assert 1 / len(x) - 1e-12 <= j <= 1 + 1e-12


@given(positive_loads)
def test_jain_is_one_iff_all_equal(x: np.ndarray) -> None:
    equal = fairness.jain(np.full_like(x, x[0]))
    assert equal == pytest.approx(1.0, abs=1e-12)
    if x.max() - x.min() > 1e-3 * x.max():
        assert fairness.jain(x) < 1.0


@given(loads, scales)
def test_scale_invariance(x: np.ndarray, c: float) -> None:
    for name in SCALE_INVARIANT:
        fn = METRICS[name].fn
        assert fn(c * x) == pytest.approx(fn(x), rel=1e-9, abs=1e-12), name


@given(loads, scales)
def test_scale_covariance(x: np.ndarray, c: float) -> None:
    assert fairness.variance(c * x) == pytest.approx(c * c * fairness.variance(x), rel=1e-9)
    assert fairness.std(c * x) == pytest.approx(c * fairness.std(x), rel=1e-9)
    assert fairness.makespan(c * x) == pytest.approx(c * fairness.makespan(x), rel=1e-12)


@given(loads)
def test_gini_range_and_pairwise_definition(x: np.ndarray) -> None:
    g = fairness.gini(x)
    assert 0.0 <= g < 1.0
    if x.max() > 0:
        assert g == pytest.approx(gini_by_pairs(x), rel=1e-9, abs=1e-12)


@given(loads, st.randoms(use_true_random=False))
def test_permutation_invariance(x: np.ndarray, rnd: random.Random) -> None:
    shuffled = x.copy()
    rnd.shuffle(shuffled)
    for name in NAMES:
        fn = METRICS[name].fn
        assert fn(shuffled) == pytest.approx(fn(x), rel=1e-9, abs=1e-12), name


@given(loads)
def test_jain_and_cv_agree(x: np.ndarray) -> None:
    assert fairness.jain(x) == pytest.approx(1 / (1 + fairness.cv(x) ** 2), rel=1e-9)


@pytest.mark.parametrize(
    ("name", "value", "kind", "expected"),
    [
        ("jain", 0.8, "identity", 0.8),
        ("variance", 0.5, "identity", -0.5),
        ("variance", 0.5, "exp", math.exp(-0.5)),
        ("jain", 0.8, "exp", math.exp(-0.2)),
        ("over_provision", -0.25, "exp", math.exp(-0.25)),
        ("makespan", 2.0, "log", -math.log(2.0 + 1e-6)),
        ("jain", 1.0, "log", -math.log(1e-6)),
    ],
)
def test_shape_values(name: str, value: float, kind: str, expected: float) -> None:
    assert fairness.shape(value, kind, name) == pytest.approx(expected)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", fairness.SHAPES)
def test_shaped_reward_prefers_fairer_loads(name: str, kind: str) -> None:
    fair, unfair = [2.0, 2.0, 2.0], [0.5, 1.0, 4.5]
    assert fairness.reward(name, fair, kind) > fairness.reward(name, unfair, kind)


def test_exp_shape_sharpness() -> None:
    assert fairness.shape(0.001, "exp", "variance", sharpness=1e4) == pytest.approx(math.exp(-10))


def test_shape_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown reward shape 'square'"):
        fairness.shape(0.5, "square", "jain")
    with pytest.raises(ValueError, match="non-finite"):
        fairness.shape(math.nan, "exp", "jain")
    with pytest.raises(ValueError, match="sharpness"):
        fairness.shape(0.5, "exp", "jain", sharpness=0.0)
    with pytest.raises(ValueError, match="unknown fairness metric"):
        fairness.shape(0.5, "exp", "fairest")
