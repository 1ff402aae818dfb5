"""The yardstick table of docs/benchmarks.md from `make yardstick`'s runs.

Reads DIR/FAMILY/results.csv (one `marllbd eval --family FAMILY --baseline sed` each)
and prints, per FCT statistic, one markdown table: a row per policy, a column per
family, each cell the paired geometric-mean ratio to the baseline over every (sample,
seed) pair with its 95 % interval (marllbd.stats.paired_ratio, as `marllbd eval`),
marked ↓/↑ when the interval excludes 1; then each policy's worst sample (the highest
per-sample geometric-mean ratio on p90).

    python benchmarks/yardstick_table.py runs/yardstick [--baseline sed]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from marllbd.stats import paired_ratio

FAMILIES = ("stationary", "drift", "degraded", "bursty", "multi-lb", "mixed")
STATS = (("mean_fct", "mean FCT"), ("p90_fct", "p90 FCT"), ("p99_fct", "p99 FCT"))

Runs = dict[tuple[str, str, int], dict[str, float]]


def read(path: Path) -> Runs:
    """(scenario, policy, seed) -> its FCT statistics, from one results.csv."""
    with path.open(newline="") as f:
        return {
            (row["scenario"], row["policy"], int(row["seed"])): {
                key: float(row[key]) for key, _ in STATS
            }
            for row in csv.DictReader(f)
        }


def pairs(
    runs: Runs, policy: str, baseline: str, stat: str
) -> dict[str, list[tuple[float, float]]]:
    """Per scenario, the (policy, baseline) values of `stat` over its seeds."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (scenario, name, seed), row in runs.items():
        if name == policy:
            out[scenario].append((row[stat], runs[(scenario, baseline, seed)][stat]))
    return out


def cell(values: list[tuple[float, float]]) -> str:
    est = paired_ratio([v for v, _ in values], [b for _, b in values])
    text = f"{est.mean:.3f} [{est.low:.3f}, {est.high:.3f}]"
    if est.low > 1.0:
        return f"**{text}** ↑"
    if est.high < 1.0:
        return f"**{text}** ↓"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--baseline", default="sed")
    args = parser.parse_args()
    runs = {f: read(args.dir / f / "results.csv") for f in FAMILIES}
    policies = list(dict.fromkeys(p for r in runs.values() for _, p, _ in r))
    policies.remove(args.baseline)
    head = f"| policy | {' | '.join(FAMILIES)} |\n|---|{'---:|' * len(FAMILIES)}"
    for stat, label in STATS:
        print(f"{label}, ratio to {args.baseline}:\n\n{head}")
        for policy in policies:
            cells = [
                cell([p for v in pairs(runs[f], policy, args.baseline, stat).values() for p in v])
                for f in FAMILIES
            ]
            print(f"| {policy} | {' | '.join(cells)} |")
        print()
    print(f"Worst sample, p90 FCT (geometric mean over its seeds), ratio to {args.baseline}:\n")
    print(head)
    for policy in policies:
        worst = []
        for f in FAMILIES:
            per = pairs(runs[f], policy, args.baseline, "p90_fct")
            ratios = {
                s: paired_ratio([v for v, _ in vals], [b for _, b in vals]).mean
                for s, vals in per.items()
            }
            name = max(ratios, key=ratios.__getitem__)
            worst.append(f"{ratios[name]:.3f} ({name.rsplit('-', 1)[1]})")
        print(f"| {policy} | {' | '.join(worst)} |")


if __name__ == "__main__":
    main()
