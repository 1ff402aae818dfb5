"""sim_engine: the engine's simulated flows/s beside SimPy; env_step: env steps/s beside the engine.

sim_engine replays one long Poisson trace over paper-7's servers (one LB,
SED with capacity weights, load 0.9) and times only the engine's stepping,
in steps of a fiftieth of the trace so Python's per-step overhead vanishes;
the baseline is the same model written idiomatically in SimPy
(benchmarks/simpy_model.py) on a shorter trace.  Both are the best of three
interleaved runs.  The two simulators' mean FCTs on the shorter trace are
reported too (tests/benchmarks/test_sim_bench.py checks them flow by flow).

env_step runs LoadBalanceEnv on seed-16 with a fixed action (static capacity
weights), resets included; its baseline is the bare engine stepping the same
scenario, new engine per episode included.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, ratio
from marllbd.sim import traces
from marllbd.sim.engine import Engine
from marllbd.sim.scenario import Scenario, load_scenario

SIMPY_MODEL = Path(__file__).resolve().parents[2] / "benchmarks" / "simpy_model.py"
_REPEATS = 3
_STEPS = 50


def simpy_model() -> ModuleType:
    """benchmarks/simpy_model.py, imported from the source tree (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("marllbd_simpy_model", SIMPY_MODEL)
    if spec is None or spec.loader is None or not SIMPY_MODEL.is_file():
        raise RuntimeError(f"sim_engine needs the source tree's {SIMPY_MODEL}")
    try:
        import simpy  # noqa: F401 - fail here with an install hint
    except ImportError:
        raise RuntimeError(
            "sim_engine's baseline needs SimPy: pip install -c constraints.txt simpy"
        ) from None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_scenario(flows: int, seed: int = 1) -> tuple[Scenario, traces.Trace]:
    """paper-7's servers behind one LB at load 0.9, with a trace of about `flows` flows."""
    base = load_scenario("paper-7")
    rate = 0.9 * base.capacity / 0.1  # the preset's exponential work of mean 0.1 s
    duration = flows / rate
    sc = base.replace(lb_nodes=1, duration=duration, control_interval=duration / _STEPS, seed=seed)
    return sc, traces.poisson(rate, duration, "exp", 0.1, seed)


def run_engine(sc: Scenario, trace: traces.Trace) -> tuple[Engine, float]:
    """Step an engine until every flow is done; returns it and the stepping's wall seconds."""
    engine = Engine(sc, trace, rule="sed")
    t0 = time.perf_counter()
    while not (engine.done and engine.drained):
        engine.step(copy=False)
    return engine, time.perf_counter() - t0


def run_simpy(model: ModuleType, sc: Scenario, trace: traces.Trace) -> tuple[np.ndarray, float]:
    """The SimPy model on the same servers and trace; returns the FCTs and wall seconds."""
    t0 = time.perf_counter()
    fct = model.simulate(
        trace.arrival,
        trace.work,
        [s.workers for s in sc.servers],
        [s.mp_level for s in sc.servers],
        [s.backlog for s in sc.servers],
        sc.rtt,
    )
    return fct, time.perf_counter() - t0


@benchmark("sim_engine")
def sim_engine(quick: bool) -> list[BenchResult]:
    model = simpy_model()
    flows, prefix_flows = (100_000, 10_000) if quick else (1_000_000, 50_000)
    run_engine(*bench_scenario(1_000))  # compile (or load the cache) before timing
    sc, trace = bench_scenario(flows)
    psc, ptrace = bench_scenario(prefix_flows)
    # Interleaved, so that a busy spell of the machine slows both sides alike.
    engine_s = simpy_s = math.inf
    for _ in range(_REPEATS):
        engine_s = min(engine_s, run_engine(sc, trace)[1])
        simpy_s = min(simpy_s, run_simpy(model, psc, ptrace)[1])
    engine_fct = run_engine(psc, ptrace)[0].fct().mean()
    simpy_fct = float(run_simpy(model, psc, ptrace)[0].mean())
    value, base = len(trace) / engine_s, len(ptrace) / simpy_s
    return [
        BenchResult(
            name="sim_engine",
            value=value,
            unit="flows/s",
            baseline="simpy",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={
                "flows": len(trace),
                "baseline_flows": len(ptrace),
                "servers": len(sc.servers),
                "load": 0.9,
                "rule": "sed",
                "mean_fct_engine": float(engine_fct),
                "mean_fct_simpy": simpy_fct,
            },
        )
    ]


@benchmark("env_step")
def env_step(quick: bool) -> list[BenchResult]:
    from marllbd.envs.single import LoadBalanceEnv

    steps = 5_000 if quick else 100_000
    env = LoadBalanceEnv("seed-16")
    action = np.zeros(env.num_servers, dtype=np.float32)  # level 1: static capacity weights

    def env_rate(n: int) -> tuple[float, float]:
        env.reset(seed=0)
        flows = len(env.engine.arrival)
        t0 = time.perf_counter()
        for _ in range(n):
            truncated = env.step(action)[3]
            if truncated:
                env.reset()
                flows += len(env.engine.arrival)
        return n / (time.perf_counter() - t0), flows / n

    def engine_rate(n: int) -> float:
        sc = env.scenario
        engine = Engine(sc)
        t0 = time.perf_counter()
        for _ in range(n):
            engine.step(copy=False)
            if engine.done:
                engine = Engine(sc.replace(seed=sc.seed + 1))
                sc = engine.scenario
        return n / (time.perf_counter() - t0)

    env_rate(1_000)  # warm-up: compile or load the caches
    engine_rate(1_000)
    value = base = flows_per_step = 0.0
    for _ in range(_REPEATS):  # interleaved, like sim_engine
        rate, flows_per_step = env_rate(steps)
        value = max(value, rate)
        base = max(base, engine_rate(steps))
    return [
        BenchResult(
            name="env_step",
            value=value,
            unit="steps/s",
            baseline="engine_step",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={
                "scenario": env.scenario.name,
                "servers": env.num_servers,
                "control_interval": env.scenario.control_interval,
                "flows_per_step": flows_per_step,
            },
        )
    ]


@benchmark("vector_env_step")
def vector_env_step(quick: bool) -> list[BenchResult]:
    """16 seed-16 envs (16 servers) as one LoadBalanceVectorEnv, aggregate env steps/s,
    autoresets included; baseline gymnasium's SyncVectorEnv over 16 LoadBalanceEnv."""
    import gymnasium as gym

    from marllbd.envs.single import LoadBalanceEnv
    from marllbd.envs.vector import LoadBalanceVectorEnv

    num_envs, steps = 16, (300 if quick else 3_000)
    vec = LoadBalanceVectorEnv(num_envs, "seed-16")
    sync = gym.vector.SyncVectorEnv([lambda: LoadBalanceEnv("seed-16")] * num_envs)
    action = np.zeros((num_envs, vec.num_servers), dtype=np.float32)  # static capacity weights

    def rate(env: gym.vector.VectorEnv, n: int) -> float:
        env.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(n):
            env.step(action)
        return n * num_envs / (time.perf_counter() - t0)

    rate(vec, 50)  # warm-up: compile or load the caches
    rate(sync, 50)
    value = base = 0.0
    for _ in range(_REPEATS):  # interleaved, like sim_engine
        value = max(value, rate(vec, steps))
        base = max(base, rate(sync, steps))
    return [
        BenchResult(
            name="vector_env_step",
            value=value,
            unit="steps/s",
            baseline="sync_vector_env",
            baseline_value=base,
            ratio=ratio(value, base),
            extra={
                "num_envs": num_envs,
                "servers": vec.num_servers,
                "scenario": "seed-16",
                "parallel": vec.parallel,
                "threads": _numba_threads(),
            },
        )
    ]


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())
