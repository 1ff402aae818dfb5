"""`marllbd sweep`: a hyperparameter search of one algorithm on Ray Tune, ASHA-stopped.

Each trial is one `marllbd train` run (marllbd.training.Trainer) with its sampled
hyperparameters over the fixed ones; it reports each periodic evaluation's paired FCT
ratio to the evaluation baseline (static SED by default: eval/ratio_mean_fct, the
time-to-quality figure) to Tune, and ASHA stops the trials that are behind at each
rung.  Every trial trains with the same seed, so trials differ only by their
hyperparameters; the search's own draws take `search_seed`, so a sweep is
reproducible.

A search space is a list of `NAME=KIND(ARGS)` items:

    choice(a, b, ...)     one of the values (TOML values: 32, 1e-3, true, "text")
    uniform(lo, hi)       a float in [lo, hi]
    loguniform(lo, hi)    a float whose log is uniform, 0 < lo < hi
    randint(lo, hi)       an integer in [lo, hi)   (Tune's convention)

The colon form does the same, several items to one comma-separated string:

    --space 'actor_lr=loguniform:1e-4:1e-3,hidden=choice:64:128'

`parse_space` needs no Ray: the CLI checks the space (and the names, through the
algorithm's own hyperparameter parser) before a cluster starts.
"""

from __future__ import annotations

import csv
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from marllbd.distributed.cluster import DistributedError, ray_module
from marllbd.training.errors import TrainingError
from marllbd.training.trainer import TrainConfig, Trainer

METRIC = "ratio_mean_fct"
"""What the search minimises: the evaluation's mean FCT over the baseline's, paired by seed."""
KINDS = ("choice", "uniform", "loguniform", "randint")
_ITEM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's search range."""

    name: str
    kind: str
    values: tuple[Any, ...]
    """choice: its values; the other kinds: (lo, hi)."""

    def example(self) -> Any:
        """A value of the range (its first choice, else its low end) to check the name with."""
        return self.values[0]

    def tune_domain(self, tune: Any) -> Any:
        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)


def _items(given: Sequence[str]) -> list[str]:
    """The NAME=KIND(ARGS) items of --space values, the colon form rewritten to it."""
    items: list[str] = []
    for value in given:
        if "(" in value:
            items.append(value)
            continue
        for item in value.split(","):
            name, eq, rest = item.partition("=")
            kind, colon, args = rest.partition(":")
            items.append(f"{name}={kind}({args.replace(':', ', ')})" if eq and colon else item)
    return items


def parse_space(given: Sequence[str]) -> list[Dimension]:
    """The dimensions of `NAME=KIND(ARGS)` items (or `NAME=KIND:A:B,...` strings);
    ValueError naming the bad item."""
    space: list[Dimension] = []
    for item in _items(given):
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(
                f"--space: expected NAME=KIND(ARGS) or NAME=KIND:A:B with KIND one of "
                f"{', '.join(KINDS)}, "
                f"got {item!r}"
            )
        name, kind, raw = m.groups()
        if kind not in KINDS:
            raise ValueError(f"--space {name}: unknown kind {kind!r}; expected one of "
                             f"{', '.join(KINDS)}")  # fmt: skip
        if any(d.name == name for d in space):
            raise ValueError(f"--space {name}: given twice")
        try:
            values = tuple(tomllib.loads(f"v = [{raw}]")["v"])
        except tomllib.TOMLDecodeError:
            raise ValueError(
                f"--space {name}: {kind}'s arguments must be comma-separated TOML values, "
                f"got {raw!r}"
            ) from None
        space.append(_dimension(name, kind, values))
    if not space:
        raise ValueError("--space: expected at least one NAME=KIND(ARGS)")
    return space


def _dimension(name: str, kind: str, values: tuple[Any, ...]) -> Dimension:
    where = f"--space {name}: {kind}"
    if kind == "choice":
        if not values:
            raise ValueError(f"{where} needs at least one value")
        return Dimension(name, kind, values)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if len(values) != 2 or not numbers or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where} expects two finite numbers (lo, hi), got {list(values)}")
    lo, hi = values
    if not lo < hi:
        raise ValueError(f"{where} expects lo < hi, got {lo} and {hi}")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where} expects 0 < lo, got {lo}")
    if kind == "randint" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise ValueError(f"{where} expects integers, got {lo} and {hi}")
    return Dimension(name, kind, (lo, hi))


def check(config: TrainConfig, space: Sequence[Dimension]) -> None:
    """TrainingError unless a trial of `config` with the space's example values builds
    (the scenario loads, every name is a hyperparameter of the algorithm, values fit)."""
    overlap = sorted({d.name for d in space} & {name for name, _ in config.hyper})
    if overlap:
        raise TrainingError(f"--space {overlap[0]}: also fixed by --hyper; give it once")
    Trainer(_trial_config(config, {d.name: d.example() for d in space}, config.out))


