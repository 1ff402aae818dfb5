"""Features: hand-computed values, the weighted-quantile rule, and the same numbers on a Frame."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marllbd import features as F
from marllbd.ipc import FrameReader, FrameWriter, Region

S = 1_000_000_000  # ns per second
TS = 100 * S
GARBAGE = 1e9


@dataclass
class Obs:
    """A plain observation with the attributes of a Frame."""

    num_servers: int
    k: int
    ts_ns: int = TS
    active: np.ndarray = field(init=False)
    active_flows: np.ndarray = field(init=False)
    n_dur: np.ndarray = field(init=False)
    n_fct: np.ndarray = field(init=False)
    dur_values: np.ndarray = field(init=False)
    fct_values: np.ndarray = field(init=False)
    dur_t_ns: np.ndarray = field(init=False)
    fct_t_ns: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n, k = self.num_servers, self.k
        self.active = np.ones(n, dtype=bool)
        self.active_flows = np.zeros(n, dtype=np.uint64)
        self.n_dur = np.zeros(n, dtype=np.uint32)
        self.n_fct = np.zeros(n, dtype=np.uint32)
        # Everything beyond the valid counts is garbage the features must ignore.
        self.dur_values = np.full((n, k), GARBAGE)
        self.fct_values = np.full((n, k), GARBAGE)
        self.dur_t_ns = np.full((n, k), 7, dtype=np.uint64)
        self.fct_t_ns = np.full((n, k), 2 * TS, dtype=np.uint64)

    def set(self, q: str, i: int, values: list[float], ages_s: list[float]) -> None:
        """Server i's valid samples of quantity q, stamped ages_s seconds before ts_ns."""
        m = len(values)
        getattr(self, f"n_{q}")[i] = m
        getattr(self, f"{q}_values")[i, :m] = values
        getattr(self, f"{q}_t_ns")[i, :m] = [self.ts_ns - round(a * S) for a in ages_s]


def col(name: str) -> int:
    return F.FEATURE_NAMES.index(name)


def weighted_p90(values: list[float], weights: list[float]) -> float:
    """The rule, straight from the docstring: walk the sorted samples."""
    order = np.argsort(values, kind="stable")
    target = 0.9 * sum(weights)
    cum = 0.0
    for j in order:
        cum += weights[j]
        if cum >= target:
            return values[j]
    raise AssertionError("cumulative weight never reached the target")


def test_feature_names_and_spec() -> None:
    expected = (
        "active_flows",
        "dur_mean",
        "dur_p90",
        "dur_std",
        "dur_decayed_mean",
        "dur_decayed_p90",
        "fct_mean",
        "fct_p90",
        "fct_std",
        "fct_decayed_mean",
        "fct_decayed_p90",
        "prev_weight",
    )
    assert expected == F.FEATURE_NAMES
    assert F.NUM_FEATURES == 12 and F.FEATURE_SPEC_VERSION == 1
    spec = F.FeatureSpec()
    assert (spec.version, spec.names, spec.tau, spec.k) == (1, F.FEATURE_NAMES, 1.0, 128)
    with pytest.raises(ValueError, match="tau"):
        F.FeatureSpec(tau=0.0)
    with pytest.raises(ValueError, match="k"):
        F.FeatureSpec(k=0)


def test_hand_computed_tiny_case() -> None:
    obs = Obs(2, 4)
    obs.active[1] = False  # inactive servers get features like any other
    obs.active_flows[:] = [5, 0]
    # Server 0 dur: the largest value is old, so the decayed p90 drops below it.
    obs.set("dur", 0, [1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 3.0])
    # Server 0 fct: 3 valid samples; the first is stamped 5 s in the future (weight 1).
    obs.set("fct", 0, [0.5, 0.1, 0.3], [-5.0, 1.0, 1.0])
    # Server 1: no dur sample; one fct sample.
    obs.set("fct", 1, [2.0], [10.0])
    prev = np.array([1.5, 0.25])
    out = F.compute(obs, prev)

    e1, e3 = math.exp(-1.0), math.exp(-3.0)
    expected = np.zeros((2, 12))
    expected[0] = [
        5.0,
        2.5,  # mean
        4.0,  # p90: the ceil(0.9 * 4) = 4th smallest
        math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 4),
        (1.0 + 2.0 * e1 + 3.0 + 4.0 * e3) / (2.0 + e1 + e3),
        3.0,  # cumulative weights 1, 1 + e1, 2 + e1 >= 0.9 * (2 + e1 + e3)
        0.3,
        0.5,  # the ceil(0.9 * 3) = 3rd smallest
        math.sqrt((0.2**2 + 0.2**2) / 3),
        (0.5 + 0.1 * e1 + 0.3 * e1) / (1.0 + 2.0 * e1),
        0.5,  # cumulative e1, 2 e1 < 0.9 * (1 + 2 e1)
        1.5,
    ]
    expected[1] = [0.0, 0, 0, 0, 0, 0, 2.0, 2.0, 0.0, 2.0, 2.0, 0.25]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    assert out[0, col("dur_decayed_p90")] == weighted_p90([1, 2, 3, 4], [1, e1, 1, e3])


