"""Evaluate policies on scenarios: run each (scenario, policy, seed) through the simulator,
measure, and compare policies paired by (scenario, seed).

This is the one loop that measures a policy: `marllbd eval`, the trainers'
best-checkpoint selection and the tests of shipped policies all call it.

A policy is given as a spec string ("sed", "sac-gru:PATH", loaded through the
registry) or as a `PolicySource`: a display name and a factory
`(lb) -> Policy` that makes LB node `lb`'s policy, so a trainer can evaluate
the networks it is training.  A multi-agent policy across nodes (QMIX) is a
factory that returns each node's share of it (its agents, on the shared
network).  The factory is called once per LB node at the start of every run,
so each node runs its own policy instance with its own state, which decides on
its own observation only (decentralised, as in the daemon).

A run lasts the scenario's duration, then keeps stepping without new arrivals
until every flow has finished, at most DRAIN_LIMIT more seconds.  Metrics:

- FCT statistics over every flow of the trace: rejected flows count at the
  40 s client timeout (engine.REJECT_PENALTY), and so do flows still
  unfinished at the drain limit (by then they have waited at least that long;
  `Result.unfinished` counts them).  Percentiles use numpy's linear
  interpolation.
- jain: Jain's index of the servers' ground-truth utilization (busy fraction
  of each server's workers, so equal utilization is fair whatever the
  capacities), averaged over the control intervals of the duration.
- reward: the environments' default reward (envs.reward.RewardSpec(): Jain of
  the decayed mean flow completion time, docs/reward.md; with several LB nodes of the per-server
  feature averaged over them, as the multi-agent env does), averaged over the
  same intervals.

`summary` averages each (scenario, policy)'s per-seed figures (every seed
weighs the same) and gives mean, p90 and p99 FCT a 95 % confidence interval
from Student's t over the seeds (marllbd.stats).

Runs are paired: at a given (scenario, seed) every policy sees the same trace
and the same faults (the engine draws them from the scenario's seed alone), so
the ratio of two policies' figures on a pair is free of the trace's noise.
`compare` gives each policy's geometric-mean ratio to a baseline over those
pairs, per scenario and pooled, with a 95 % t interval (stats.paired_ratio).

`evaluate_scenarios(..., jobs=N)` runs the (scenario, policy, seed) runs in N
worker processes (a forkserver or spawn context: nothing of the parent's state
is shared).  A run depends on its inputs only, so the results are the same
floats in the same order as with jobs=1; only wall_seconds differ.  Workers
load policies from spec strings; a PolicySource (a closure) cannot be sent to
them, so it needs jobs=1.  `executor=` runs them in a given
`concurrent.futures.Executor` instead (marllbd.distributed.RayExecutor: Ray
tasks, on one machine or a cluster), with the same results.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TextIO, TypeAlias

import numpy as np
import numpy.typing as npt

from marllbd import fairness, features
from marllbd.envs.reward import RewardSpec
from marllbd.errors import MarllbdError
from marllbd.policies import Policy, PolicyContext, PolicyError, load
from marllbd.sim.engine import REJECT_PENALTY, Engine
from marllbd.sim.scenario import Scenario
from marllbd.stats import Estimate, mean_ci, paired_ratio

DRAIN_LIMIT = REJECT_PENALTY
"""Seconds of draining after the duration; a flow unfinished by then has hit the client timeout."""
_POLICY_STREAM = 3
"""SeedSequence spawn key of the policies' seeds (the engine uses 0, 1 and 2)."""


class EvaluationError(MarllbdError, ValueError):
    """A policy misbehaved during an evaluation run (e.g. returned invalid weights)."""


PolicyFactory: TypeAlias = Callable[[int], Policy]
"""Makes LB node `lb`'s policy; called once per node at the start of every run."""


@dataclass(frozen=True)
class PolicySource:
    """A named way to make every LB node's policy for a run (see the module docstring)."""

    name: str
    """What results and reports call it, e.g. "sac-gru step 2000"; distinct per evaluation."""
    make: PolicyFactory

    @staticmethod
    def of(policy: str | PolicySource) -> PolicySource:
        """`policy` itself, or for a spec string a source that loads it for every node (told
        which node: "qmix:DIR" runs each node's own agents)."""
        if isinstance(policy, PolicySource):
            return policy
        spec = policy
        return PolicySource(spec, lambda lb: load(spec, lb=lb))