def _trial_config(base: TrainConfig, sampled: Mapping[str, Any], out: Path) -> TrainConfig:
    return replace(base, out=out, hyper=(*base.hyper, *sampled.items()), progress=False)


@dataclass(frozen=True)
class Trial:
    """One trial's outcome: its sampled hyperparameters and its last evaluation."""

    trial_id: str
    hyper: dict[str, Any]
    step: int
    """The step of its last evaluation (where ASHA stopped it, or the end)."""
    ratio_mean_fct: float
    ratio_p90_fct: float
    fct_mean: float
    out: Path


def _trial(sampled: dict[str, Any], base: TrainConfig, root: str) -> None:  # pragma: no cover
    """One trial, inside a Ray worker (covered by tests/distributed, in another process)."""
    from ray import tune

    trial_dir = Path(root) / "trials" / tune.get_context().get_trial_id()

    def report(trainer: Trainer, info: Mapping[str, Any]) -> None:
        if info["event"] != "eval":
            return
        ratio = info["ratio"]
        tune.report(
            {
                METRIC: ratio.mean_fct.mean,
                "ratio_p90_fct": ratio.p90_fct.mean,
                "fct_mean": info["summary"].mean_fct,
                "step": info["step"],
                "out": str(trial_dir),
            }
        )

    Trainer(_trial_config(base, sampled, trial_dir)).learn(callback=report)


def run(
    base: TrainConfig,
    space: Sequence[Dimension],
    *,
    samples: int,
    search_seed: int = 0,
    cpus_per_trial: float = 1.0,
) -> list[Trial]:
    """`samples` trials of `base` over `space` on the initialised Ray cluster, ASHA-stopped
    at its evaluations; the trials best first (by their last evaluation's METRIC)."""
    if base.eval_baseline is None:
        raise TrainingError("sweep: needs an evaluation baseline (the metric is the ratio to it)")
    ray_module()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    root = base.out.resolve()
    evaluations = base.steps // base.eval_every + 2  # step 0, every eval_every, the end
    scheduler = ASHAScheduler(
        time_attr="training_iteration", max_t=evaluations, grace_period=2, reduction_factor=2
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, root=str(root)), {"cpu": cpus_per_trial}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={d.name: d.tune_domain(tune) for d in space},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="min",
            scheduler=scheduler,
            num_samples=samples,
            search_alg=BasicVariantGenerator(random_state=search_seed),
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(root), verbose=0),
    )
    grid = tuner.fit()
    trials = []
    for i in range(len(grid)):
        result = grid[i]
        if result.error is not None:
            raise DistributedError(f"sweep: a trial failed: {result.error}")
        m, sampled = result.metrics or {}, result.config or {}
        if METRIC not in m:
            raise DistributedError(f"sweep: trial {m.get('trial_id')} reported no evaluation")
        trials.append(
            Trial(
                trial_id=str(m["trial_id"]),
                hyper={d.name: sampled[d.name] for d in space},
                step=int(m["step"]),
                ratio_mean_fct=float(m[METRIC]),
                ratio_p90_fct=float(m["ratio_p90_fct"]),
                fct_mean=float(m["fct_mean"]),
                out=Path(m["out"]),
            )
        )
    return sorted(trials, key=lambda t: (-t.step, t.ratio_mean_fct, t.trial_id))


def hyper_args(trial: Trial) -> str:
    """The trial's sampled hyperparameters as `marllbd train` arguments."""
    return " ".join(f"--hyper {k}={_toml(v)}" for k, v in trial.hyper.items())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write(trials: Sequence[Trial], out: Path, baseline: str) -> str:
    """sweep.csv and sweep.md into `out`; returns the markdown table."""
    names = list(trials[0].hyper) if trials else []
    with (out / "sweep.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", *names, "step", METRIC, "ratio_p90_fct", "fct_mean", "out"])
        for t in trials:
            w.writerow([t.trial_id, *(t.hyper[n] for n in names), t.step,
                        t.ratio_mean_fct, t.ratio_p90_fct, t.fct_mean, t.out])  # fmt: skip
    head = ["trial", *names, "last eval step", f"mean FCT / {baseline}", f"p90 FCT / {baseline}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in trials:
        cells = [t.trial_id, *(_cell(t.hyper[n]) for n in names), str(t.step),
                 f"{t.ratio_mean_fct:.4f}", f"{t.ratio_p90_fct:.4f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    table = (
        "Trials best first (those ASHA let run longest, then by the last evaluation's mean FCT "
        f"over {baseline}'s, paired by seed):\n\n" + "\n".join(lines) + "\n"
    )
    (out / "sweep.md").write_text(table, encoding="utf-8")
    return table