def test_tau_scales_the_decay() -> None:
    obs = Obs(1, 4)
    obs.set("dur", 0, [1.0, 3.0], [0.0, 4.0])
    out = F.compute(obs, np.ones(1), tau=2.0)
    w = math.exp(-4.0 / 2.0)
    assert out[0, col("dur_decayed_mean")] == pytest.approx((1.0 + 3.0 * w) / (1.0 + w), rel=1e-12)


def test_weights_are_relative_to_the_newest_sample() -> None:
    """Both decayed statistics are scale-invariant, so a reservoir long in the past keeps
    its shape instead of underflowing to zero weights."""
    obs, old = Obs(1, 4), Obs(1, 4, ts_ns=10_000 * S)
    obs.set("dur", 0, [1.0, 3.0, 8.0], [0.0, 1.0, 2.0])
    old.set("dur", 0, [1.0, 3.0, 8.0], [5000.0, 5001.0, 5002.0])
    a, b = F.compute(obs, np.ones(1)), F.compute(old, np.ones(1))
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert np.isfinite(b).all()


def test_decayed_equals_undecayed_when_every_sample_is_at_ts() -> None:
    rng = np.random.default_rng(3)
    obs = Obs(3, 64)
    for i, m in enumerate((64, 40, 7)):
        for q in ("dur", "fct"):
            obs.set(q, i, list(rng.exponential(1.0, m)), [0.0] * m)
    out = F.compute(obs, np.ones(3))
    for q in ("dur", "fct"):
        assert np.array_equal(out[:, col(f"{q}_decayed_mean")], out[:, col(f"{q}_mean")])
        assert np.array_equal(out[:, col(f"{q}_decayed_p90")], out[:, col(f"{q}_p90")])


@pytest.mark.parametrize("m", [1, 2, 9, 10, 31, 32, 100, 128])
def test_decayed_p90_tends_to_p90_as_tau_grows(m: int) -> None:
    rng = np.random.default_rng(m)
    obs = Obs(1, 128)
    obs.set("dur", 0, list(rng.integers(0, 20, m) / 4), list(rng.uniform(0, 30, m)))
    for tau in (math.inf, 1e15):
        out = F.compute(obs, np.ones(1), tau=tau)
        assert out[0, col("dur_decayed_p90")] == out[0, col("dur_p90")]
        assert out[0, col("dur_decayed_mean")] == pytest.approx(out[0, col("dur_mean")], rel=1e-12)
    out = F.compute(obs, np.ones(1), tau=math.inf)
    assert out[0, col("dur_decayed_mean")] == out[0, col("dur_mean")]


def test_empty_reservoir_is_all_zeros() -> None:
    obs = Obs(2, 8)
    obs.active_flows[:] = [3, 4]
    obs.set("fct", 1, [1.0, 2.0], [0.0, 0.0])
    out = F.compute(obs, np.array([2.0, 1.0]))
    assert (out[0, 1:11] == 0.0).all()
    assert (out[1, 1:6] == 0.0).all() and out[1, col("fct_mean")] == 1.5
    assert list(out[:, col("active_flows")]) == [3.0, 4.0]
    assert list(out[:, col("prev_weight")]) == [2.0, 1.0]


def test_garbage_beyond_the_valid_count_is_ignored() -> None:
    rng = np.random.default_rng(11)
    a, b = Obs(4, 128), Obs(4, 128)
    b.dur_values[:] = b.fct_values[:] = 0.0
    b.dur_t_ns[:] = b.fct_t_ns[:] = TS
    for i, m in enumerate((0, 5, 64, 127)):
        vals, ages = list(rng.lognormal(0, 1, m)), list(rng.uniform(0, 3, m))
        for obs in (a, b):
            obs.set("dur", i, vals, ages)
            obs.set("fct", i, vals[::-1], ages)
    out_a = F.compute(a, np.ones(4))
    assert np.array_equal(out_a, F.compute(b, np.ones(4)))
    assert out_a[:, 1:11].max() < GARBAGE / 10