@dataclass(frozen=True, eq=False)
class Result:
    """The outcome of one (policy, seed) run; times in seconds."""

    policy: str
    """The policy spec as given ("sed", "sac-gru:PATH") or the PolicySource's name."""
    scenario: str
    """The scenario's name."""
    seed: int
    flows: int
    mean_fct: float
    p50_fct: float
    p90_fct: float
    p95_fct: float
    p99_fct: float
    jain: float
    reward: float
    reject_rate: float
    """Rejected flows over all flows."""
    unfinished: int
    """Flows still in the system at the drain limit (charged the timeout)."""
    wall_seconds: float
    fct: npt.NDArray[np.float64]
    """Every flow's completion time, in arrival order."""
    t: npt.NDArray[np.float64]
    """End time of every interval, drain included."""
    utilization: npt.NDArray[np.float64]
    """(intervals, servers) ground-truth utilization."""


@dataclass(frozen=True)
class Summary:
    """One policy's results on one scenario averaged over seeds (each seed weighs the same)."""

    policy: str
    scenario: str
    seeds: tuple[int, ...]
    """The seeds averaged over, in run order."""
    reward: float
    jain: float
    mean_fct: float
    p50_fct: float
    p90_fct: float
    p95_fct: float
    p99_fct: float
    reject_rate: float
    flows: float
    unfinished: float
    """Mean over seeds of the flows unfinished at the drain limit (charged the timeout)."""
    wall_seconds: float
    mean_fct_ci: Estimate
    """mean_fct with its 95 % t interval over the seeds (NaN bounds for one seed)."""
    p90_fct_ci: Estimate
    p99_fct_ci: Estimate


SUMMARY_FIELDS = (
    "reward",
    "jain",
    "mean_fct",
    "p50_fct",
    "p90_fct",
    "p95_fct",
    "p99_fct",
    "reject_rate",
    "flows",
    "unfinished",
    "wall_seconds",
)
"""Summary's per-seed means, in the order reports show them."""
CI_FIELDS = ("mean_fct", "p90_fct", "p99_fct")
"""The figures whose Summary carries a confidence interval (as FIELD_ci)."""


def policy_seed(seed: int, lb: int) -> int:
    """The seed handed to LB node `lb`'s policy in the run with scenario seed `seed`."""
    state = np.random.SeedSequence(seed, spawn_key=(_POLICY_STREAM, lb)).generate_state(1)
    return int(state[0])


def run(
    scenario: Scenario,
    policy: str | PolicySource,
    seed: int,
    *,
    on_interval: Callable[[float], None] | None = None,
) -> Result:
    """One run of `scenario` with seed `seed`, LB node `lb` driven by its own `make(lb)`.

    `on_interval` gets the run's progress in [0, 1] (simulated time over the duration).
    """
    source = PolicySource.of(policy)
    spec = source.name
    sc = scenario.replace(seed=seed)
    started = time.perf_counter()
    policies = [source.make(lb) for lb in range(sc.lb_nodes)]
    engine = Engine(sc, rule=[p.dispatch for p in policies])
    n = engine.num_servers
    capacities = engine.static_capacities.copy()
    for lb, node in enumerate(policies):
        try:
            node.reset(PolicyContext(n, capacities, policy_seed(seed, lb)))
        except PolicyError as exc:  # e.g. trained for another number of servers
            raise EvaluationError(f"policy {spec!r}: {exc}") from None
    # Before the first decision the LBs use the engine's first weights (the static
    # capacities, as the envs do; ones for prequal-w).
    weights = engine.lb_w.copy()
    feats = np.zeros((sc.lb_nodes, n, features.NUM_FEATURES))
    wants_truth = any(p.needs_ground_truth for p in policies)
    reward_spec = RewardSpec()
    times: list[float] = []
    utilization: list[npt.NDArray[np.float64]] = []
    rewards: list[float] = []
    in_run = 0  # intervals that belong to the duration
    while True:
        step = engine.step(copy=False)
        times.append(step.t)
        utilization.append(step.truth.utilization)
        for lb, obs in enumerate(step.observations):
            features.compute(obs, weights[lb], out=feats[lb])
        rewards.append(reward_spec(feats.mean(axis=0)))
        if not in_run and engine.done:
            in_run = len(times)
        if in_run and (engine.drained or step.t >= sc.duration + DRAIN_LIMIT - 1e-9):
            break
        truth = step.truth if wants_truth else None
        for lb, (node, obs) in enumerate(zip(policies, step.observations, strict=True)):
            w = node.decide(feats[lb], obs.active, truth if node.needs_ground_truth else None)
            try:
                engine.set_weights(lb, w)
            except ValueError as exc:
                raise EvaluationError(f"policy {spec!r} at t = {step.t:g} s: {exc}") from None
            weights[lb] = w
        if on_interval is not None:
            on_interval(min(step.t / sc.duration, 1.0))
    unfinished = np.isnan(engine.f_fct)
    fct = np.where(unfinished, REJECT_PENALTY, engine.f_fct)
    util = np.vstack(utilization)
    flows = int(fct.shape[0])
    pct = np.percentile(fct, (50, 90, 95, 99)) if flows else np.zeros(4)
    return Result(
        policy=spec,
        scenario=sc.name,
        seed=seed,
        flows=flows,
        mean_fct=float(fct.mean()) if flows else 0.0,
        p50_fct=float(pct[0]),
        p90_fct=float(pct[1]),
        p95_fct=float(pct[2]),
        p99_fct=float(pct[3]),
        jain=float(fairness.per_step("jain", util[:in_run]).mean()),
        reward=float(np.mean(rewards[:in_run])),
        reject_rate=engine.rejected / flows if flows else 0.0,
        unfinished=int(unfinished.sum()),
        wall_seconds=time.perf_counter() - started,
        fct=fct,
        t=np.asarray(times),
        utilization=util,
    )


