"""Traces: generators hit their documented statistics, loaders parse and reject precisely."""

import math
from pathlib import Path

import numpy as np
import pytest

from marllbd.sim import traces
from marllbd.sim.traces import Trace, TraceError

DATA = Path(__file__).parent / "data"


def test_trace_arrays_are_read_only_copies() -> None:
    arrival = np.array([0.0, 1.0])
    trace = Trace(arrival, np.array([0.1, 0.2]), None, "test")
    arrival[0] = 5.0
    assert trace.arrival[0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        trace.work[0] = 1.0


@pytest.mark.parametrize(
    ("arrival", "work", "cls", "message"),
    [
        ([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], None, "flow 2: timestamp 1.0 is before the previous"),
        ([0.0, 1.0], [1.0, 0.0], None, "flow 1: work 0.0 must be"),
        ([-1.0, 1.0], [1.0, 1.0], None, "flow 0: timestamp -1.0 is negative"),
        ([0.0, math.inf], [1.0, 1.0], None, "flow 1: timestamp inf is not finite"),
        ([0.0, 1.0], [1.0, 1.0], [0, 300], "flow 1: class 300.0 must be an integer"),
        ([0.0, 1.0], [1.0], None, "equal length"),
    ],
)
def test_trace_rejects_bad_arrays(
    arrival: list[float], work: list[float], cls: list[int] | None, message: str
) -> None:
    with pytest.raises(TraceError, match=f"^src: .*{message}"):
        Trace(np.array(arrival), np.array(work), None if cls is None else np.array(cls), "src")


def test_fast_validity_check_agrees_with_the_detailed_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """_all_valid (the whole-array shortcut) is True exactly when no flow has a problem."""
    rng = np.random.default_rng(0)
    bad = [math.nan, math.inf, -math.inf, -1.0, -0.0, 0.0, 1e308]
    cases = []
    for _ in range(3000):
        n = int(rng.integers(0, 6))
        arrival, work = np.sort(rng.uniform(0, 3, n)), rng.uniform(0.1, 1, n)
        for _ in range(int(rng.integers(0, 3)) if n else 0):
            target = arrival if rng.random() < 0.5 else work
            target[rng.integers(0, n)] = bad[rng.integers(0, len(bad))]
        if n > 1 and rng.random() < 0.2:
            arrival = arrival[::-1].copy()
        cases.append((arrival, work, traces._all_valid(arrival, work)))
    monkeypatch.setattr(traces, "_all_valid", lambda *_: False)  # the detailed checks only
    for arrival, work, fast in cases:
        assert fast == (traces._first_problem(arrival, work, None) is None), (arrival, work)


def test_until_keeps_earlier_flows() -> None:
    trace = Trace(np.array([0.0, 1.0, 2.0]), np.ones(3), np.array([0, 1, 0]), "t")
    cut = trace.until(2.0)
    assert cut.arrival.tolist() == [0.0, 1.0]
    assert cut.cls is not None and cut.cls.tolist() == [0, 1]


def test_poisson_is_deterministic_per_seed() -> None:
    a, b = traces.poisson(200, 5, seed=7), traces.poisson(200, 5, seed=7)
    c = traces.poisson(200, 5, seed=8)
    np.testing.assert_array_equal(a.arrival, b.arrival)
    np.testing.assert_array_equal(a.work, b.work)
    assert len(a) != len(c) or not np.array_equal(a.arrival, c.arrival)


def test_poisson_arrivals() -> None:
    trace = traces.poisson(1000, 20, seed=1)
    assert abs(len(trace) - 20000) < 5 * math.sqrt(20000)
    assert np.all(np.diff(trace.arrival) >= 0)
    assert trace.arrival[0] >= 0 and trace.arrival[-1] < 20
    # Inter-arrival gaps of a Poisson process are exponential: CV close to 1.
    gaps = np.diff(trace.arrival)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("kind", traces.WORK_DISTRIBUTIONS)
def test_work_distributions_have_the_requested_mean(kind: str) -> None:
    work, _ = traces.work_sizes(kind, 200_000, 0.05, np.random.default_rng(2))
    assert work.mean() == pytest.approx(0.05, rel=0.03)
    assert work.min() > 0


def test_work_distribution_shapes() -> None:
    rng = np.random.default_rng(3)
    lognormal, _ = traces.work_sizes("lognormal", 100_000, 1.0, rng)
    assert np.log(lognormal).std() == pytest.approx(traces.LOGNORMAL_SIGMA, rel=0.02)
    pareto, _ = traces.work_sizes("pareto", 100_000, 1.0, rng)
    alpha = traces.PARETO_ALPHA
    assert pareto.min() == pytest.approx((alpha - 1) / alpha, rel=1e-3)
    bimodal, cls = traces.work_sizes("bimodal", 100_000, 1.0, rng)
    assert cls is not None
    assert cls.mean() == pytest.approx(traces.BIMODAL_EXPENSIVE_FRACTION, abs=0.005)
    cheap, expensive = np.unique(bimodal)
    assert expensive / cheap == pytest.approx(traces.BIMODAL_EXPENSIVE_RATIO)
    assert np.all(bimodal[cls == 1] == expensive)


def test_poisson_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="one of exp, lognormal, pareto, bimodal; got 'weibull'"):
        traces.poisson(10, 1, work="weibull")
    with pytest.raises(ValueError, match="rate"):
        traces.poisson(0, 1)
    with pytest.raises(ValueError, match="duration"):
        traces.poisson(10, math.nan)
    with pytest.raises(ValueError, match="mean_work"):
        traces.poisson(10, 1, mean_work=-1)


