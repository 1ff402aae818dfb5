"""Rollouts: several LoadBalanceEnv instances stepped in lockstep, and engine-level evaluation.

`EnvVector` lets a trainer batch one network call over all its simulators.
`evaluate` runs a `Policy` through the bare engine exactly as the daemon
would (features → decide → weights), on held-out scenario seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from marllbd import fairness, features
from marllbd.envs import LoadBalanceEnv
from marllbd.policies import GroundTruth, Policy, PolicyContext
from marllbd.sim.engine import Engine
from marllbd.sim.scenario import Scenario


@dataclass(frozen=True)
class VectorStep:
    """One lockstep step of every env; `obs` is each env's observation before any reset."""

    obs: np.ndarray  # float32 (E, n, 12)
    reward: np.ndarray  # float64 (E,)
    terminated: np.ndarray  # bool (E,)
    truncated: np.ndarray  # bool (E,)
    infos: tuple[dict[str, Any], ...]

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class EnvVector:
    """`count` envs from `make`, seeded once from `seed`; later episodes continue each env's RNG."""

    def __init__(self, make: Callable[[], LoadBalanceEnv], count: int, seed: int) -> None:
        if count < 1:
            raise ValueError(f"envs: expected at least one simulator instance, got {count}")
        self.envs = [make() for _ in range(count)]
        self.seeds = [
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(count)
        ]

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        """First observations of every env, (E, n, 12) float32."""
        return np.stack(
            [env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds, strict=True)]
        )

    def reset_one(self, i: int) -> np.ndarray:
        """Start env i's next episode (its RNG carries on from the last one)."""
        return self.envs[i].reset()[0]

    def step(self, actions: np.ndarray) -> VectorStep:
        results = [env.step(a) for env, a in zip(self.envs, actions, strict=True)]
        return VectorStep(
            obs=np.stack([r[0] for r in results]),
            reward=np.array([r[1] for r in results]),
            terminated=np.array([r[2] for r in results]),
            truncated=np.array([r[3] for r in results]),
            infos=tuple(r[4] for r in results),
        )


@dataclass(frozen=True)
class Evaluation:
    """Flow completion times over the evaluated runs: means over seeds of per-run figures."""

    fct_mean: float
    fct_p90: float
    fct_p99: float
    fairness: float
    """Jain index of the per-server decayed mean flow duration, averaged over steps."""
    seeds: tuple[int, ...]


def evaluate(
    policy: Policy, scenario: Scenario, seeds: Sequence[int], *, lb: int = 0, tau: float = 1.0
) -> Evaluation:
    """Run `policy` on LB node `lb` of `scenario` for each seed through the engine (train = serve).

    Other LB nodes keep static capacity weights.  The policy sees the same
    features the env and the daemon compute, and its weights are applied with
    its own dispatch rule.
    """
    if not seeds:
        raise ValueError("eval_seeds: expected at least one held-out seed")
    n = len(scenario.servers)
    capacities = np.array([s.workers for s in scenario.servers], dtype=np.float64)
    col = features.FEATURE_NAMES.index("dur_decayed_mean")
    jain = fairness.metric("jain").kernel
    means, p90s, p99s, fair = [], [], [], []
    rules = [policy.dispatch if i == lb else scenario.dispatch for i in range(scenario.lb_nodes)]
    for seed in seeds:
        engine = Engine(scenario.replace(seed=seed), rule=rules)
        policy.reset(PolicyContext(num_servers=n, capacities=capacities.copy(), seed=seed))
        weights = capacities.copy()
        feats = np.zeros((n, features.NUM_FEATURES))
        scores = []
        while not engine.done:
            engine.set_weights(lb, weights)
            step = engine.step(copy=False)
            obs = step.observations[lb]
            features.compute(obs, weights, tau=tau, out=feats)
            scores.append(float(jain(feats[None, :, col])[0]))
            truth = None
            if policy.needs_ground_truth:
                t = step.truth
                truth = GroundTruth(
                    utilization=t.utilization, queue=t.queue, capacities=t.capacities
                )
            weights = np.asarray(policy.decide(feats, obs.active, truth), dtype=np.float64)
        fct = engine.fct()
        means.append(float(fct.mean()) if fct.size else float("nan"))
        p90s.append(float(np.quantile(fct, 0.9)) if fct.size else float("nan"))
        p99s.append(float(np.quantile(fct, 0.99)) if fct.size else float("nan"))
        fair.append(float(np.mean(scores)))
    return Evaluation(
        fct_mean=float(np.mean(means)),
        fct_p90=float(np.mean(p90s)),
        fct_p99=float(np.mean(p99s)),
        fairness=float(np.mean(fair)),
        seeds=tuple(seeds),
    )