def evaluate(
    scenario: Scenario,
    policies: Sequence[str | PolicySource],
    seeds: Sequence[int],
    *,
    jobs: int = 1,
    progress: bool = False,
) -> list[Result]:
    """Run every policy on every seed of one scenario, in that order (evaluate_scenarios)."""
    return evaluate_scenarios([scenario], policies, seeds, jobs=jobs, progress=progress)


def evaluate_scenarios(
    scenarios: Sequence[Scenario],
    policies: Sequence[str | PolicySource],
    seeds: Sequence[int],
    *,
    jobs: int = 1,
    progress: bool = False,
    executor: Executor | None = None,
) -> list[Result]:
    """Run every (scenario, policy, seed), in that order, in `jobs` processes (or as tasks
    of `executor`, which then decides the parallelism); a progress bar on stderr if asked.

    Every policy runs on the same seeds of a scenario, so their runs pair up
    (`compare`).  Scenario names must be distinct: results are keyed by them.
    Policies are made per run: check spec strings with `policies.load` first to
    fail before any simulation.
    """
    if not scenarios:
        raise ValueError("scenarios: expected at least one scenario to evaluate on")
    if not seeds:
        raise ValueError("seeds: expected at least one seed to evaluate on")
    scenario_names = [sc.name for sc in scenarios]
    if len(set(scenario_names)) != len(scenario_names):
        raise ValueError(f"scenarios: expected distinct names, got {scenario_names}")
    sources = [PolicySource.of(p) for p in policies]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"policies: expected distinct names, got {names}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an integer >= 1, got {jobs!r}")
    runs = [(sc, i, seed) for sc in scenarios for i in range(len(sources)) for seed in seeds]
    bar = _ProgressBar(len(runs), sys.stderr) if progress else None

    def label(sc: Scenario, i: int, seed: int) -> str:
        return f"{sc.name + ' ' if len(scenarios) > 1 else ''}{names[i]} seed {seed}"

    if executor is None and (jobs == 1 or len(runs) == 1):
        results = []
        for sc, i, seed in runs:
            tick = None if bar is None else bar.run(label(sc, i, seed))
            results.append(run(sc, sources[i], seed, on_interval=tick))
    else:
        objects = [p.name for p in policies if not isinstance(p, str)]
        if objects:
            where = "jobs" if executor is None else "executor"
            raise ValueError(
                f"{where}: policy {objects[0]!r} is a PolicySource, which cannot be sent to "
                f"worker processes; give it as a spec string or use jobs=1, got {where}="
                f"{jobs if executor is None else type(executor).__name__}"
            )
        pool = executor or ProcessPoolExecutor(min(jobs, len(runs)), mp_context=_worker_context())
        try:
            futures = [pool.submit(run, sc, names[i], seed) for sc, i, seed in runs]
            if bar is not None:
                for (sc, i, seed), future in zip(runs, futures, strict=True):
                    future.result()
                    bar.finished(label(sc, i, seed))
            results = [f.result() for f in futures]
        finally:
            if executor is None:  # a given executor is the caller's to shut down
                pool.shutdown(cancel_futures=True)
    if bar is not None:
        bar.close()
    return results