def _reference(values: np.ndarray, ages: np.ndarray, tau: float) -> list[float]:
    """The five statistics of one quantity, computed the slow obvious way."""
    m = len(values)
    if m == 0:
        return [0.0] * 5
    w = np.exp(-(ages - ages.min()) / tau)
    p90 = float(np.sort(values)[math.ceil(0.9 * m) - 1])
    return [
        float(values.mean()),
        p90,
        float(values.std()),
        float((w * values).sum() / w.sum()),
        weighted_p90(list(values), list(w)),
    ]


def _satisfies_rule(x: float, values: np.ndarray, w: np.ndarray) -> bool:
    """x is a sample whose cumulative weight reaches 0.9, and no smaller value's does
    (with a relative slack of 1e-12 for summation order)."""
    target = 0.9 * w.sum()
    slack = 1e-12 * w.sum()
    return (
        bool(np.any(values == x))
        and w[values <= x].sum() >= target - slack
        and w[values < x].sum() < target + slack
    )


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(0, 128),
    kind=st.sampled_from(["exp", "lognormal", "ties", "sorted", "reversed", "constant"]),
    spread=st.sampled_from([0.0, 0.1, 1.0, 20.0]),
)
def test_matches_reference(seed: int, m: int, kind: str, spread: float) -> None:
    """Random reservoirs of every size (both the subsample pivot path and quickselect)."""
    rng = np.random.default_rng(seed)
    values = {
        "exp": rng.exponential(1.0, m),
        "lognormal": rng.lognormal(0.0, 2.0, m),
        "ties": rng.integers(0, 4, m) / 2.0,
        "sorted": np.sort(rng.exponential(1.0, m)),
        "reversed": np.sort(rng.exponential(1.0, m))[::-1],
        "constant": np.full(m, 0.25),
    }[kind]
    ages = np.round(rng.uniform(0.0, spread, m), 9)
    obs = Obs(1, 128)
    obs.set("dur", 0, list(values), list(ages))
    got = F.compute(obs, np.ones(1))[0, 1:6]
    want = _reference(values, ages, 1.0)
    np.testing.assert_allclose(got[[0, 1, 2, 3]], [want[i] for i in (0, 1, 2, 3)], rtol=1e-9)
    if m:
        w = np.exp(-(ages - ages.min()))
        assert got[1] == want[1]
        assert _satisfies_rule(got[4], values, w), (got[4], want[4])


def test_same_result_on_a_shared_memory_frame(region_name: str) -> None:
    rng = np.random.default_rng(5)
    k = 8
    plain = Obs(4, k)
    plain.active[2] = False
    plain.active_flows[:] = [1, 2, 30, 4]
    for i, m in enumerate((8, 3, 0, 6)):
        plain.set("dur", i, list(rng.exponential(1.0, m)), list(rng.uniform(0, 2, m)))
        plain.set("fct", i, list(rng.exponential(2.0, m)), list(rng.uniform(-1, 2, m)))
    region = Region.create(region_name, 4, k=k)
    writer = FrameWriter(region)
    rec = writer.begin()
    rec["num_servers"] = 4
    rec["ts_ns"] = plain.ts_ns
    srv = rec["servers"]
    srv["active"][:4] = plain.active
    srv["active_flows"][:4] = plain.active_flows
    for q in ("dur", "fct"):
        srv[f"n_{q}"][:4] = getattr(plain, f"n_{q}")
        srv[q]["value"][:4] = getattr(plain, f"{q}_values")
        srv[q]["t_ns"][:4] = getattr(plain, f"{q}_t_ns")
    writer.commit(rec)
    frame = FrameReader(Region.attach(region_name)).read_newest()
    assert frame is not None
    prev = np.array([1.0, 2.0, 1.5, 1.0])
    got = F.compute(frame, prev)
    want = F.compute(plain, prev)
    assert np.array_equal(got, want)
    assert want[1, col("dur_mean")] == pytest.approx(float(plain.dur_values[1, :3].mean()))


def test_writes_into_out() -> None:
    obs = Obs(2, 4)
    obs.set("dur", 0, [1.0], [0.0])
    out = np.full((2, 12), np.nan)
    assert F.compute(obs, np.ones(2), out=out) is out
    assert np.isfinite(out).all()


def test_rejects_bad_arguments() -> None:
    obs = Obs(2, 4)
    with pytest.raises(ValueError, match=r"out: expected a float64 array of shape \(2, 12\)"):
        F.compute(obs, np.ones(2), out=np.empty((2, 11)))
    for tau in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="tau"):
            F.compute(obs, np.ones(2), tau=tau)
    with pytest.raises(ValueError, match="prev_weights"):
        F.compute(obs, np.ones(3))
    obs.n_fct[1] = 5
    with pytest.raises(ValueError, match="n_fct must be <= k"):
        F.compute(obs, np.ones(2))
