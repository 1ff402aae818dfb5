"""Evaluation reports: results CSV, markdown tables (per seed, and mean ± 95 % CI over
seeds), a JSON document, FCT CDF and load plots.

The CSV holds only simulated quantities, so the same evaluation writes the
same bytes; wall-clock times appear in the markdown tables and JSON only.  Plots are
drawn on matplotlib's Agg canvas without pyplot (no global figure state).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from marllbd.sim.scenario import Scenario
from marllbd.stats import Estimate
from marllbd.training.evaluate import CI_FIELDS, SUMMARY_FIELDS, Result, Summary, summary

CSV_COLUMNS = (
    "policy",
    "seed",
    "flows",
    "mean_fct",
    "p50_fct",
    "p90_fct",
    "p95_fct",
    "p99_fct",
    "jain",
    "reward",
    "reject_rate",
    "unfinished",
)
"""results.csv columns; FCTs in seconds, reject_rate a fraction."""


def write_csv(results: Sequence[Result], path: Path) -> None:
    """One row per (policy, seed), floats in full precision."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([_cell(getattr(r, column)) for column in CSV_COLUMNS])


def _cell(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def runs_markdown(results: Sequence[Result]) -> str:
    """A markdown table, one row per (policy, seed) in run order."""
    lines = [
        "| policy | seed | flows | mean FCT (ms) | p90 FCT (ms) | p99 FCT (ms) "
        "| Jain (util.) | reward | rejected | unfinished | wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.policy} | {r.seed} | {r.flows} | {r.mean_fct * 1e3:.1f}"
            f" | {r.p90_fct * 1e3:.1f} | {r.p99_fct * 1e3:.1f} | {r.jain:.4f} | {r.reward:.4f}"
            f" | {r.reject_rate:.2%} | {r.unfinished} | {r.wall_seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[Summary]) -> str:
    """A markdown table, one row per policy: means over seeds, mean/p90/p99 FCT with the
    half-width of their 95 % t interval; mean and p90 FCT also relative to the best."""
    best_mean = min(s.mean_fct for s in rows)
    best_p90 = min(s.p90_fct for s in rows)
    lines = [
        "| policy | seeds | mean FCT (ms) | vs best | p90 FCT (ms) | vs best "
        "| p95 FCT (ms) | p99 FCT (ms) | Jain (util.) | reward | rejected | unfinished "
        "| wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        lines.append(
            f"| {s.policy} | {len(s.seeds)}"
            f" | {_ms(s.mean_fct_ci)} | {_relative(s.mean_fct, best_mean)}"
            f" | {_ms(s.p90_fct_ci)} | {_relative(s.p90_fct, best_p90)}"
            f" | {s.p95_fct * 1e3:.1f} | {_ms(s.p99_fct_ci)} | {s.jain:.4f} | {s.reward:.4f}"
            f" | {s.reject_rate:.2%} | {s.unfinished:g} | {s.wall_seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _ms(e: Estimate) -> str:
    """The mean "12.3 ± 0.4" in ms; the value alone when the interval is unknown (one seed)."""
    if math.isnan(e.half_width):
        return f"{e.mean * 1e3:.1f}"
    return f"{e.mean * 1e3:.1f} ± {e.half_width * 1e3:.1f}"


def tables(results: Sequence[Result]) -> str:
    """The per-seed table, then the table of means ± 95 % CI over seeds (what `eval` prints)."""
    return (
        f"Per seed:\n\n{runs_markdown(results)}\n"
        "Mean over seeds, ± half-width of the 95 % confidence interval "
        f"(Student's t, seeds - 1 degrees of freedom):\n\n{markdown(summary(results))}"
    )


def to_json(results: Sequence[Result], scenario: Scenario) -> dict[str, Any]:
    """The evaluation as one JSON-ready object: "runs" (per seed) and "summary" (per policy,
    each CI field as {"mean", "low", "high", "n", "confidence"}; bounds null for one seed)."""

    def number(x: float) -> float | None:
        return None if math.isnan(x) else x

    runs = [
        {**{c: getattr(r, c) for c in CSV_COLUMNS}, "wall_seconds": r.wall_seconds} for r in results
    ]
    rows = []
    for s in summary(results):
        row: dict[str, Any] = {
            "policy": s.policy,
            "seeds": list(s.seeds),
            **{f: getattr(s, f) for f in SUMMARY_FIELDS},
        }
        for f in CI_FIELDS:
            e: Estimate = getattr(s, f"{f}_ci")
            row[f"{f}_ci"] = {
                "mean": e.mean,
                "low": number(e.low),
                "high": number(e.high),
                "n": e.n,
                "confidence": e.confidence,
            }
        rows.append(row)
    return {"scenario": scenario.name, "runs": runs, "summary": rows}


def _relative(value: float, best: float) -> str:
    return f"{value / best:.2f}×" if best > 0 else "-"


def plot_fct_cdf(results: Sequence[Result], title: str, path: Path) -> None:
    """The empirical CDF of every policy's FCTs (all seeds pooled), log-scaled x axis."""
    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for policy in dict.fromkeys(r.policy for r in results):
        fct = np.sort(np.concatenate([r.fct for r in results if r.policy == policy]))
        if fct.size:
            ax.step(fct, np.arange(1, fct.size + 1) / fct.size, where="post", label=policy)
    ax.set_xscale("log")
    ax.set_xlabel("flow completion time (s)")
    ax.set_ylabel("fraction of flows")
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_load(result: Result, scenario: Scenario, title: str, path: Path) -> None:
    """Per-server utilization over time, as a 1 s moving average of the control intervals;
    a dashed line marks the end of arrivals (the drain follows)."""
    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = max(1, round(1.0 / scenario.control_interval))
    kernel = np.ones(width)
    # Divide by the samples under the window so the ends are not pulled towards zero.
    count = np.convolve(np.ones(result.t.size), kernel, mode="same")
    for i in range(result.utilization.shape[1]):
        smooth = np.convolve(result.utilization[:, i], kernel, mode="same") / count
        workers = scenario.servers[i].workers
        ax.plot(
            result.t, smooth, lw=0.9, label=f"server {i}: {workers} worker{'s' * (workers > 1)}"
        )
    ax.axvline(scenario.duration, color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("utilization, 1 s moving average")
    ax.set_ylim(0.0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="x-small", ncol=2 if len(scenario.servers) > 8 else 1)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def slugs(policies: Sequence[str]) -> dict[str, str]:
    """A distinct file-name-safe name per policy spec ("sac-gru:runs/a" → "sac-gru_runs_a")."""
    out: dict[str, str] = {}
    for spec in policies:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "policy"
        slug, i = base, 1
        while slug in out.values():
            i += 1
            slug = f"{base}-{i}"
        out[spec] = slug
    return out


def write(results: Sequence[Result], scenario: Scenario, out: Path) -> str:
    """Write results.csv, results.md, fct_cdf.png and load_<policy>.png into `out`.

    Returns the markdown (`tables`).  The load plot of a policy shows its first seed.
    """
    write_csv(results, out / "results.csv")
    table = tables(results)
    (out / "results.md").write_text(table, encoding="utf-8")
    seeds = sorted({r.seed for r in results})
    plot_fct_cdf(
        results,
        f"{scenario.name}: FCT over seeds {', '.join(map(str, seeds))}",
        out / "fct_cdf.png",
    )
    names = slugs(list(dict.fromkeys(r.policy for r in results)))
    for policy, slug in names.items():
        first = next(r for r in results if r.policy == policy)
        plot_load(
            first,
            scenario,
            f"{scenario.name}: {policy}, seed {first.seed}",
            out / f"load_{slug}.png",
        )
    return table
