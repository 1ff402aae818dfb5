"""Request traces: when each flow arrives and how much service it needs.

A trace is what the simulator replays: arrival times in seconds from the start of
the trace and the work of each flow in seconds of service on one worker at full
speed. Traces come from generators (Poisson with a chosen work distribution,
piecewise-constant Poisson steps, a Markov-modulated Poisson process, a wiki-like
diurnal process) or from files (our CSV, MARLLB's tab-separated files).
"""

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from marllbd.errors import MarllbdError

WORK_DISTRIBUTIONS = ("exp", "lognormal", "pareto", "bimodal")
LOGNORMAL_SIGMA = 1.0
"""σ of log(work): a moderately skewed distribution (squared CV e^σ² − 1 ≈ 1.7)."""
PARETO_ALPHA = 2.5
"""Shape of the Pareto (type I) work: heavy tail with finite variance (squared CV 0.8)."""
BIMODAL_EXPENSIVE_FRACTION = 0.1
"""Share of expensive flows (class 1) in the bimodal mix; the rest are cheap (class 0)."""
BIMODAL_EXPENSIVE_RATIO = 10.0
"""Work of an expensive flow over that of a cheap one in the bimodal mix."""
MIN_WORK = 1e-9
"""Floor on generated work (1 ns): an exponential draw can be exactly 0, and work must be > 0."""
MAX_CLASS = int(np.iinfo(np.int8).max)

