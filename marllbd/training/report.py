"""Evaluation reports: results CSV, markdown tables (per seed, mean ± 95 % CI over seeds,
and with a baseline the paired ratios to it), a JSON document, FCT CDF, load and ratio plots.

With runs on several scenarios the tables gain a scenario column; with one they
read as they always have.

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
from marllbd.training.evaluate import (
    CI_FIELDS,
    SUMMARY_FIELDS,
    Ratio,
    Result,
    Summary,
    compare,
    summary,
)

CSV_COLUMNS = (
    "scenario",
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
    """One row per (scenario, policy, seed), floats in full precision."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([_cell(getattr(r, column)) for column in CSV_COLUMNS])


def _cell(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _scenario_column(names: Sequence[str]) -> bool:
    """Whether a table shows a scenario column: when its rows span several scenarios."""
    return len(set(names)) > 1


def runs_markdown(results: Sequence[Result]) -> str:
    """A markdown table, one row per (scenario, policy, seed) in run order."""
    with_scenario = _scenario_column([r.scenario for r in results])
    lines = [
        f"| {'scenario | ' * with_scenario}policy | seed | flows | mean FCT (ms) "
        "| p90 FCT (ms) | p99 FCT (ms) | Jain (util.) | reward | rejected | unfinished "
        "| wall (s) |",
        f"|{'---|' * with_scenario}---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.scenario + ' | ' if with_scenario else ''}"
            f"{r.policy} | {r.seed} | {r.flows} | {r.mean_fct * 1e3:.1f}"
            f" | {r.p90_fct * 1e3:.1f} | {r.p99_fct * 1e3:.1f} | {r.jain:.4f} | {r.reward:.4f}"
            f" | {r.reject_rate:.2%} | {r.unfinished} | {r.wall_seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[Summary]) -> str:
    """A markdown table, one row per (scenario, policy): means over seeds, mean/p90/p99 FCT
    with the half-width of their 95 % t interval; mean and p90 FCT also relative to the
    best policy on the same scenario."""
    with_scenario = _scenario_column([s.scenario for s in rows])
    best_mean = {sc: min(s.mean_fct for s in rows if s.scenario == sc) for sc in _names(rows)}
    best_p90 = {sc: min(s.p90_fct for s in rows if s.scenario == sc) for sc in _names(rows)}
    lines = [
        f"| {'scenario | ' * with_scenario}policy | seeds | mean FCT (ms) | vs best "
        "| p90 FCT (ms) | vs best | p95 FCT (ms) | p99 FCT (ms) | Jain (util.) | reward "
        "| rejected | unfinished | wall (s) |",
        f"|{'---|' * with_scenario}---|{'---:|' * 12}",
    ]
    for s in rows:
        lines.append(
            f"| {s.scenario + ' | ' if with_scenario else ''}{s.policy} | {len(s.seeds)}"
            f" | {_ms(s.mean_fct_ci)} | {_relative(s.mean_fct, best_mean[s.scenario])}"
            f" | {_ms(s.p90_fct_ci)} | {_relative(s.p90_fct, best_p90[s.scenario])}"
            f" | {s.p95_fct * 1e3:.1f} | {_ms(s.p99_fct_ci)} | {s.jain:.4f} | {s.reward:.4f}"
            f" | {s.reject_rate:.2%} | {s.unfinished:g} | {s.wall_seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _names(rows: Sequence[Summary | Result]) -> list[str]:
    """The scenarios' names in first-seen order."""
    return list(dict.fromkeys(r.scenario for r in rows))


RATIO_MARK_NOTE = (
    "Bold with ↓ or ↑: the 95 % interval excludes 1, a difference beyond the noise "
    "between pairs (↓ lower FCT than the baseline, ↑ higher); unmarked: within it."
)
"""The footnote line under the ratio table, saying what its marks mean."""


def ratios_markdown(ratios: Sequence[Ratio]) -> str:
    """A markdown table, one row per (scenario, policy): each FCT's geometric-mean ratio to
    the baseline with its 95 % interval, marked when the interval excludes 1; the pooled
    rows ("all scenarios") only when there are several scenarios; then RATIO_MARK_NOTE."""
    per_scenario = [r for r in ratios if r.scenario is not None]
    several = _scenario_column([r.scenario for r in per_scenario if r.scenario is not None])
    shown = ratios if several else per_scenario
    lines = [
        "| scenario | policy | pairs | mean FCT | p90 FCT | p99 FCT |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in shown:
        cells = " | ".join(_ratio(getattr(r, f)) for f in CI_FIELDS)
        name = "all scenarios" if r.scenario is None else r.scenario
        lines.append(f"| {name} | {r.policy} | {r.pairs} | {cells} |")
    return "\n".join(lines) + f"\n\n{RATIO_MARK_NOTE}\n"


def _ratio(e: Estimate) -> str:
    """ "0.912× [0.871, 0.955]", in bold with ↓/↑ when the interval excludes 1; the ratio
    alone when the interval is unknown (one pair)."""
    if math.isnan(e.half_width):
        return f"{e.mean:.3f}×"
    text = f"{e.mean:.3f}× [{e.low:.3f}, {e.high:.3f}]"
    if not e.excludes(1.0):
        return text
    return f"**{text}** {'↓' if e.high < 1.0 else '↑'}"


def _ms(e: Estimate) -> str:
    """The mean "12.3 ± 0.4" in ms; the value alone when the interval is unknown (one seed)."""
    if math.isnan(e.half_width):
        return f"{e.mean * 1e3:.1f}"
    return f"{e.mean * 1e3:.1f} ± {e.half_width * 1e3:.1f}"


def tables(results: Sequence[Result], baseline: str | None = None) -> str:
    """The per-seed table, then the table of means ± 95 % CI over seeds, then with a
    baseline the table of paired ratios to it (what `eval` prints)."""
    text = (
        f"Per seed:\n\n{runs_markdown(results)}\n"
        "Mean over seeds, ± half-width of the 95 % confidence interval "
        f"(Student's t, seeds - 1 degrees of freedom):\n\n{markdown(summary(results))}"
    )
    if baseline is None:
        return text
    return (
        f"{text}\nRatio to {baseline}, paired by (scenario, seed): geometric mean "
        f"[95 % confidence interval] (Student's t on the log ratios, pairs - 1 degrees of "
        f"freedom):\n\n{ratios_markdown(compare(results, baseline))}"
    )


def _scenarios(scenarios: Scenario | Sequence[Scenario]) -> list[Scenario]:
    return [scenarios] if isinstance(scenarios, Scenario) else list(scenarios)


def _estimate_json(e: Estimate) -> dict[str, Any]:
    """{"mean", "low", "high", "n", "confidence"}, bounds null when unknown."""

    def number(x: float) -> float | None:
        return None if math.isnan(x) else x

    return {
        "mean": e.mean,
        "low": number(e.low),
        "high": number(e.high),
        "n": e.n,
        "confidence": e.confidence,
    }


def to_json(
    results: Sequence[Result],
    scenarios: Scenario | Sequence[Scenario],
    baseline: str | None = None,
) -> dict[str, Any]:
    """The evaluation as one JSON-ready object: "scenarios" (names), "scenario" (the name,
    null for several), "runs" (per scenario, policy and seed), "summary" (per scenario and
    policy, each CI field as {"mean", "low", "high", "n", "confidence"}; bounds null for
    one seed) and with a baseline "baseline" and "ratios" (compare's rows, scenario null
    for the pooled ones, each FCT field an interval as above)."""
    names = [sc.name for sc in _scenarios(scenarios)]
    runs = [
        {**{c: getattr(r, c) for c in CSV_COLUMNS}, "wall_seconds": r.wall_seconds} for r in results
    ]
    rows = []
    for s in summary(results):
        row: dict[str, Any] = {
            "policy": s.policy,
            "scenario": s.scenario,
            "seeds": list(s.seeds),
            **{f: getattr(s, f) for f in SUMMARY_FIELDS},
        }
        for f in CI_FIELDS:
            row[f"{f}_ci"] = _estimate_json(getattr(s, f"{f}_ci"))
        rows.append(row)
    doc: dict[str, Any] = {
        "scenario": names[0] if len(names) == 1 else None,
        "scenarios": names,
        "runs": runs,
        "summary": rows,
    }
    if baseline is not None:
        doc["baseline"] = baseline
        doc["ratios"] = [
            {
                "policy": r.policy,
                "baseline": r.baseline,
                "scenario": r.scenario,
                "pairs": r.pairs,
                **{f: _estimate_json(getattr(r, f)) for f in CI_FIELDS},
            }
            for r in compare(results, baseline)
        ]
    return doc


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


def plot_ratios(ratios: Sequence[Ratio], title: str, path: Path) -> None:
    """Each policy's ratio to the baseline on mean and p90 FCT, one point per scenario
    (policies side by side, bars the 95 % interval) and the pooled ratio last; log y axis,
    a line at 1 (the baseline)."""
    scenarios = list(dict.fromkeys(r.scenario for r in ratios if r.scenario is not None))
    policies = list(dict.fromkeys(r.policy for r in ratios))
    slots = [*scenarios, None]
    labels = [*scenarios, "all scenarios"]
    fig = Figure(figsize=(max(7.0, 0.45 * len(slots) * max(1, len(policies)) ** 0.5 + 3), 7.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    by = {(r.scenario, r.policy): r for r in ratios}
    width = 0.8 / max(1, len(policies))
    for ax, field, name in zip(axes, ("mean_fct", "p90_fct"), ("mean FCT", "p90 FCT"), strict=True):
        for j, policy in enumerate(policies):
            xs, ys, lo, hi = [], [], [], []
            for i, slot in enumerate(slots):
                r = by.get((slot, policy))
                if r is None:
                    continue
                e: Estimate = getattr(r, field)
                xs.append(i + (j - (len(policies) - 1) / 2) * width)
                ys.append(e.mean)
                known = not math.isnan(e.half_width)
                lo.append(e.mean - e.low if known else 0.0)
                hi.append(e.high - e.mean if known else 0.0)
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=4, capsize=2, lw=0.9, label=policy)
        ax.axhline(1.0, color="0.3", lw=0.9)
        if len(slots) > 1:
            ax.axvline(len(slots) - 1.5, color="0.6", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{name} / {ratios[0].baseline}" if ratios else name)
        ax.grid(True, which="both", axis="y", alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    axes[0].set_title(title)
    axes[1].set_xticks(range(len(slots)), labels, rotation=45 if len(slots) > 4 else 0,
                       ha="right" if len(slots) > 4 else "center", fontsize="small")  # fmt: skip
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


def write(
    results: Sequence[Result],
    scenarios: Scenario | Sequence[Scenario],
    out: Path,
    baseline: str | None = None,
) -> str:
    """Write results.csv, results.md, fct_cdf.png, load_<policy>.png and with a baseline
    ratios.png into `out`.

    Returns the markdown (`tables`).  The load plot of a policy shows its first run
    (first scenario, first seed); the FCT CDF pools every scenario and seed.
    """
    by_name = {sc.name: sc for sc in _scenarios(scenarios)}
    write_csv(results, out / "results.csv")
    table = tables(results, baseline)
    (out / "results.md").write_text(table, encoding="utf-8")
    seeds = sorted({r.seed for r in results})
    names = _names(results)
    what = names[0] if len(names) == 1 else f"{len(names)} scenarios"
    plot_fct_cdf(
        results,
        f"{what}: FCT over seeds {', '.join(map(str, seeds))}",
        out / "fct_cdf.png",
    )
    for policy, slug in slugs(list(dict.fromkeys(r.policy for r in results))).items():
        first = next(r for r in results if r.policy == policy)
        plot_load(
            first,
            by_name[first.scenario],
            f"{first.scenario}: {policy}, seed {first.seed}",
            out / f"load_{slug}.png",
        )
    if baseline is not None:
        plot_ratios(
            compare(results, baseline),
            f"{what}: ratio to {baseline}, paired by (scenario, seed)",
            out / "ratios.png",
        )
    return table
