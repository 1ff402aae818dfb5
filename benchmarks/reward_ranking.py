"""Which reward ranks load-balancing policies the way their mean flow completion time does?

For every shipped scenario preset and seed, each fixed policy (sed, wcmp, ecmp,
lsq, gsq, and random weights under SED) drives every LB node of
MultiAgentLoadBalanceEnv for one episode.  A custom reward_fn records, each
control interval, every candidate reward: each fairness metric (identity
shaping) of each candidate feature, over the features averaged across the LB
nodes, i.e. exactly the team reward the env would return for that
reward_metric/reward_field.  After the episode the engine drains as `marllbd eval`
does (marllbd.training.evaluate: DRAIN_LIMIT, unfinished and rejected flows at
REJECT_PENALTY) and the run's mean FCT over every flow is taken.  A reward is good
if a policy with a higher mean reward has a lower mean FCT: the score is Kendall's
tau-b between the policies' mean reward and their negated mean FCT (1: same order).

    python benchmarks/reward_ranking.py [--seeds 3] [--duration 60] [--scenarios ...]

Prints a markdown report (docs/reward.md holds one).  Deterministic for given
arguments.  tests/envs/test_reward_ranking.py checks that a run here measures what
evaluate.run measures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from marllbd import fairness
from marllbd.envs import MultiAgentLoadBalanceEnv
from marllbd.envs.reward import DEFAULT_REWARD_FIELD, RewardSpec
from marllbd.sim.engine import REJECT_PENALTY
from marllbd.sim.scenario import Scenario, load_scenario, presets
from marllbd.training.evaluate import DRAIN_LIMIT, policy_seed

SCENARIOS = presets()
POLICIES: dict[str, tuple[str, str]] = {
    # name: (dispatch rule, weight base); the action is 0 (level 1) except for random.
    "sed": ("sed", "capacity"),
    "wcmp": ("wcmp", "capacity"),
    "ecmp": ("ecmp", "uniform"),
    "lsq": ("lsq", "uniform"),
    "gsq": ("gsq", "capacity"),
    "random": ("sed", "capacity"),
}
"""The marllbd.policies heuristics of the same names (static weights: ones or the
capacities) and a seeded random policy: capacity x 3**U(-1, 1) per server and interval."""
FIELDS = ("dur_mean", "dur_decayed_mean", "fct_mean", "fct_decayed_mean", "fct_decayed_p90")
METRICS = tuple(sorted(fairness.METRICS))
Candidate = tuple[str, str]  # (metric, field)
CANDIDATES: tuple[Candidate, ...] = tuple((m, f) for m in METRICS for f in FIELDS)


@dataclass(frozen=True)
class Run:
    scenario: str
    policy: str
    seed: int
    """The env's reset seed."""
    engine_seed: int
    """The scenario seed of the episode's engine (evaluate.run's seed for the same run)."""
    mean_fct: float
    rewards: dict[Candidate, float]
    """Mean per-interval reward of each candidate over the episode's intervals."""


class _Recorder:
    """A reward_fn that records every candidate's reward and returns the first one."""

    def __init__(self) -> None:
        self.specs = [RewardSpec(m, f) for m, f in CANDIDATES]
        self.rows: list[list[float]] = []

    def __call__(self, features: np.ndarray, active: np.ndarray) -> float:
        row = [spec(features) for spec in self.specs]
        self.rows.append(row)
        return row[0]


