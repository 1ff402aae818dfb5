"""Algorithm R reservoirs: uniform inclusion, batch == per-item, bookkeeping, kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marllbd.dataplane.reservoir import (
    DUR,
    FCT,
    Reservoir,
    ReservoirBank,
    SingleMetricReservoir,
    _below,
    make_rng_state,
    reservoir_add,
)
from marllbd.ipc.layout import MAX_K

K, N, TRIALS = 8, 32, 3000  # k-sample of a 32-value stream, over 3000 seeds


def chi2_critical(df: int, alpha: float = 1e-3) -> float:
    """Upper alpha-quantile of chi-square(df), Wilson-Hilferty cube approximation.

    scipy is not a dependency; for df = 31 the approximation is within 0.1% of
    the exact 61.10.  With alpha = 1e-3 a correct sampler fails one seed set in 1000.
    """
    z = {1e-3: 3.0902}[alpha]
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def inclusion_chi2(counts: np.ndarray, trials: int, k: int) -> float:
    """Chi-square(N - 1) statistic of per-position inclusion counts of uniform k-subsets.

    Each count is Binomial(trials, p = k/N) and the indicator vector has covariance
    p(1-p) N/(N-1) (I - J/N), because every trial includes exactly k positions;
    so (N-1)/N * sum (O - trials p)^2 / (trials p (1-p)) is chi-square(N - 1).
    """
    n = len(counts)
    p = k / n
    return (n - 1) / n * float(np.sum((counts - trials * p) ** 2)) / (trials * p * (1 - p))


def per_item_counts(seed0: int) -> np.ndarray:
    counts = np.zeros(N)
    for trial in range(TRIALS):
        r = Reservoir(K, seed=seed0 + trial)
        for i in range(N):
            r.add(float(i), i)
        counts[r.samples()[1].astype(np.int64)] += 1
    return counts


def batch_counts(seed0: int) -> np.ndarray:
    """Inclusion counts with the stream split over calls that cross the fill boundary."""
    counts = np.zeros(N)
    for trial in range(TRIALS):
        r = Reservoir(K, seed=seed0 + trial)
        for lo, hi in ((0, 5), (5, 12), (12, N)):
            r.add_batch(np.arange(lo, hi, dtype=np.float64), np.arange(lo, hi))
        counts[r.samples()[1].astype(np.int64)] += 1
    return counts


@pytest.fixture(scope="module")
def item_counts() -> np.ndarray:
    return per_item_counts(seed0=0)


@pytest.fixture(scope="module")
def batch_counts_fixture() -> np.ndarray:
    return batch_counts(seed0=100_000)


def test_chi2_critical_matches_table() -> None:
    assert chi2_critical(31) == pytest.approx(61.10, rel=2e-3)


def test_per_item_inclusion_is_uniform(item_counts: np.ndarray) -> None:
    assert item_counts.sum() == TRIALS * K
    assert inclusion_chi2(item_counts, TRIALS, K) < chi2_critical(N - 1)


def test_batch_inclusion_is_uniform(batch_counts_fixture: np.ndarray) -> None:
    assert batch_counts_fixture.sum() == TRIALS * K
    assert inclusion_chi2(batch_counts_fixture, TRIALS, K) < chi2_critical(N - 1)


def test_one_big_batch_is_uniform() -> None:
    """A single call where many kept items collide on slots: later writes must win."""
    counts = np.zeros(N)
    for trial in range(TRIALS):
        r = Reservoir(K, seed=500_000 + trial)
        r.add_batch(np.arange(N, dtype=np.float64), np.arange(N))
        counts[r.samples()[1].astype(np.int64)] += 1
    assert inclusion_chi2(counts, TRIALS, K) < chi2_critical(N - 1)


def test_batch_and_per_item_have_the_same_distribution(
    item_counts: np.ndarray, batch_counts_fixture: np.ndarray
) -> None:
    # Two independent samples: each difference A_i - B_i has variance 2 T p (1 - p).
    p = K / N
    diff = item_counts - batch_counts_fixture
    stat = (N - 1) / N * float(np.sum(diff**2)) / (2 * TRIALS * p * (1 - p))
    assert stat < chi2_critical(N - 1)


def test_fill_phase_is_exact_and_in_order() -> None:
    r = Reservoir(8, seed=1)
    r.add_batch([0.5, 1.5, 2.5], [10, 11, 12])
    r.add(3.5, 13)
    r.add_batch([4.5, 5.5, 6.5, 7.5, 8.5, 9.5], [14, 15, 16, 17, 18, 19])
    values, t_ns = r.samples()
    assert r.n == 8 and r.seen == 10
    # Slots 0..7 filled in arrival order; at most the two later values replaced some.
    replaced = values != np.arange(8) + 0.5
    assert set(values[replaced]) <= {8.5, 9.5}
    assert np.array_equal(t_ns[~replaced], np.arange(10, 18)[~replaced])


def test_reset_starts_a_new_window_and_keeps_the_stream() -> None:
    r = Reservoir(4, seed=3)
    r.add_batch(np.arange(100.0))
    r.reset()
    assert (r.n, r.seen) == (0, 0)
    assert r.samples()[0].size == 0
    r.add_batch(np.arange(1000.0, 1050.0))
    assert r.n == 4 and np.all(r.samples()[0] >= 1000.0)

    fresh = Reservoir(4, seed=3)
    fresh.add_batch(np.arange(1000.0, 1050.0))
    # The stream carried on past the first window, so the draws differ from a fresh start.
    assert not np.array_equal(fresh.samples()[0], r.samples()[0])


def test_same_seed_same_samples() -> None:
    a, b = Reservoir(16, seed=9), Reservoir(16, seed=9)
    for r in (a, b):
        r.add_batch(np.arange(5000.0))
    assert np.array_equal(a.samples()[0], b.samples()[0])


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 2.5, True, "8"])
def test_invalid_k_is_rejected_by_name(k: object) -> None:
    with pytest.raises(ValueError, match="k must be an integer"):
        Reservoir(k)  # type: ignore[arg-type]


def test_batch_shape_errors() -> None:
    r = Reservoir(4)
    with pytest.raises(ValueError, match="1-D"):
        r.add_batch(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="t_ns has shape"):
        r.add_batch(np.zeros(3), np.zeros(2, dtype=np.uint64))


def test_values_are_stored_as_given_even_nan() -> None:
    r = Reservoir(4, seed=0)
    r.add(float("nan"), 1)
    r.add_batch([float("inf"), -2.0])
    values, t_ns = r.samples()
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -2.0
    assert t_ns.tolist() == [1, 0, 0]


def test_empty_batch_is_a_no_op() -> None:
    r = Reservoir(4, seed=0)
    r.add_batch([])
    assert (r.n, r.seen) == (0, 0)


def test_single_metric_reservoir() -> None:
    r = SingleMetricReservoir(seed=4)
    for v in range(50):
        r.update(float(v))
    assert np.array_equal(r.get_sample(), np.arange(50.0))
    for v in range(50, 1000):
        r.update(float(v))
    sample = r.get_sample()
    assert sample.shape == (100,) and len(set(sample.tolist())) == 100
    assert np.all((sample >= 0) & (sample < 1000) & (sample == np.floor(sample)))
    assert isinstance(sample, np.ndarray)

    again = SingleMetricReservoir(seed=4)
    for v in range(1000):
        again.update(float(v))
    assert np.array_equal(again.get_sample(), sample)


ops = st.lists(
    st.one_of(
        st.integers(min_value=0, max_value=40),  # add_batch of this many values
        st.just(-1),  # one add
        st.just(-2),  # reset
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(min_value=1, max_value=16), plan=ops, seed=st.integers(0, 2**32))
def test_property_counts_and_membership(k: int, plan: list[int], seed: int) -> None:
    """n == min(seen, k); every stored sample is a distinct value offered this window."""
    r = Reservoir(k, seed=seed)
    next_id, window_start = 0, 0
    for op in plan:
        if op == -2:
            r.reset()
            window_start = next_id
            continue
        count = 1 if op == -1 else op
        ids = np.arange(next_id, next_id + count)
        if op == -1:
            r.add(float(ids[0]) * 0.5, int(ids[0]))
        else:
            r.add_batch(ids * 0.5, ids)
        next_id += count
        assert r.seen == next_id - window_start
        assert r.n == min(r.seen, k)
        values, t_ns = r.samples()
        assert len(set(t_ns.tolist())) == r.n
        assert np.all((t_ns >= window_start) & (t_ns < next_id))
        assert np.array_equal(values, t_ns * 0.5)


def run_kernel(seed: int, servers: np.ndarray, k: int = 8) -> ReservoirBank:
    """Offer item i (value i, t_ns i) to servers[i] through the per-item kernel."""
    bank = ReservoirBank(int(servers.max()) + 1, k=k)
    state = make_rng_state(seed)
    for i, srv in enumerate(servers.tolist()):
        reservoir_add(
            bank.values[DUR], bank.t_ns[DUR], bank.n[DUR], bank.seen[DUR], srv, float(i), i, state
        )
    return bank


def test_kernel_bookkeeping_and_membership() -> None:
    servers = np.random.default_rng(0).integers(0, 5, 400)
    bank = run_kernel(seed=1, servers=servers)
    assert np.array_equal(bank.seen[DUR], np.bincount(servers, minlength=5))
    assert np.array_equal(bank.n[DUR], np.minimum(bank.seen[DUR], 8))
    for srv in range(5):
        ids = bank.t_ns[DUR, srv, : bank.n[DUR, srv]].astype(np.int64)
        assert len(set(ids.tolist())) == len(ids)
        assert np.all(servers[ids] == srv)
        assert np.array_equal(bank.values[DUR, srv, : len(ids)], ids.astype(np.float64))


def test_kernel_is_deterministic_per_seed() -> None:
    servers = np.random.default_rng(0).integers(0, 3, 300)
    a, b, c = (run_kernel(s, servers) for s in (5, 5, 6))
    assert np.array_equal(a.values, b.values) and np.array_equal(a.t_ns, b.t_ns)
    assert not np.array_equal(a.values, c.values)


def test_kernel_below_range_and_rejection_path() -> None:
    state = make_rng_state(2)
    # 2^31 + 1 rejects about half of the 32-bit draws; 2^33 takes the 64-bit path.
    for bound in (1, 7, 2**31 + 1, 2**33 + 3):
        draws = np.array([_below(state, bound) for _ in range(2000)])
        assert draws.min() >= 0 and draws.max() < bound
        if bound > 2:
            assert 0.4 < np.mean(draws >= bound // 2) < 0.6


def test_bank_inclusion_is_uniform() -> None:
    """TRIALS servers, each offered the same N-position stream, interleaved."""
    bank = ReservoirBank(TRIALS, k=K, seed=11)
    servers = np.tile(np.arange(TRIALS), N)
    positions = np.repeat(np.arange(N), TRIALS)
    bank.add_batch(FCT, servers, positions.astype(np.float64), positions)
    counts = np.bincount(bank.t_ns[FCT].ravel().astype(np.int64), minlength=N)
    assert counts.sum() == TRIALS * K
    assert inclusion_chi2(counts, TRIALS, K) < chi2_critical(N - 1)
    assert not bank.seen[DUR].any()


def test_bank_batch_equals_per_item_kernel() -> None:
    servers = np.random.default_rng(3).integers(0, 4, 500)
    expected = run_kernel(seed=8, servers=servers)
    bank = ReservoirBank(4, k=8, seed=8)
    bank.add_batch(DUR, servers, np.arange(500.0), np.arange(500))
    assert np.array_equal(bank.values, expected.values)
    assert np.array_equal(bank.t_ns, expected.t_ns)
    assert np.array_equal(bank.n, expected.n) and np.array_equal(bank.seen, expected.seen)


def test_bank_reset_and_export() -> None:
    bank = ReservoirBank(3, k=4, seed=0)
    bank.add_batch(DUR, [0, 0, 2, 2, 2, 2, 2], np.arange(7.0), np.arange(7))
    out = bank.export(DUR)
    assert out.values.dtype == np.float64 and out.values.shape == (3, 4)
    assert out.t_ns.dtype == np.uint64 and out.t_ns.shape == (3, 4)
    assert out.n.dtype == np.uint32 and out.n.tolist() == [2, 0, 4]
    assert out.seen.dtype == np.uint64 and out.seen.tolist() == [2, 0, 5]
    out.values[:] = -1.0
    assert bank.values[DUR, 0, 0] == 0.0  # export is a copy

    bank.reset()
    assert not bank.n.any() and not bank.seen.any()
    bank.add_batch(DUR, [1], [9.0], [9])
    assert bank.export(DUR).n.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: b.add_batch(2, [0], [1.0]), "quantity must be DUR"),
        (lambda b: b.add_batch(DUR, [3], [1.0]), r"servers must lie in \[0, 3\)"),
        (lambda b: b.add_batch(DUR, [-1], [1.0]), r"servers must lie in \[0, 3\)"),
        (lambda b: b.add_batch(DUR, [0, 1], [1.0]), "servers must be integers shaped like"),
        (lambda b: b.add_batch(DUR, [0.0], [1.0]), "servers must be integers shaped like"),
        (lambda b: b.export(7), "quantity must be DUR"),
    ],
)
def test_bank_bad_arguments(call: object, match: str) -> None:
    bank = ReservoirBank(3, k=4)
    with pytest.raises(ValueError, match=match):
        call(bank)  # type: ignore[operator]


@pytest.mark.parametrize("num_servers", [0, -2, 1.5])
def test_bank_invalid_num_servers(num_servers: object) -> None:
    with pytest.raises(ValueError, match="num_servers"):
        ReservoirBank(num_servers)  # type: ignore[arg-type]