SECONDS_PER_ITERATION = 1e-8
"""MARLLB `n=<iterations>` queries (its PHP for-loop page): work = n × this (n = 4e6 → 40 ms)."""
STATIC_WORK = 1e-3
"""Work of a MARLLB query for a static-looking file (by extension): 1 ms."""
DYNAMIC_WORK = 0.05
"""Work of any other MARLLB query (a dynamic page): 50 ms."""
FILE_BANDWIDTH = 1e8
"""MARLLB `file=<...><size>` queries (its PHP file page): work = STATIC_WORK + bytes / this."""
STATIC_EXTENSIONS = frozenset(
    {".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".webp"}
    | {".woff", ".woff2", ".ttf", ".txt", ".pdf", ".mp4"}
)

_G = TypeVar("_G", bound=np.generic)
_ITERATIONS = re.compile(r"[?&]n=(\d+)(?:&|$)")
_FILE_SIZE = re.compile(r"[?&]file=[^&]*?(\d+(?:\.\d+)?)(B|KB|MB|GB)\b", re.IGNORECASE)
_SIZE_UNITS = {"B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9}


class TraceError(MarllbdError, ValueError):
    """A trace file or array is malformed; the message names the file, line and problem."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Flows in arrival order; arrays are read-only copies, validated on construction.

    arrival: seconds from the start of the trace, finite, ≥ 0, non-decreasing.
    work: seconds of service on one worker at full speed, finite, > 0.
    cls: per-flow class (0 cheap/static, 1 expensive/dynamic) or None if not classed.
    source: where the flows came from (a file path or the generator and its seed).
    """

    arrival: NDArray[np.float64]
    work: NDArray[np.float64]
    cls: NDArray[np.int8] | None
    source: str

    def __post_init__(self) -> None:
        arrival = _frozen(np.asarray(self.arrival, dtype=np.float64))
        work = _frozen(np.asarray(self.work, dtype=np.float64))
        if arrival.ndim != 1 or arrival.shape != work.shape:
            raise TraceError(
                f"{self.source}: arrival and work must be 1-D of equal length, "
                f"got shapes {arrival.shape} and {work.shape}"
            )
        cls = None if self.cls is None else np.asarray(self.cls)
        if cls is not None and cls.shape != arrival.shape:
            raise TraceError(
                f"{self.source}: cls must match arrival's shape {arrival.shape}, got {cls.shape}"
            )
        problem = _first_problem(arrival, work, cls)
        if problem is not None:
            row, what = problem
            raise TraceError(f"{self.source}: flow {row}: {what}")
        if cls is not None:
            cls = _frozen(cls.astype(np.int8))
        object.__setattr__(self, "arrival", arrival)
        object.__setattr__(self, "work", work)
        object.__setattr__(self, "cls", cls)

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def duration(self) -> float:
        """Time from the start of the trace to its last arrival, in seconds."""
        return float(self.arrival[-1]) if len(self) else 0.0

    def until(self, end: float) -> "Trace":
        """The flows that arrive before `end` seconds."""
        n = int(np.searchsorted(self.arrival, end, side="left"))
        cls = None if self.cls is None else self.cls[:n]
        return Trace(self.arrival[:n], self.work[:n], cls, self.source)


def _frozen(a: NDArray[_G]) -> NDArray[_G]:
    out = np.array(a, copy=True)
    out.flags.writeable = False
    return out


def _all_valid(arrival: NDArray[np.float64], work: NDArray[np.float64]) -> bool:
    """Whether every flow is valid, in a few whole-array passes (the common case).

    Non-decreasing arrivals that start at >= 0 and end finite are all finite and
    >= 0; NaN fails every comparison, and min/max propagate it.
    """
    if arrival.ndim != 1 or arrival.shape != work.shape:
        return False
    if arrival.shape[0] == 0:
        return True
    return bool(
        arrival[0] >= 0.0
        and arrival[-1] < np.inf
        and np.all(arrival[1:] >= arrival[:-1])
        and work.min() > 0.0
        and work.max() < np.inf
    )


def _first_problem(
    arrival: NDArray[np.float64], work: NDArray[np.float64], cls: NDArray[np.generic] | None
) -> tuple[int, str] | None:
    """The earliest flow whose arrival, work or class is invalid, and what is wrong with it."""
    if cls is None and _all_valid(arrival, work):
        return None
    with np.errstate(invalid="ignore"):  # inf - inf: that row is reported as not finite
        backwards = np.r_[False, np.diff(arrival) < 0]
    checks = [
        (~np.isfinite(arrival), lambda i: f"timestamp {float(arrival[i])!r} is not finite"),
        (arrival < 0, lambda i: f"timestamp {float(arrival[i])!r} is negative; it must be ≥ 0"),
        (
            backwards,
            lambda i: (
                f"timestamp {float(arrival[i])!r} is before the previous one "
                f"({float(arrival[i - 1])!r}); timestamps must be non-decreasing"
            ),
        ),
        (
            ~(np.isfinite(work) & (work > 0)),
            lambda i: f"work {float(work[i])!r} must be a finite number of seconds > 0",
        ),
    ]
    if cls is not None:
        values = np.asarray(cls, dtype=np.float64)
        checks.append(
            (
                ~((values == np.round(values)) & (values >= 0) & (values <= MAX_CLASS)),
                lambda i: f"class {float(values[i])!r} must be an integer in 0..{MAX_CLASS}",
            )
        )
    found = [(int(np.argmax(bad)), describe) for bad, describe in checks if bad.any()]
    if not found:
        return None
    row, describe = min(found, key=lambda item: item[0])
    return row, describe(row)


def _rng(seed: int | np.random.SeedSequence) -> np.random.Generator:
    return np.random.default_rng(seed)


def _seed_label(seed: int | np.random.SeedSequence) -> str:
    if isinstance(seed, np.random.SeedSequence):
        return f"{seed.entropy}/{'/'.join(map(str, seed.spawn_key))}"
    return str(seed)


def work_sizes(
    kind: str, n: int, mean_work: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int8] | None]:
    """Draw n work sizes of distribution `kind` with mean `mean_work` (and classes if bimodal).

    exp: exponential. lognormal: σ = LOGNORMAL_SIGMA, μ = ln(mean) − σ²/2.
    pareto: type I with α = PARETO_ALPHA and x_min = mean (α − 1)/α.
    bimodal: a cheap size c (class 0) and an expensive size BIMODAL_EXPENSIVE_RATIO·c
    (class 1, with probability BIMODAL_EXPENSIVE_FRACTION), c chosen to give the mean.
    """
    if kind not in WORK_DISTRIBUTIONS:
        raise ValueError(
            f"work distribution must be one of {', '.join(WORK_DISTRIBUTIONS)}; got {kind!r}"
        )
    if not (math.isfinite(mean_work) and mean_work > 0):
        raise ValueError(f"mean_work must be a finite number of seconds > 0, got {mean_work!r}")
    cls = None
    if kind == "exp":
        work = rng.exponential(mean_work, n)
    elif kind == "lognormal":
        mu = math.log(mean_work) - LOGNORMAL_SIGMA**2 / 2
        work = rng.lognormal(mu, LOGNORMAL_SIGMA, n)
    elif kind == "pareto":
        x_min = mean_work * (PARETO_ALPHA - 1) / PARETO_ALPHA
        # numpy's pareto() is the Lomax form, Pareto I minus one.
        work = x_min * (1.0 + rng.pareto(PARETO_ALPHA, n))
    else:
        p, ratio = BIMODAL_EXPENSIVE_FRACTION, BIMODAL_EXPENSIVE_RATIO
        cheap = mean_work / (1 - p + p * ratio)
        cls = (rng.random(n) < p).astype(np.int8)
        work = np.where(cls == 1, cheap * ratio, cheap)
    return np.maximum(work, MIN_WORK), cls


def _piecewise_arrivals(
    starts: NDArray[np.float64],
    ends: NDArray[np.float64],
    rates: NDArray[np.float64],
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """A Poisson process of rate rates[i] on [starts[i], ends[i]) (disjoint, in order):
    a Poisson count per piece, then uniform times within it, all sorted."""
    spans = ends - starts
    counts = rng.poisson(rates * spans)
    u = rng.random(int(counts.sum()))
    return np.sort(np.repeat(starts, counts) + u * np.repeat(spans, counts))


def _uniform_arrivals(rate: float, span: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """A homogeneous Poisson process on [0, span): one piece of `_piecewise_arrivals`."""
    return _piecewise_arrivals(np.zeros(1), np.array([span]), np.array([rate]), rng)


def _check_rates(name: str, values: Sequence[float], n: int | None = None) -> NDArray[np.float64]:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or not len(a) or (n is not None and len(a) != n):
        wanted = f"{n} values" if n is not None else "a non-empty sequence"
        raise ValueError(f"{name} must be {wanted}, got {list(np.ravel(a))!r}")
    if not (np.isfinite(a).all() and (a > 0).all()):
        raise ValueError(f"{name} must be finite numbers > 0, got {a.tolist()!r}")
    return a


def _check_duration(duration: float) -> None:
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")


def steps(
    times: Sequence[float],
    rates: Sequence[float],
    duration: float,
    work: str = "exp",
    mean_work: float = 0.1,
    seed: int | np.random.SeedSequence = 0,
) -> Trace:
    """Piecewise-constant Poisson arrivals over [0, duration): `rates[i]` flows/s from
    `times[i]` (0 first, strictly increasing, < duration) until the next time; i.i.d.
    work (see work_sizes)."""
    _check_duration(duration)
    r = _check_rates("rates", rates)
    t = np.asarray(times, dtype=np.float64)
    if t.shape != r.shape:
        raise ValueError(f"times must have one entry per rate ({len(r)}), got {list(times)!r}")
    if not (t[0] == 0.0 and np.all(np.diff(t) > 0) and t[-1] < duration):
        raise ValueError(
            f"times must start at 0 and increase strictly below duration {duration:g}, "
            f"got {t.tolist()!r}"
        )
    rng = _rng(seed)
    arrival = _piecewise_arrivals(t, np.r_[t[1:], duration], r, rng)
    sizes, cls = work_sizes(work, len(arrival), mean_work, rng)
    label = f"steps(rates={','.join(f'{x:g}' for x in r)}, work={work}, seed={_seed_label(seed)})"
    return Trace(arrival, sizes, cls, label)


MMPP_CHUNK = 1 << 16
"""Most sojourns an MMPP path draws at a time (it draws again until the path covers the run)."""


def mmpp_path(
    dwell: Sequence[float], duration: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The state path of an MMPP over [0, duration): each sojourn's start time and state.

    It starts in state 0; state i lasts an exponential time of mean dwell[i], then the
    process jumps to a uniformly chosen other state (an offset 1..m−1 added modulo m).
    Drawn in chunks of jumps then lengths from `rng`, so a generator in the same state
    yields the same path (`mmpp` draws its path first).
    """
    d = _check_rates("dwell", dwell)
    m = len(d)
    if m < 2:
        raise ValueError(f"dwell must have at least 2 states, got {d.tolist()!r}")
    _check_duration(duration)
    # The embedded chain is uniform over the states: sojourns average dwell.mean().
    chunk = min(int(duration / d.mean()) + 16, MMPP_CHUNK)
    states: list[NDArray[np.int64]] = []
    lengths: list[NDArray[np.float64]] = []
    state, covered = 0, 0.0
    while covered < duration:
        jumps = rng.integers(1, m, chunk)
        seq = (state + np.r_[0, np.cumsum(jumps[:-1])]) % m
        states.append(seq)
        lengths.append(rng.exponential(1.0, chunk) * d[seq])
        state = int(seq[-1] + jumps[-1]) % m
        covered += float(lengths[-1].sum())
    ends = np.cumsum(np.concatenate(lengths))
    starts = np.r_[0.0, ends[:-1]]
    keep = starts < duration
    return starts[keep], np.concatenate(states)[keep]


def mmpp(
    rates: Sequence[float],
    dwell: Sequence[float],
    duration: float,
    work: str = "exp",
    mean_work: float = 0.1,
    seed: int | np.random.SeedSequence = 0,
) -> Trace:
    """Markov-modulated Poisson arrivals over [0, duration): `rates[i]` flows/s while in
    state i of the path `mmpp_path(dwell, duration, rng)`; i.i.d. work (see work_sizes)."""
    r = _check_rates("rates", rates)
    if len(r) < 2:
        raise ValueError(f"rates must have at least 2 states, got {r.tolist()!r}")
    _check_rates("dwell", dwell, len(r))
    rng = _rng(seed)
    starts, states = mmpp_path(dwell, duration, rng)
    arrival = _piecewise_arrivals(starts, np.r_[starts[1:], duration], r[states], rng)
    sizes, cls = work_sizes(work, len(arrival), mean_work, rng)
    label = f"mmpp(rates={','.join(f'{x:g}' for x in r)}, work={work}, seed={_seed_label(seed)})"
    return Trace(arrival, sizes, cls, label)


def poisson(
    rate: float,
    duration: float,
    work: str = "exp",
    mean_work: float = 0.1,
    seed: int | np.random.SeedSequence = 0,
) -> Trace:
    """Poisson arrivals at `rate` flows/s over [0, duration) with i.i.d. work (see work_sizes)."""
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number of flows per second > 0, got {rate!r}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    rng = _rng(seed)
    arrival = _uniform_arrivals(rate, duration, rng)
    sizes, cls = work_sizes(work, len(arrival), mean_work, rng)
    label = f"poisson(rate={rate:g}, work={work}, seed={_seed_label(seed)})"
    return Trace(arrival, sizes, cls, label)


@dataclass(frozen=True)
class WikiMix:
    """The wiki-like request mix: cheap static pages and heavy-tailed dynamic pages.

    static_fraction: share of static pages (class 0), exponential work of mean static_work.
    dynamic_work, dynamic_alpha: dynamic pages (class 1) draw Pareto I work with this
    mean and shape; α = 1.5 has infinite variance, the heavy tail of rendered pages.
    These are our assumptions, not measurements.
    """

    static_fraction: float = 0.7
    static_work: float = 2e-3
    dynamic_work: float = 0.05
    dynamic_alpha: float = 1.5

    def __post_init__(self) -> None:
        if not 0 <= self.static_fraction <= 1:
            raise ValueError(f"static_fraction must be in [0, 1], got {self.static_fraction!r}")
        for name in ("static_work", "dynamic_work"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if not (math.isfinite(self.dynamic_alpha) and self.dynamic_alpha > 1):
            raise ValueError(f"dynamic_alpha must be > 1 (finite mean), got {self.dynamic_alpha!r}")

    @property
    def mean_work(self) -> float:
        """Expected work of one request, in seconds."""
        f = self.static_fraction
        return f * self.static_work + (1 - f) * self.dynamic_work


def _check_profile(peak: float, trough: float, peak_hour: float) -> None:
    if not (math.isfinite(peak) and 0 < trough <= peak):
        raise ValueError(
            f"need 0 < trough ≤ peak < inf req/s, got trough={trough!r}, peak={peak!r}"
        )
    if not 0 <= peak_hour < 24:
        raise ValueError(f"peak_hour must be in [0, 24), got {peak_hour!r}")


def diurnal_rate(
    hour: NDArray[np.float64], peak: float, trough: float, peak_hour: float
) -> NDArray[np.float64]:
    """A 24-hour cosine profile: `peak` req/s at `peak_hour`, `trough` twelve hours off."""
    mid, amp = (peak + trough) / 2, (peak - trough) / 2
    return mid + amp * np.cos(2 * np.pi * (hour - peak_hour) / 24)


def mean_diurnal_rate(
    hours: int | float | tuple[float, float], peak: float, trough: float, peak_hour: float
) -> float:
    """Average of `diurnal_rate` over the hours, in req/s, from the cosine's integral."""
    start, end = _hours(hours)
    _check_profile(peak, trough, peak_hour)
    mid, amp = (peak + trough) / 2, (peak - trough) / 2
    w = 2 * math.pi / 24
    area = (math.sin(w * (end - peak_hour)) - math.sin(w * (start - peak_hour))) / w
    return mid + amp * area / (end - start)


def _hours(hours: int | float | tuple[float, float]) -> tuple[float, float]:
    start, end = (float(hours), float(hours) + 1) if isinstance(hours, int | float) else hours
    if not (0 <= start < 24 and start < end <= start + 24):
        raise ValueError(
            f"hours must be an hour of the day or (start, end) with 0 ≤ start < 24 and "
            f"start < end ≤ start + 24, got {hours!r}"
        )
    return float(start), float(end)


def wiki(
    hours: int | float | tuple[float, float],
    *,
    seed: int | np.random.SeedSequence = 0,
    peak: float = 800.0,
    trough: float = 500.0,
    peak_hour: float = 20.0,
    mix: WikiMix | None = None,
    time_scale: float = 1.0,
    rate_scale: float = 1.0,
) -> Trace:
    """Wiki-like traffic over hours of the day: diurnal Poisson arrivals, two classes of work.

    `hours` is one hour (int) or (start, end). The rate follows `diurnal_rate` (the
    20:00 evening peak is our assumption) as a non-homogeneous Poisson process, made
    by thinning a homogeneous one at the peak rate. `time_scale` runs the day that
    many times faster (hours (0, 1) at time_scale 360 last 10 s); `rate_scale`
    multiplies every rate. Work follows `mix` (default WikiMix()).
    """
    start, end = _hours(hours)
    _check_profile(peak, trough, peak_hour)
    mix = WikiMix() if mix is None else mix
    for name, value in (("time_scale", time_scale), ("rate_scale", rate_scale)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    rng = _rng(seed)
    span = (end - start) * 3600.0 / time_scale
    top = peak * rate_scale
    candidates = _uniform_arrivals(top, span, rng)
    hour = start + candidates * time_scale / 3600.0
    keep = (
        rng.random(len(candidates)) * top < diurnal_rate(hour, peak, trough, peak_hour) * rate_scale
    )
    arrival = candidates[keep]
    n = len(arrival)
    cls = (rng.random(n) >= mix.static_fraction).astype(np.int8)
    static = rng.exponential(mix.static_work, n)
    alpha = mix.dynamic_alpha
    dynamic = mix.dynamic_work * (alpha - 1) / alpha * (1.0 + rng.pareto(alpha, n))
    work = np.maximum(np.where(cls == 1, dynamic, static), MIN_WORK)
    return Trace(arrival, work, cls, f"wiki(hours={start:g}-{end:g}, seed={_seed_label(seed)})")


def utilisation(trace: Trace, total_capacity: float) -> float:
    """Offered load: total work over (duration × total workers)."""
    if not (math.isfinite(total_capacity) and total_capacity > 0):
        raise ValueError(f"total_capacity must be a number of workers > 0, got {total_capacity!r}")
    if trace.duration <= 0:
        raise ValueError(f"{trace.source}: a trace that spans no time has no utilisation")
    return float(trace.work.sum()) / (trace.duration * total_capacity)


def load_scaled(trace: Trace, target_load: float, total_capacity: float) -> Trace:
    """Stretch or compress the trace's time axis so its utilisation becomes `target_load`.

    Work sizes and their order are kept; the arrival rate, and so the duration, change.
    """
    if not (math.isfinite(target_load) and target_load > 0):
        raise ValueError(f"target_load must be a number > 0, got {target_load!r}")
    factor = utilisation(trace, total_capacity) / target_load
    source = f"{trace.source} scaled to load {target_load:g}"
    return Trace(trace.arrival * factor, trace.work, trace.cls, source)


_CSV_COLUMNS = ("timestamp", "work", "class")


def load_csv(path: str | Path) -> Trace:
    """Read a `timestamp,work[,class]` CSV (columns in any order; empty lines are skipped).

    Parsing is vectorised (a 1 M-row file loads in well under a second); only once
    something is wrong does a line-by-line scan find the line number to report.
    """
    path = Path(path)
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    header_text = _text(header, path, 1).lstrip("\ufeff")
    names = [name.strip() for name in header_text.split(",")]
    if not raw.strip():
        raise TraceError(f"{path}: empty file; expected a header 'timestamp,work[,class]'")
    for name in names:
        if name not in _CSV_COLUMNS:
            raise TraceError(
                f"{path}:1: unexpected column {name!r}; "
                "expected timestamp, work and optionally class"
            )
        if names.count(name) > 1:
            raise TraceError(f"{path}:1: column {name!r} appears twice")
    for name in _CSV_COLUMNS[:2]:
        if name not in names:
            raise TraceError(f"{path}:1: missing column {name!r}; header is {header_text!r}")
    if not body.strip(b"\r\n"):
        raise TraceError(f"{path}:2: no data rows after the header")
    try:
        data = np.loadtxt(
            io.BytesIO(raw),
            delimiter=",",
            skiprows=1,
            comments=None,
            encoding="utf-8",
            ndmin=2,
            dtype=np.float64,
        )
    except ValueError as exc:
        _scan_csv(path, raw, names)
        raise TraceError(f"{path}: {exc}") from exc
    if data.shape[1] != len(names):  # every row one column short: numpy reads it happily
        _scan_csv(path, raw, names)
    arrival, work = data[:, names.index("timestamp")], data[:, names.index("work")]
    classes = data[:, names.index("class")] if "class" in names else None
    problem = _first_problem(arrival, work, classes)
    if problem is not None:
        row, what = problem
        raise TraceError(f"{path}:{_data_line(raw, row)}: {what}")
    cls = None if classes is None else classes.astype(np.int8)
    return Trace(arrival, work, cls, str(path))


def _text(line: bytes, path: Path, number: int) -> str:
    try:
        return line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from None


def _data_line(raw: bytes, row: int) -> int:
    """1-based line number of data row `row` (0-based, empty lines skipped; header is line 1)."""
    for number, line in enumerate(raw.split(b"\n")[1:], start=2):
        if line.rstrip(b"\r"):
            if row == 0:
                return number
            row -= 1
    raise AssertionError("row beyond the end of the file")


def _scan_csv(path: Path, raw: bytes, names: list[str]) -> None:
    """Find the first line numpy refused and raise a TraceError naming it and the problem."""
    for number, line in enumerate(raw.split(b"\n")[1:], start=2):
        text = _text(line, path, number)
        if not text:
            continue
        fields = text.split(",")
        if len(fields) != len(names):
            raise TraceError(
                f"{path}:{number}: expected {len(names)} columns ({','.join(names)}), "
                f"found {len(fields)}"
            )
        for name, field in zip(names, fields, strict=True):
            if not _is_number(field):
                raise TraceError(
                    f"{path}:{number}: cannot parse {name} {field.strip()!r} as a number"
                )


def _is_number(field: str) -> bool:
    # numpy refuses Python's digit separators ('1_000'), so the scan does too.
    if "_" in field:
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def query_work(query: str) -> tuple[float, int]:
    """Work (seconds) and class of a MARLLB query, deterministically from its text.

    `...?n=<N>` (the PHP for-loop page): N × SECONDS_PER_ITERATION, class 1.
    `...?file=<...><size><unit>` (the PHP file page, e.g. samples/1MB-3.txt):
    STATIC_WORK + bytes / FILE_BANDWIDTH, class 0.
    A path ending in a static extension (STATIC_EXTENSIONS): STATIC_WORK, class 0.
    Anything else is a dynamic page: DYNAMIC_WORK, class 1.
    """
    iterations = _ITERATIONS.search(query)
    if iterations:
        return int(iterations.group(1)) * SECONDS_PER_ITERATION, 1
    size = _FILE_SIZE.search(query)
    if size:
        nbytes = float(size.group(1)) * _SIZE_UNITS[size.group(2).upper()]
        return STATIC_WORK + nbytes / FILE_BANDWIDTH, 0
    page = query.split("?", 1)[0].lower()
    if Path(page).suffix in STATIC_EXTENSIONS:
        return STATIC_WORK, 0
    return DYNAMIC_WORK, 1


def load_marllb(path: str | Path) -> Trace:
    """Read an original MARLLB trace: header `time<TAB>query`, then one request per line.

    Work and class come from each query by `query_work`; empty lines are skipped.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    if not b"".join(lines).strip():
        raise TraceError(f"{path}: empty file; expected a header 'time<TAB>query'")
    header = _text(lines[0], path, 1).lstrip("\ufeff")
    if header.split("\t") != ["time", "query"]:
        raise TraceError(f"{path}:1: expected the header 'time<TAB>query', got {header!r}")
    times: list[float] = []
    works: list[float] = []
    classes: list[int] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        text = _text(line, path, number)
        if not text:
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            raise TraceError(
                f"{path}:{number}: expected 2 tab-separated columns, found {len(fields)}"
            )
        if not _is_number(fields[0]):
            raise TraceError(
                f"{path}:{number}: cannot parse time {fields[0].strip()!r} as a number"
            )
        seconds, cls = query_work(fields[1].strip())
        times.append(float(fields[0]))
        works.append(seconds)
        classes.append(cls)
        numbers.append(number)
    if not times:
        raise TraceError(f"{path}:2: no data rows after the header")
    arrival, work = np.array(times), np.array(works)
    problem = _first_problem(arrival, work, None)
    if problem is not None:
        row, what = problem
        query = _text(lines[numbers[row] - 1], path, numbers[row]).split("\t")[1].strip()
        raise TraceError(f"{path}:{numbers[row]}: {what} (query {query!r})")
    return Trace(arrival, work, np.array(classes, dtype=np.int8), str(path))


def load(path: str | Path) -> Trace:
    """Read a trace file, choosing the format from its header line (extensions lie:
    MARLLB's tab-separated traces are named .csv)."""
    path = Path(path)
    with path.open("rb") as f:
        first = f.readline()
    header = _text(first.rstrip(b"\n"), path, 1).lstrip("\ufeff")
    if "\t" in header:
        return load_marllb(path)
    if "," in header or header.strip() in _CSV_COLUMNS:
        return load_csv(path)
    if not header.strip():
        raise TraceError(f"{path}: empty file or blank header line")
    raise TraceError(
        f"{path}:1: unrecognised header {header!r}; expected 'timestamp,work[,class]' (CSV) "
        "or 'time<TAB>query' (MARLLB)"
    )
