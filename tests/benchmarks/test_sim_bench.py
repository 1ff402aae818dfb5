"""The simulator benchmarks: the SimPy baseline models what the engine models, and both run."""

from __future__ import annotations

import json
import math
import os
from types import ModuleType

import numpy as np
import pytest

from marllbd.benchmarks import BenchResult, registry
from marllbd.benchmarks import sim as bench
from marllbd.sim import traces
from marllbd.sim.engine import REJECT_PENALTY


@pytest.fixture(scope="module")
def model() -> ModuleType:
    """The SimPy model; a missing SimPy fails in CI and skips locally."""
    try:
        return bench.simpy_model()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def test_registered() -> None:
    benches = registry()
    assert benches["sim_engine"] is bench.sim_engine
    assert benches["env_step"] is bench.env_step


def test_simpy_model_gives_every_flow_the_engines_fct(model: ModuleType) -> None:
    sc, trace = bench.bench_scenario(3_000, seed=5)
    engine, _ = bench.run_engine(sc, trace)
    fct, _ = bench.run_simpy(model, sc, trace)
    np.testing.assert_allclose(fct, engine.f_fct, rtol=0, atol=1e-9)


def test_simpy_model_rejects_the_flows_the_engine_rejects(model: ModuleType) -> None:
    base, _ = bench.bench_scenario(1_000)
    sc = base.replace(servers={"workers": [1, 1, 1, 1, 2, 2, 2], "backlog": 1})
    trace = traces.poisson(1.4 * sc.capacity / 0.1, sc.duration, "exp", 0.1, seed=6)
    engine, _ = bench.run_engine(sc, trace)
    fct, _ = bench.run_simpy(model, sc, trace)
    assert engine.rejected > 50
    np.testing.assert_array_equal(fct == REJECT_PENALTY, engine.f_fct == REJECT_PENALTY)
    np.testing.assert_allclose(fct, engine.f_fct, rtol=0, atol=1e-9)


def check(res: BenchResult, name: str, unit: str, baseline: str) -> None:
    assert (res.name, res.unit, res.baseline) == (name, unit, baseline)
    assert math.isfinite(res.value) and res.value > 0
    assert math.isfinite(res.baseline_value) and res.baseline_value > 0
    assert res.ratio == pytest.approx(res.value / res.baseline_value)
    assert json.loads(json.dumps(res.to_json_dict()))["name"] == name


@pytest.mark.slow
def test_sim_engine_quick(model: ModuleType) -> None:
    (res,) = bench.sim_engine(True)
    check(res, "sim_engine", "flows/s", "simpy")
    assert res.extra["flows"] > 90_000 and res.extra["baseline_flows"] > 9_000
    assert res.extra["mean_fct_engine"] == pytest.approx(res.extra["mean_fct_simpy"], rel=1e-9)


@pytest.mark.slow
def test_env_step_quick() -> None:
    (res,) = bench.env_step(True)
    check(res, "env_step", "steps/s", "engine_step")
    # seed-16: 32 workers at load 0.9, work 0.1 s, 0.25 s steps: about 72 flows a step.
    assert 60 < res.extra["flows_per_step"] < 85


def test_vector_env_step_quick() -> None:
    assert registry()["vector_env_step"] is bench.vector_env_step
    (res,) = bench.vector_env_step(True)
    check(res, "vector_env_step", "steps/s", "sync_vector_env")
    assert (res.extra["num_envs"], res.extra["servers"]) == (16, 16)
