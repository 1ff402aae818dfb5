"""Policy interface: context validation and clipping weights into the data plane's ratio."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marllbd.ipc.weights import check_weights
from marllbd.policies import GroundTruth, PolicyContext, PolicyError, weights_within_ratio


def test_context_stores_read_only_capacities() -> None:
    caps = [1.0, 2.0, 4.0]
    ctx = PolicyContext(3, caps, seed=7)
    assert ctx.capacities.dtype == np.float64 and list(ctx.capacities) == caps
    with pytest.raises(ValueError):
        ctx.capacities[0] = 9.0


@pytest.mark.parametrize(
    ("n", "caps", "match"),
    [
        (0, [], "num_servers: expected >= 1"),
        (2, [1.0], r"capacities: expected shape \(2,\)"),
        (2, [1.0, 0.0], r"capacities\[1\]: expected a finite value > 0, got 0.0"),
        (2, [np.nan, 1.0], r"capacities\[0\]"),
    ],
)
def test_context_rejects_bad_capacities(n: int, caps: list[float], match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        PolicyContext(n, np.array(caps))


def test_ground_truth_checks_shapes() -> None:
    t = GroundTruth([0.5, 0.1], [3, 0], [2.0, 2.0])
    assert t.queue.dtype == np.float64
    with pytest.raises(PolicyError, match=r"GroundTruth.capacities: expected shape \(2,\)"):
        GroundTruth([0.5, 0.1], [3, 0], [2.0])


def test_within_ratio_keeps_the_max_and_raises_the_rest() -> None:
    w = weights_within_ratio([1000.0, 1.0, 0.0, -3.0, 500.0])
    assert list(w) == [1000.0, 10.0, 10.0, 10.0, 500.0]
    assert list(weights_within_ratio([1.0, 2.0])) == [1.0, 2.0]
    assert list(weights_within_ratio([4.0, 1.0], max_ratio=2.0)) == [4.0, 2.0]


@given(
    st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=1, max_size=20).filter(
        lambda xs: max(xs) > 0
    ),
    st.floats(1.0, 1e6),
)
def test_within_ratio_always_passes_the_data_plane_check(xs: list[float], ratio: float) -> None:
    w = weights_within_ratio(xs, ratio)
    check_weights(w, len(xs), ratio)
    assert w.max() == max(xs)


@pytest.mark.parametrize(
    ("w", "match"),
    [
        ([], "non-empty 1-D"),
        ([[1.0]], "non-empty 1-D"),
        ([1.0, np.inf], r"weights\[1\]: expected a finite value"),
        ([0.0, -1.0], "at least one weight > 0"),
    ],
)
def test_within_ratio_rejects(w: list[float], match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        weights_within_ratio(w)
    with pytest.raises(PolicyError, match="max_ratio"):
        weights_within_ratio([1.0], max_ratio=0.5)