def test_diurnal_profile() -> None:
    assert traces.mean_diurnal_rate((0, 24), 800, 500, 20) == pytest.approx(650)
    at_peak = traces.mean_diurnal_rate((19.9, 20.1), 800, 500, 20)
    assert at_peak == pytest.approx(800, rel=1e-4)
    assert traces.mean_diurnal_rate(8, 800, 500, 20) == pytest.approx(500, rel=0.01)
    hours = np.array([20.0, 8.0, 32.0])
    np.testing.assert_allclose(traces.diurnal_rate(hours, 800, 500, 20), [800, 500, 500])


def test_wiki_follows_the_diurnal_rate() -> None:
    # One hour at the peak and one at the trough, each squeezed into 10 s of trace.
    peak = traces.wiki(20, time_scale=360, seed=4)
    trough = traces.wiki(8, time_scale=360, seed=4)
    assert peak.duration < 10.0
    for trace, hours in ((peak, 20), (trough, 8)):
        expected = traces.mean_diurnal_rate(hours, 800, 500, 20) * 10
        assert abs(len(trace) - expected) < 5 * math.sqrt(expected)


def test_wiki_mix_and_determinism() -> None:
    a = traces.wiki((0, 24), time_scale=8640, rate_scale=2.0, seed=5)
    b = traces.wiki((0, 24), time_scale=8640, rate_scale=2.0, seed=5)
    np.testing.assert_array_equal(a.work, b.work)
    assert a.cls is not None
    mix = traces.WikiMix()
    assert a.cls.mean() == pytest.approx(1 - mix.static_fraction, abs=0.03)
    assert a.work[a.cls == 0].mean() == pytest.approx(mix.static_work, rel=0.1)
    # Dynamic pages are heavy-tailed: the largest dwarfs the mean.
    assert a.work[a.cls == 1].max() > 20 * mix.dynamic_work
    assert a.work[a.cls == 1].min() >= mix.dynamic_work * (1 - 1 / mix.dynamic_alpha) - 1e-12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": (5, 5)}, "hours"),
        ({"hours": 24}, "hours"),
        ({"peak": 400.0}, "trough"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"peak_hour": 24.0}, "peak_hour"),
    ],
)
def test_wiki_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"hours": 20, "time_scale": 360.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        traces.wiki(**args)  # type: ignore[arg-type]


def test_wiki_mix_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="dynamic_alpha"):
        traces.WikiMix(dynamic_alpha=1.0)
    with pytest.raises(ValueError, match="static_fraction"):
        traces.WikiMix(static_fraction=1.5)


def _within(count: float, mean: float, sd: float, sigmas: float = 4.0) -> bool:
    return abs(count - mean) < sigmas * sd


