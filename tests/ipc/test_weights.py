"""Weights slot: valid weights go through, everything else keeps the last good ones."""

from __future__ import annotations

import numpy as np
import pytest

from marllbd.ipc.region import Region
from marllbd.ipc.weights import WeightsError, WeightsReader, WeightsStatus, WeightsWriter


@pytest.fixture
def pair(region_name: str) -> tuple[WeightsWriter, WeightsReader]:
    r = Region.create(region_name, 3, capacity=8, max_weight_ratio=10.0)
    return WeightsWriter(Region.attach(region_name)), WeightsReader(r)


def test_roundtrip(pair: tuple[WeightsWriter, WeightsReader]) -> None:
    w, rd = pair
    assert rd.read() is WeightsStatus.EMPTY
    assert list(rd.weights) == [1.0, 1.0, 1.0]
    assert w.write(np.array([1.0, 2.0, 3.0]), policy_id=4, frame_no=17) == 1
    assert rd.read() is WeightsStatus.NEW
    assert list(rd.weights) == [1.0, 2.0, 3.0] and rd.policy_id == 4 and rd.decision_no == 1
    assert rd.read() is WeightsStatus.UNCHANGED


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, np.nan, 1.0], r"weights\[1\]: expected a finite value"),
        ([1.0, 1.0, np.inf], r"weights\[2\]: expected a finite value"),
        ([1.0, -np.inf, np.nan], r"weights\[1\]: expected a finite value"),
        ([2.0, -0.0, 1.0], r"weights\[1\]: expected > 0"),
        ([0.0, 1.0, 1.0], r"weights\[0\]: expected > 0"),
        ([1.0, -2.0, 1.0], r"weights\[1\]: expected > 0"),
        ([1.0, 11.0, 1.0], "exceeds max_weight_ratio 10"),
        ([1.0, 1.0], r"expected shape \(3,\)"),
    ],
)
def test_writer_refuses_bad_weights(
    pair: tuple[WeightsWriter, WeightsReader], weights: list[float], message: str
) -> None:
    w, _ = pair
    with pytest.raises(WeightsError, match=message):
        w.write(np.array(weights))


def test_writer_accepts_weights_exactly_at_the_ratio(
    pair: tuple[WeightsWriter, WeightsReader],
) -> None:
    w, rd = pair
    w.write(np.array([0.5, 5.0, 1.0]))  # max / min = 10 = max_weight_ratio
    assert rd.read() is WeightsStatus.NEW and list(rd.weights) == [0.5, 5.0, 1.0]


def test_reader_keeps_last_good_on_invalid_slot(pair: tuple[WeightsWriter, WeightsReader]) -> None:
    """A writer that bypasses validation (or a corrupted slot) changes nothing."""
    w, rd = pair
    w.write(np.array([1.0, 2.0, 3.0]))
    assert rd.read() is WeightsStatus.NEW
    seq = int(w._u64[0])
    w._u64[0] = seq + 1
    w._w[1] = np.nan
    w._u64[0] = seq + 2
    assert rd.read() is WeightsStatus.INVALID
    assert list(rd.weights) == [1.0, 2.0, 3.0] and "weights[1]" in rd.last_error
    assert rd.stats.invalid == 1


def test_reader_reports_torn_slot(pair: tuple[WeightsWriter, WeightsReader]) -> None:
    w, rd = pair
    w.write(np.array([1.0, 2.0, 3.0]))
    w._u64[0] += 1  # writer died mid-update
    assert rd.read() is WeightsStatus.TORN
    assert list(rd.weights) == [1.0, 1.0, 1.0] and rd.stats.torn == 1