def run_policy(scenario: Scenario, policy: str, seed: int) -> Run:
    """One episode of `policy` on `scenario` (env seed `seed`), then drained."""
    rule, base = POLICIES[policy]
    recorder = _Recorder()
    sc = scenario if rule == "gsq" else scenario.replace(dispatch=rule)
    env = MultiAgentLoadBalanceEnv(
        sc,
        action_type="continuous",
        weight_base=base,
        reward_metric="custom",
        reward_fn=recorder,
    )
    env.reset(seed=seed)
    engine = env.engine
    if rule == "gsq":  # an oracle the engine knows but a scenario cannot name
        # (the reset interval, 1 of duration / control_interval, ran with SED)
        for lb in range(sc.lb_nodes):
            engine.set_rule(lb, "gsq")
    rng = np.random.default_rng(policy_seed(seed, 0))
    zero = {a: np.zeros(env.action_space(a).shape) for a in env.possible_agents}
    while env.agents:
        if policy == "random":
            actions = {a: rng.uniform(-1.0, 1.0, size=v.shape) for a, v in zero.items()}
        else:
            actions = zero
        env.step(actions)
    # Drain as marllbd eval does: no new arrivals, the last weights, up to DRAIN_LIMIT.
    while not engine.drained and engine.t < sc.duration + DRAIN_LIMIT - 1e-9:
        engine.advance()
    fct = np.where(np.isnan(engine.f_fct), REJECT_PENALTY, engine.f_fct)
    means = np.mean(recorder.rows, axis=0)
    return Run(
        scenario=scenario.name,
        policy=policy,
        seed=seed,
        engine_seed=engine.scenario.seed,
        mean_fct=float(fct.mean()),
        rewards={c: float(v) for c, v in zip(CANDIDATES, means, strict=True)},
    )


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences (ties count in neither direction)."""
    concordant = discordant = tie_x = tie_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tie_x += 1
        elif dy == 0:
            tie_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    n0 = concordant + discordant
    denom = np.sqrt((n0 + tie_x) * (n0 + tie_y))
    return float((concordant - discordant) / denom) if denom else 0.0


def measure(
    scenarios: Sequence[str], seeds: Sequence[int], *, duration: float | None = None
) -> list[Run]:
    runs = []
    for name in scenarios:
        sc = load_scenario(name)
        if duration is not None:
            sc = sc.replace(duration=duration)
        for seed in seeds:
            for policy in POLICIES:
                runs.append(run_policy(sc, policy, seed))
                print(f"{name} seed {seed} {policy}: fct {runs[-1].mean_fct:.4f}", file=sys.stderr)
    return runs


def scores(runs: Sequence[Run]) -> dict[Candidate, dict[str, float]]:
    """Per candidate: Kendall tau per scenario (on the seed means), their mean, and the
    mean over (scenario, seed) pairs of the per-seed tau."""
    out: dict[Candidate, dict[str, float]] = {}
    scen = sorted({r.scenario for r in runs})
    policies = list(POLICIES)
    for cand in CANDIDATES:
        row: dict[str, float] = {}
        per_seed = []
        for s in scen:
            mine = [r for r in runs if r.scenario == s]
            fct = [np.mean([r.mean_fct for r in mine if r.policy == p]) for p in policies]
            rew = [np.mean([r.rewards[cand] for r in mine if r.policy == p]) for p in policies]
            row[s] = kendall_tau(rew, [-f for f in fct])
            for seed in sorted({r.seed for r in mine}):
                by = {r.policy: r for r in mine if r.seed == seed}
                per_seed.append(
                    kendall_tau(
                        [by[p].rewards[cand] for p in policies],
                        [-by[p].mean_fct for p in policies],
                    )
                )
        row["mean"] = float(np.mean([row[s] for s in scen]))
        row["per_seed"] = float(np.mean(per_seed))
        out[cand] = row
    return out


def report(runs: Sequence[Run], seeds: Sequence[int], duration: float | None) -> str:
    scen = sorted({r.scenario for r in runs})
    policies = list(POLICIES)
    sc = scores(runs)
    lines = [
        f"Seeds {', '.join(map(str, seeds))}; "
        f"duration {'as in each preset' if duration is None else f'{duration:g} s'}.",
        "",
        "Kendall tau-b between each reward's policy order and the mean-FCT order "
        "(1 = same order), per scenario on the seed means, their mean, and the mean "
        "of the per-seed taus:",
        "",
        "| metric | field | " + " | ".join(scen) + " | mean | per seed |",
        "|---|---|" + "---|" * (len(scen) + 2),
    ]
    for cand, row in sorted(sc.items(), key=lambda kv: -kv[1]["mean"]):
        cells = " | ".join(f"{row[s]:+.2f}" for s in [*scen, "mean", "per_seed"])
        lines.append(f"| {cand[0]} | {cand[1]} | {cells} |")

    def table(title: str, value: Callable[[Run], float]) -> list[str]:
        out = ["", title, "", "| scenario | " + " | ".join(policies) + " |"]
        out.append("|---|" + "---|" * len(policies))
        for s in scen:
            means = [
                np.mean([value(r) for r in runs if r.scenario == s and r.policy == p])
                for p in policies
            ]
            out.append(f"| {s} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
        return out

    lines += table("Mean FCT (s) per policy, mean over seeds:", lambda r: r.mean_fct)
    for field in ("dur_decayed_mean", "fct_decayed_mean"):
        lines += table(
            f"Mean per-interval reward, Jain of {field}:",
            lambda r, f=field: r.rewards[("jain", f)],
        )
    lines += ["", f"(The default reward field today: {DEFAULT_REWARD_FIELD}.)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    ap.add_argument(
        "--duration", type=float, default=None, help="episode seconds (default: the preset's)"
    )
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds: expected an integer >= 1, got {args.seeds}")
    seeds = list(range(args.seeds))
    runs = measure(args.scenarios, seeds, duration=args.duration)
    print(report(runs, seeds, args.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