def summary(results: Sequence[Result]) -> list[Summary]:
    """Per (scenario, policy), in first-seen order: every metric averaged over its seeds,
    and the 95 % t confidence interval of mean, p90 and p99 FCT."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.policy), []).append(r)
    rows = []
    for (scenario, policy), runs in groups.items():
        est = {f: mean_ci([float(getattr(r, f)) for r in runs]) for f in SUMMARY_FIELDS}
        rows.append(
            Summary(
                policy=policy,
                scenario=scenario,
                seeds=tuple(r.seed for r in runs),
                **{f: e.mean for f, e in est.items()},
                mean_fct_ci=est["mean_fct"],
                p90_fct_ci=est["p90_fct"],
                p99_fct_ci=est["p99_fct"],
            )
        )
    return rows


@dataclass(frozen=True)
class Ratio:
    """A policy's FCTs over the baseline's, paired by (scenario, seed): each field the
    geometric mean of the pairs' ratios with its 95 % t interval (stats.paired_ratio)."""

    policy: str
    baseline: str
    scenario: str | None
    """The scenario's name, or None for the ratio pooled over every scenario's pairs."""
    pairs: int
    mean_fct: Estimate
    p90_fct: Estimate
    p99_fct: Estimate


def compare(results: Sequence[Result], baseline: str) -> list[Ratio]:
    """Every other policy's Ratio to `baseline`: per scenario (first-seen order), then
    pooled over all scenarios (pairs = (scenario, seed)); policies in first-seen order.

    ValueError if `baseline` is not among the results or a policy's runs do not
    pair up one-to-one with the baseline's.
    """
    runs: dict[str, dict[tuple[str, int], Result]] = {}
    for r in results:
        runs.setdefault(r.policy, {})[r.scenario, r.seed] = r
    if baseline not in runs:
        raise ValueError(f"baseline: expected one of the evaluated policies {list(runs)}, "
                         f"got {baseline!r}")  # fmt: skip
    base = runs[baseline]
    for policy, pairs in runs.items():
        if pairs.keys() != base.keys():
            raise ValueError(
                f"results: policy {policy!r} was not run on the same (scenario, seed) pairs "
                f"as the baseline {baseline!r}"
            )
    scenarios = list(dict.fromkeys(key[0] for key in base))
    out = []
    for scenario in [*scenarios, None]:
        keys = [k for k in base if scenario is None or k[0] == scenario]
        for policy, pairs in runs.items():
            if policy == baseline:
                continue
            est = {
                f: paired_ratio(
                    [float(getattr(pairs[k], f)) for k in keys],
                    [float(getattr(base[k], f)) for k in keys],
                )
                for f in CI_FIELDS
            }
            out.append(Ratio(policy, baseline, scenario, len(keys), **est))
    return out


def _worker_context() -> multiprocessing.context.BaseContext:
    """A forkserver context whose server imports this module once, so every worker forks
    with numpy, numba and the simulator loaded (about half a worker's start-up); spawn
    where there is no forkserver.  A forkserver already running keeps its preload list."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    multiprocessing.set_forkserver_preload(["__main__", __name__])
    return multiprocessing.get_context("forkserver")


class _ProgressBar:
    """A one-line bar on a terminal: overall progress over runs, redrawn at most 10 times/s."""

    WIDTH = 30

    def __init__(self, runs: int, stream: TextIO) -> None:
        self._runs = runs
        self._stream = stream
        self._index = -1
        self._label = ""
        self._drawn = 0.0

    def run(self, label: str) -> Callable[[float], None]:
        """Start the next run; returns its progress callback."""
        self._index += 1
        self._label = label
        self._draw(0.0, force=True)
        return self._draw

    def _draw(self, fraction: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        done = (self._index + fraction) / self._runs
        filled = round(done * self.WIDTH)
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done:4.0%}  "
            f"run {self._index + 1}/{self._runs}: {self._label[:40]:40s}"
        )
        self._stream.flush()

    def finished(self, label: str) -> None:
        """Count one more run as done (runs in worker processes report only their end)."""
        self._index += 1
        self._label = label
        self._draw(1.0, force=True)

    def close(self) -> None:
        """Erase the bar so that only the results remain."""
        self._stream.write("\r" + " " * (self.WIDTH + 60) + "\r")
        self._stream.flush()