def test_steps_arrivals_follow_each_steps_rate() -> None:
    times, rates, duration = [0.0, 20.0, 30.0], [200.0, 50.0, 400.0], 60.0
    trace = traces.steps(times, rates, duration, seed=3)
    edges = [*times, duration]
    counts = np.histogram(trace.arrival, bins=edges)[0]
    assert counts.sum() == len(trace) and trace.arrival[-1] < duration
    for count, rate, start, end in zip(counts, rates, edges, edges[1:], strict=False):
        mean = rate * (end - start)  # Poisson: sd = sqrt(mean)
        assert _within(count, mean, math.sqrt(mean)), (count, mean)
        # Within a step the times are uniform: each half holds Binomial(count, 1/2).
        first = np.count_nonzero((trace.arrival >= start) & (trace.arrival < (start + end) / 2))
        assert _within(first, count / 2, math.sqrt(count / 4)), (first, count)


def test_steps_is_deterministic_per_seed_and_draws_the_work() -> None:
    args = ([0.0, 5.0], [300.0, 100.0], 10.0, "bimodal", 0.05)
    a, b, c = (traces.steps(*args, seed=seed) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a.arrival, b.arrival)
    np.testing.assert_array_equal(a.work, b.work)
    assert a.cls is not None and b.cls is not None
    np.testing.assert_array_equal(a.cls, b.cls)
    assert len(a) != len(c) or not np.array_equal(a.arrival, c.arrival)
    assert np.all(np.diff(a.arrival) >= 0)
    assert a.work.mean() == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize(
    ("times", "rates", "message"),
    [
        ([1.0, 5.0], [1.0, 1.0], "times must start at 0"),
        ([0.0, 5.0, 5.0], [1.0, 1.0, 1.0], "increase strictly"),
        ([0.0, 10.0], [1.0, 1.0], "below duration 10"),
        ([0.0], [1.0, 1.0], "times must have one entry per rate"),
        ([0.0, 5.0], [1.0, 0.0], "rates must be finite numbers > 0"),
        ([], [], "rates must be a non-empty sequence"),
    ],
)
def test_steps_rejects_bad_parameters(times: list[float], rates: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        traces.steps(times, rates, 10.0)


def test_mmpp_two_state_path_spends_dwell_shares_of_the_time() -> None:
    dwell, duration = (8.0, 2.0), 40_000.0
    starts, states = traces.mmpp_path(dwell, duration, np.random.default_rng(5))
    assert starts[0] == 0.0 and states[0] == 0 and starts[-1] < duration
    assert np.all(np.diff(starts) > 0)
    assert np.all(np.diff(states) != 0)  # two states: every jump goes to the other
    lengths = np.diff(np.r_[starts, duration])
    # Alternating renewal: the share of time in state 0 over N cycles has, by the delta
    # method, variance ((1 − f)² d0² + f² d1²) / ((d0 + d1)² N) for exponential sojourns.
    f = dwell[0] / sum(dwell)
    cycles = duration / sum(dwell)
    sd = math.sqrt(((1 - f) ** 2 * dwell[0] ** 2 + f**2 * dwell[1] ** 2) / sum(dwell) ** 2 / cycles)
    share = lengths[states == 0].sum() / duration
    assert _within(share, f, sd), (share, f, sd)
    for i, d in enumerate(dwell):
        sojourns = lengths[:-1][states[:-1] == i]  # the last one is cut at the end
        assert _within(sojourns.mean(), d, d / math.sqrt(len(sojourns))), (i, sojourns.mean())
        assert sojourns.std() / sojourns.mean() == pytest.approx(1.0, abs=0.1)  # exponential


def test_mmpp_jumps_to_a_uniformly_chosen_other_state() -> None:
    _, states = traces.mmpp_path((1.0, 2.0, 3.0), 20_000.0, np.random.default_rng(6))
    src, dst = states[:-1], states[1:]
    assert not np.any(src == dst)
    for i in range(3):
        out = dst[src == i]
        n = len(out)
        # Each of the two other states: Binomial(n, 1/2).
        assert _within(np.count_nonzero(out == (i + 1) % 3), n / 2, math.sqrt(n / 4)), i


def test_mmpp_arrivals_follow_the_rate_of_the_current_state() -> None:
    rates, dwell, duration, seed = (20.0, 200.0), (8.0, 2.0), 4000.0, 9
    trace = traces.mmpp(rates, dwell, duration, seed=seed)
    # mmpp draws its path first from the generator of its seed: the same path again.
    starts, states = traces.mmpp_path(dwell, duration, np.random.default_rng(seed))
    lengths = np.diff(np.r_[starts, duration])
    state_of = states[np.searchsorted(starts, trace.arrival, side="right") - 1]
    assert trace.arrival[0] >= 0 and trace.arrival[-1] < duration
    for i, rate in enumerate(rates):
        mean = rate * lengths[states == i].sum()  # Poisson given the path
        count = np.count_nonzero(state_of == i)
        assert _within(count, mean, math.sqrt(mean)), (i, count, mean)


def test_mmpp_is_deterministic_per_seed() -> None:
    args = ((50.0, 500.0), (3.0, 1.0), 30.0, "lognormal", 0.01)
    a, b, c = (traces.mmpp(*args, seed=seed) for seed in (1, 1, 2))
    np.testing.assert_array_equal(a.arrival, b.arrival)
    np.testing.assert_array_equal(a.work, b.work)
    assert len(a) != len(c) or not np.array_equal(a.arrival, c.arrival)
    assert np.all(np.diff(a.arrival) >= 0)


@pytest.mark.parametrize(
    ("rates", "dwell", "message"),
    [
        ((1.0,), (1.0,), "rates must have at least 2 states"),
        ((1.0, 2.0), (1.0,), "dwell must be 2 values"),
        ((1.0, 2.0), (1.0, 0.0), "dwell must be finite numbers > 0"),
        ((1.0, math.nan), (1.0, 1.0), "rates must be finite numbers > 0"),
    ],
)
def test_mmpp_rejects_bad_parameters(
    rates: tuple[float, ...], dwell: tuple[float, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        traces.mmpp(rates, dwell, 10.0)


def test_load_csv_fixture() -> None:
    trace = traces.load_csv(DATA / "small.csv")
    assert trace.arrival.tolist() == [0.0, 0.25, 0.25, 1.5, 2.0]
    assert trace.work.tolist() == [0.010, 0.200, 0.015, 0.5, 0.001]
    assert trace.cls is not None and trace.cls.tolist() == [0, 1, 0, 1, 0]
    assert trace.cls.dtype == np.int8
    assert trace.source == str(DATA / "small.csv")


def test_load_csv_column_order_blank_lines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfwork , timestamp\r\n0.5,1.0\r\n\r\n0.25,2.0\r\n")
    trace = traces.load_csv(path)
    assert trace.arrival.tolist() == [1.0, 2.0]
    assert trace.work.tolist() == [0.5, 0.25]
    assert trace.cls is None


def test_load_csv_many_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    arrival = np.cumsum(rng.exponential(0.01, 20_000))
    work = rng.exponential(0.1, 20_000) + 1e-6
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("timestamp,work\n")
        np.savetxt(f, np.column_stack([arrival, work]), fmt="%.17g", delimiter=",")
    trace = traces.load_csv(path)
    np.testing.assert_array_equal(trace.arrival, arrival)
    np.testing.assert_array_equal(trace.work, work)


BAD_CSV = [
    ("", None, "empty file"),
    ("timestamp,work\n", 2, "no data rows"),
    ("timestamp\n1\n", 1, "missing column 'work'"),
    ("timestamp,work,size\n1,2,3\n", 1, "unexpected column 'size'"),
    ("timestamp,work,work\n1,2,3\n", 1, "column 'work' appears twice"),
    ("timestamp,work\n0,1\n1,1,1\n", 3, "expected 2 columns (timestamp,work), found 3"),
    ("timestamp,work\n0,1\n1,1\n2\n", 4, "expected 2 columns"),
    ("timestamp,work\n0,1\n1,1\nabc,1\n", 4, "cannot parse timestamp 'abc'"),
    ("timestamp,work\n0,1\n1,1_0\n", 3, "cannot parse work '1_0'"),
    ("timestamp,work\n0,1\n2,1\n1,1\n", 4, "timestamp 1.0 is before the previous one (2.0)"),
    ("timestamp,work\n0,1\n1,-1\n", 3, "work -1.0 must be a finite number of seconds > 0"),
    ("timestamp,work\n0,1\n1,0\n", 3, "work 0.0 must be"),
    ("timestamp,work\n0,1\n1,nan\n", 3, "work nan must be"),
    ("timestamp,work\n-1,1\n", 2, "timestamp -1.0 is negative"),
    ("timestamp,work\n0,1\ninf,1\n", 3, "timestamp inf is not finite"),
    ("timestamp,work,class\n0,1,0\n1,1,2.5\n", 3, "class 2.5 must be an integer"),
    ("timestamp,work,class\n0,1,0\n1,1,200\n", 3, "class 200.0 must be an integer in 0..127"),
    ("timestamp,work\n1,1\n\n\n0.5,1\n", 5, "before the previous one"),
    ("timestamp,work\n0,1\n\xff,1\n", 3, "not UTF-8"),
]


@pytest.mark.parametrize(("content", "line", "message"), BAD_CSV)
def test_load_csv_names_file_line_and_problem(
    tmp_path: Path, content: str, line: int | None, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    with pytest.raises(TraceError) as info:
        traces.load_csv(path)
    assert str(info.value).startswith(where)
    assert message in str(info.value)


def test_load_marllb_fixture() -> None:
    trace = traces.load_marllb(DATA / "marllb_loop.csv")
    assert trace.arrival.tolist() == [0.05, 0.10, 0.10, 0.40, 0.90]
    np.testing.assert_allclose(
        trace.work, [0.04, traces.STATIC_WORK + 2e6 / traces.FILE_BANDWIDTH, 1e-3, 0.05, 1e-3]
    )
    assert trace.cls is not None and trace.cls.tolist() == [1, 0, 0, 1, 1]


@pytest.mark.parametrize(
    ("query", "work", "cls"),
    [
        ("/dummy.php/?n=5000000", 0.05, 1),
        ("/dummy.php?x=1&n=200", 2e-6, 1),
        ("/file.php?file=samples/500KB-1.txt", traces.STATIC_WORK + 5e5 / traces.FILE_BANDWIDTH, 0),
        ("/img/a.JPG?v=3", traces.STATIC_WORK, 0),
        ("/app.js", traces.STATIC_WORK, 0),
        ("/wiki/Special:Search?q=x.png", traces.DYNAMIC_WORK, 1),
        ("/index.php?title=Main", traces.DYNAMIC_WORK, 1),
    ],
)
def test_query_work_mapping(query: str, work: float, cls: int) -> None:
    assert traces.query_work(query) == (pytest.approx(work), cls)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("", None, "empty file"),
        ("time,query\n0\t/a\n", 1, "expected the header 'time<TAB>query'"),
        ("time\tquery\n", 2, "no data rows"),
        ("time\tquery\n0.1\t/a\n0.2\n", 3, "expected 2 tab-separated columns"),
        ("time\tquery\nsoon\t/a\n", 2, "cannot parse time 'soon'"),
        ("time\tquery\n0.5\t/a\n0.1\t/b\n", 3, "before the previous one"),
        ("time\tquery\n0.5\t/dummy.php/?n=0\n", 2, "work 0.0 must be"),
    ],
)
def test_load_marllb_names_file_line_and_problem(
    tmp_path: Path, content: str, line: int | None, message: str
) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    with pytest.raises(TraceError) as info:
        traces.load_marllb(path)
    assert str(info.value).startswith(where)
    assert message in str(info.value)


def test_load_sniffs_the_format_not_the_extension(tmp_path: Path) -> None:
    assert traces.load(DATA / "marllb_loop.csv").cls is not None
    assert len(traces.load(DATA / "marllb_loop.csv")) == 5
    assert traces.load(DATA / "small.csv").work.tolist()[0] == 0.010
    path = tmp_path / "weird.csv"
    path.write_text("when;what\n1;2\n")
    with pytest.raises(TraceError, match=r"weird.csv:1: unrecognised header 'when;what'"):
        traces.load(path)


def test_load_scaled_hits_the_target_utilisation() -> None:
    trace = traces.poisson(100, 10, seed=9)
    before = traces.utilisation(trace, 4)
    scaled = traces.load_scaled(trace, 0.9, 4)
    assert traces.utilisation(scaled, 4) == pytest.approx(0.9)
    np.testing.assert_array_equal(scaled.work, trace.work)
    assert scaled.duration == pytest.approx(trace.duration * before / 0.9)


def test_utilisation_needs_a_span_and_capacity() -> None:
    single = Trace(np.array([0.0]), np.array([1.0]), None, "one")
    with pytest.raises(ValueError, match="spans no time"):
        traces.utilisation(single, 1)
    with pytest.raises(ValueError, match="total_capacity"):
        traces.utilisation(traces.poisson(10, 1), 0)
