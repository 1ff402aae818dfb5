"""Per-decision latency of the SAC-GRU policy for 16 servers, beside the SED heuristic's.

A decision is what the daemon does with a frame: the features, then the
policy.  Both policies get the same stream of real frames (LB 0 of seed-16)
and are timed decision by decision, so the medians and p99s compare like
with like.  The SAC-GRU policy is freshly initialised: the
network's cost does not depend on what it learned.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from marllbd import features
from marllbd.benchmarks import BenchResult, benchmark, latency_result
from marllbd.policies import Policy, PolicyContext
from marllbd.policies import load as load_policy
from marllbd.sim.engine import Engine, Observation
from marllbd.sim.scenario import Scenario, load_scenario, synthetic


def _frame_stream(count: int, sc: Scenario | None = None) -> tuple[list[Observation], np.ndarray]:
    """`count` frames of LB 0 on `sc` (default seed-16) under its capacity weights, and
    the capacities."""
    sc = load_scenario("seed-16") if sc is None else sc
    engine = Engine(sc)
    capacities = engine.capacities.copy()
    engine.set_weights(0, capacities)
    out: list[Observation] = []
    while len(out) < count:
        out.append(engine.step(copy=True).observations[0])
        if engine.done:
            engine = Engine(sc.replace(seed=engine.scenario.seed + 1))
            engine.set_weights(0, capacities)
    return out, capacities


def _latencies_us(
    policy: Policy, stream: list[Observation], capacities: np.ndarray, reps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision (features + decide) wall and thread-CPU times in µs (CPU time is
    immune to preemption by other processes on a shared machine; wall time is what the
    daemon sees)."""
    n = stream[0].num_servers
    policy.reset(PolicyContext(num_servers=n, capacities=capacities))
    weights = capacities.copy()
    wall, cpu = [], []
    for _ in range(reps):
        for obs in stream:
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            feats = features.compute(obs, weights)
            weights = policy.decide(feats, obs.active, None)
            cpu.append(time.thread_time_ns() - c0)
            wall.append(time.perf_counter_ns() - t0)
    skip = len(stream) // 10  # the warm-up
    return np.array(wall[skip:]) / 1e3, np.array(cpu[skip:]) / 1e3


def _fresh_policy(arch: str, num_servers: int, **hyper: str) -> Policy:
    """A freshly initialised SAC-GRU actor of `arch` (and `hyper`), saved and loaded as the
    daemon would (`num_servers` 0: the equivariant network, for any count)."""
    from marllbd_rl import sac_gru

    from marllbd import checkpoint

    cfg = sac_gru.SacGruConfig(arch=arch, **hyper)  # type: ignore[arg-type]
    obs_dim = num_servers * features.NUM_FEATURES
    agent = sac_gru.Learner(cfg, obs_dim, num_servers, seed=0)
    manifest = {"algorithm": "sac-gru", "seed": 0, "scenario": ""}
    manifest |= sac_gru.manifest(cfg, obs_dim, num_servers)
    manifest["progress"] = {"steps": 0, "episodes": 0, "updates": 0, "best_fct": None}
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint.save(Path(tmp) / "ckpt", manifest, agent.arrays())
        return load_policy(f"sac-gru:{path}")


@benchmark("policy_infer")
def policy_infer(quick: bool) -> list[BenchResult]:
    """Median µs per decision (features + decide) of sac-gru on 16 servers against sed, on
    the same frames, in the same run."""
    stream, capacities = _frame_stream(500 if quick else 2000)
    learned = _fresh_policy(arch="flat", num_servers=16)
    return [_result("policy_infer", learned, stream, capacities, 2 if quick else 5)]


def _result(
    name: str, learned: Policy, stream: list[Observation], capacities: np.ndarray, reps: int
) -> BenchResult:
    sac_us, sac_cpu = _latencies_us(learned, stream, capacities, reps)
    sed_us, sed_cpu = _latencies_us(load_policy("sed"), stream, capacities, reps)
    return latency_result(
        name,
        sac_us,
        sed_us,
        "sed",
        cpu_median_us=float(np.median(sac_cpu)),
        baseline_cpu_median_us=float(np.median(sed_cpu)),
        servers=int(capacities.shape[0]),
    )


@benchmark("policy_infer_equivariant")
def policy_infer_equivariant(quick: bool) -> list[BenchResult]:
    """Median µs per decision (features + decide) of the equivariant sac-gru (one
    checkpoint) on 16 and 64 servers against sed, on the same frames, in the same run;
    `_on_estimates` lines: with hint and residual 'adaptive' (the shipped universal
    policy's settings: adaptive-sed's estimator runs inside each decision)."""
    plain = _fresh_policy(arch="equivariant", num_servers=0)
    on = _fresh_policy(arch="equivariant", num_servers=0, hint="adaptive", residual="adaptive")
    results = []
    for n in (16, 64):
        stream, capacities = _frame_stream(300 if quick else 1500, synthetic(n, duration=30.0))
        for tag, learned in (("", plain), ("_on_estimates", on)):
            name = f"policy_infer_equivariant{tag}_{n}"
            results.append(_result(name, learned, stream, capacities, 2 if quick else 4))
    return results


def _fresh_qmix() -> Policy:
    """A freshly initialised equivariant QMIX agent (hyper.arch 'equivariant'), saved and
    loaded as each LB's daemon would: one checkpoint for any LB and server count."""
    from marllbd_rl import qmix

    with tempfile.TemporaryDirectory() as tmp:
        return load_policy(f"qmix:{qmix.save_untrained(Path(tmp) / 'ckpt')}", lb=1)


@benchmark("policy_infer_qmix_equivariant")
def policy_infer_qmix_equivariant(quick: bool) -> list[BenchResult]:
    """Median µs per LB decision (features + decide) of the equivariant QMIX agent on 16
    and 64 servers against sed, on the same frames, in the same run (#17: ≤ 300 µs at 64)."""
    learned = _fresh_qmix()
    results = []
    for n in (16, 64):
        stream, capacities = _frame_stream(300 if quick else 1500, synthetic(n, duration=30.0))
        name = f"policy_infer_qmix_equivariant_{n}"
        results.append(_result(name, learned, stream, capacities, 2 if quick else 4))
    return results
