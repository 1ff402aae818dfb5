"""QMIX on seed-16 (4 agents x 4 servers): training throughput and per-decision latency.

train_qmix: environment steps per second of wall time inside `train` (rollouts,
batched inference, gradient updates, one evaluation and the checkpoints;
default hyperparameters except an early start of learning, so the short run
spends most of its time with updates on), beside the same number of
MultiAgentLoadBalanceEnv instances stepped in lockstep with fixed actions and
the global state read, as training reads it.  ratio = value / baseline: the
share of the env's speed that survives the learner.  one_thread_update_steps_per_s:
the same training with `update_threads=1`; both after a short warm-up training.

qmix_decide: median µs of one LB's QMIXPolicy.decide (all four agents in one
batched call, 16 servers) beside the SED heuristic, on the same stream of real
feature matrices.  The network is freshly initialised: its cost does not
depend on what it learned.
"""

from __future__ import annotations

import time

import numpy as np

from marllbd.benchmarks import BenchResult, benchmark, latency_result
from marllbd.benchmarks.train_sac import ENVS, SCENARIO, timed_training, training_result
from marllbd.envs import MultiAgentLoadBalanceEnv
from marllbd.features import NUM_FEATURES
from marllbd.policies import Policy, PolicyContext
from marllbd.policies import load as load_policy

EPISODE_SECONDS = 20.0


def _env_only_rate(steps: int) -> float:
    """Env steps per second of ENVS multi-agent envs stepped in lockstep, state() included."""
    envs = [
        MultiAgentLoadBalanceEnv(SCENARIO, episode_seconds=EPISODE_SECONDS) for _ in range(ENVS)
    ]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    actions = {a: np.zeros(envs[0].group_size, dtype=np.int64) for a in envs[0].possible_agents}
    done = 0
    t0 = time.perf_counter()
    while done < steps:
        for env in envs:
            truncated = env.step(actions)[3]
            env.state()
            if any(truncated.values()):
                env.reset()
        done += ENVS
    return done / (time.perf_counter() - t0)


def _feature_stream(count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` float64 (16, 12) feature matrices of seed-16's LB under capacity weights."""
    env = MultiAgentLoadBalanceEnv(SCENARIO)
    env.reset(seed=0)
    actions = {a: np.zeros(env.group_size, dtype=np.int64) for a in env.possible_agents}
    n = env.num_servers
    out: list[np.ndarray] = []
    while len(out) < count:
        # state() starts with every LB's feature matrix; LB 0's comes first.
        out.append(env.state()[: n * NUM_FEATURES].reshape(n, NUM_FEATURES).astype(np.float64))
        if any(env.step(actions)[3].values()):
            env.reset()
    return out, env.capacities.copy()


def _latencies_us(
    policy: Policy, stream: list[np.ndarray], capacities: np.ndarray, reps: int
) -> np.ndarray:
    n = stream[0].shape[0]
    policy.reset(PolicyContext(num_servers=n, capacities=capacities))
    active = np.ones(n, dtype=bool)
    times = []
    for _ in range(reps):
        for feats in stream:
            t0 = time.perf_counter_ns()
            policy.decide(feats, active, None)
            times.append(time.perf_counter_ns() - t0)
    return np.array(times[len(stream) // 10 :], dtype=np.float64) / 1e3  # drop the warm-up


@benchmark("train_qmix")
def train_qmix(quick: bool) -> list[BenchResult]:
    """Env steps/s of QMIX training against env-only stepping; decide() µs against SED."""
    import torch
    from marllbd_rl import qmix

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = 6400 if quick else 64_000  # (32 envs x 79 steps: episodes end together)
        early = (("warmup_steps", 100),)
        timed_training("qmix", 640, early, EPISODE_SECONDS)  # warm-up, as train_sac's
        result, value, policy = timed_training(
            "qmix", steps, early, EPISODE_SECONDS, then=lambda trainer: trainer.policy(0)
        )
        one = (*early, ("update_threads", 1))
        _, one_thread, _ = timed_training("qmix", steps, one, EPISODE_SECONDS)
        base = _env_only_rate(steps)
        stream, capacities = _feature_stream(500 if quick else 2000)
        reps = 2 if quick else 5
        qmix_us = _latencies_us(policy, stream, capacities, reps)
        sed_us = _latencies_us(load_policy("sed"), stream, capacities, reps)
    finally:
        torch.set_num_threads(threads)
    cfg = qmix.QMIXConfig()
    return [
        training_result(
            "train_qmix",
            value,
            base,
            result.steps,
            {
                "env_steps_per_update": cfg.train_every,
                "batch_windows": cfg.batch_size,
                "window": cfg.burn_in + cfg.seq_len,
                "torch_threads": 1,
                "one_thread_update_steps_per_s": one_thread,
            },
        ),
        latency_result(
            "qmix_decide",
            qmix_us,
            sed_us,
            "sed",
            servers=16,
            agents=len(policy.agents),
            torch_threads=1,
        ),
    ]
