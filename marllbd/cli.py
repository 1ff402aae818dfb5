"""The `marllbd` command line."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marllbd.errors import MarllbdError

if TYPE_CHECKING:
    from marllbd.sim.scenario import Scenario


class UsageError(MarllbdError):
    """Bad command-line input: reported on one line, exit code 2."""


def one_line(exc: BaseException) -> str:
    """The error's message on one line (its lines joined by '; '), or its class name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _cmd_bench(args: argparse.Namespace) -> int:
    from marllbd.benchmarks import registry

    benches = registry()
    names = sorted(benches)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in benches]
        if unknown:
            raise UsageError(
                f"--only: unknown benchmark {', '.join(unknown)}; known: {', '.join(names)}"
            )
        names = wanted
    for name in names:
        for res in benches[name](args.quick):
            if args.json:
                print(json.dumps(res.to_json_dict()), flush=True)
            else:
                print(
                    f"{res.name:24s} {res.value:12.4g} {res.unit:12s} "
                    f"baseline {res.baseline} = {res.baseline_value:.4g}  ratio {res.ratio:.3g}",
                    flush=True,
                )
    return 0


def _add_scenario_args(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """--scenario, or --family with --samples and --family-seed (one of the two is required).

    With `several`, --scenario may be repeated or given as a comma list."""
    if several:
        parser.add_argument(
            "--scenario", action="append", metavar="S[,S]",
            help="preset name or TOML file; repeat it or give a comma list for several",
        )  # fmt: skip
    else:
        parser.add_argument("--scenario", help="preset name or TOML file")
    parser.add_argument("--family", help="scenario family: a shipped name or TOML file")
    parser.add_argument(
        "--samples", type=int, help="with --family: how many samples to draw (default 1)"
    )
    parser.add_argument(
        "--family-seed", type=int, help="with --family: the first sample's seed (default 0)"
    )


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The scenario of --scenario, or the --samples samples of --family from --family-seed."""
    from marllbd.sim.family import FamilyError, load_family
    from marllbd.sim.scenario import ScenarioError, load_scenario

    if (args.scenario is None) == (args.family is None):
        raise UsageError(
            "give one of --scenario (a preset or TOML file) and --family (a family name or "
            f"TOML file), got {'both' if args.scenario is not None else 'neither'}"
        )
    if args.scenario is not None:
        for flag in ("samples", "family_seed"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')}: only applies with --family")
        given = [args.scenario] if isinstance(args.scenario, str) else args.scenario
        scenarios = []
        for name in [n.strip() for item in given for n in item.split(",") if n.strip()]:
            try:
                scenarios.append(load_scenario(name))
            except ScenarioError as exc:
                raise UsageError(str(exc)) from None
            except OSError as exc:
                raise UsageError(f"--scenario: cannot read {name}: {exc.strerror}") from None
        names = [sc.name for sc in scenarios]
        if not scenarios or len(set(names)) != len(names):
            raise UsageError(
                f"--scenario: expected scenarios with distinct names, got {', '.join(names) or '-'}"
            )
        return scenarios
    samples = 1 if args.samples is None else args.samples
    first = 0 if args.family_seed is None else args.family_seed
    if samples < 1:
        raise UsageError(f"--samples: expected a positive integer, got {samples}")
    if first < 0:
        raise UsageError(f"--family-seed: expected an integer >= 0, got {first}")
    try:
        return load_family(args.family).samples(samples, first)
    except FamilyError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--family: cannot read {args.family}: {exc.strerror}") from None


def _cmd_scenario(args: argparse.Namespace) -> int:
    from marllbd.sim.family import FamilyError, families, load_family, scenario_toml
    from marllbd.sim.scenario import presets

    if args.action == "list":
        print("presets (--scenario NAME):")
        for name in presets():
            print(f"  {name}")
        print("families (--family NAME, marllbd scenario sample NAME):")
        for name in families():
            print(f"  {name:12s} {load_family(name).description}")
        return 0
    if args.seed < 0:
        raise UsageError(f"--seed: expected an integer >= 0, got {args.seed}")
    try:
        family = load_family(args.family)
        scenario = family.sample(args.seed)
    except FamilyError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{args.family}: cannot read: {exc.strerror}") from None
    comment = f"Sample {args.seed} of family {family.name}: marllbd scenario sample"
    print(scenario_toml(scenario, comment=f"{comment} {args.family} --seed {args.seed}"), end="")
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from marllbd.ipc.region import RegionError, region_path
    from marllbd.sim.publisher import serve
    from marllbd.sim.scenario import ScenarioError, build_trace
    from marllbd.sim.traces import TraceError

    scenarios = _scenarios(args)
    if len(scenarios) > 1:
        raise UsageError(
            f"--samples: sim serves one scenario, got {len(scenarios)}; "
            "choose the sample with --family-seed S"
        )
    (scenario,) = scenarios
    try:
        trace = build_trace(scenario)
        region_path(args.region)
    except (ScenarioError, TraceError, RegionError) as exc:
        raise UsageError(str(exc)) from None
    if not args.speed > 0:
        raise UsageError(f"--speed: expected a positive number, got {args.speed}")
    try:
        mode = int(args.mode, 8)
    except ValueError:
        mode = -1
    if mode not in (0o600, 0o660):
        raise UsageError(f"--mode: expected 0600 or 0660, got {args.mode}")
    return serve(
        scenario,
        args.region,
        speed=args.speed,
        mode=mode,
        exit_with_parent=args.exit_with_parent,
        trace=trace,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from marllbd.sim.family import scenario_toml
    from marllbd.training import TrainConfig, TrainingError, train

    scenarios = _scenarios(args)
    eval_seeds, hyper = _train_options(args)
    # Networks for any server count train on the family itself: each group of rollout
    # envs draws a fresh sample per episode; the evaluations run sample --family-seed.
    mixed = args.family is not None and dict(hyper).get("arch") == "equivariant"
    if mixed and len(scenarios) > 1:
        raise UsageError(
            "--samples: with --hyper arch=equivariant the rollouts draw fresh samples of "
            "the family; the evaluations run one sample (--family-seed), so drop --samples"
        )
    layouts = {(len(sc.servers), sc.groups, sc.lb_nodes): sc for sc in scenarios}
    if len(layouts) > 1:
        a, b = list(layouts.values())[:2]
        raise UsageError(
            f"--family {args.family}: sample {a.name} has {len(a.servers)} servers and "
            f"{a.lb_nodes} LB nodes, {b.name} {len(b.servers)} and {b.lb_nodes}; training on "
            "several samples needs one layout (the networks are sized by it): fix "
            "servers.count and lb_nodes in the family"
        )
    if args.steps < len(scenarios):
        raise UsageError(
            f"--steps: expected a positive integer, at least one per sample ({len(scenarios)}), "
            f"got {args.steps}"
        )
    if args.resume is not None and not Path(args.resume).exists():
        raise UsageError(f"--resume: {args.resume} does not exist")
    out = Path(args.out)
    if args.family is None:
        refs = [(str(args.scenario), out)]
    else:  # each sample as a file beside the run, so checkpoints name a scenario that loads
        folder = out / "scenarios"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for sc in scenarios:
                comment = f"Sample {sc.seed} of family {args.family}, trained on by marllbd train"
                (folder / f"{sc.name}.toml").write_text(
                    scenario_toml(sc, comment=comment), encoding="utf-8"
                )
        except OSError as exc:
            raise UsageError(f"--out: cannot write into {out}: {exc.strerror}") from None
        refs = [
            (str(folder / f"{sc.name}.toml"), out if len(scenarios) == 1 else out / sc.name)
            for sc in scenarios
        ]
    resume = Path(args.resume) if args.resume else None
    for i, (ref, phase_out) in enumerate(refs):
        try:
            config = TrainConfig(
                hyper=tuple(hyper),
                algo=args.algo,
                scenario=ref,
                out=phase_out,
                steps=round(args.steps * (i + 1) / len(refs)),
                seed=args.seed,
                resume=resume,
                envs=_envs(args),
                eval_every=args.eval_every,
                eval_seeds=eval_seeds,
                eval_baseline=_eval_baseline(args),
                log_every=args.log_every,
                family=args.family if mixed else None,
                **_rollout_workers(args),
            )
            result = train(config)
        except TrainingError as exc:
            raise UsageError(str(exc)) from None
        print(
            f"trained {config.algo} for {result.steps} steps in {result.wall_seconds:.0f} s"
            f"{f' on {Path(ref).stem}' if len(refs) > 1 else ''}; best checkpoint "
            f"{result.best}; metrics {result.metrics_csv}"
        )
        resume = result.last
    return 0


def _envs(args: argparse.Namespace) -> int:
    """--envs: given, or TrainConfig's default."""
    from marllbd.training import TrainConfig

    return TrainConfig.envs if args.envs is None else int(args.envs)


def _train_options(args: argparse.Namespace) -> tuple[tuple[int, ...], tuple[tuple[str, Any], ...]]:
    """--eval-seeds and --hyper of `train` and `sweep`, checked: (eval seeds, hyper pairs)."""
    try:
        eval_seeds = tuple(int(x) for x in args.eval_seeds.split(",") if x.strip())
    except ValueError:
        raise UsageError(
            f"--eval-seeds: expected integers like 1001,1002, got {args.eval_seeds!r}"
        ) from None
    if not eval_seeds or args.eval_every < 1 or (args.envs is not None and args.envs < 1):
        raise UsageError(
            "--eval-seeds needs one seed or more; --eval-every and --envs must be >= 1"
        )
    hyper = []
    for item in args.hyper:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--hyper: expected NAME=VALUE, got {item!r}")
        try:  # a TOML value: 1, 0.5, true, [1.0, 2.0], "text"; anything else is a string
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        hyper.append((name.strip(), value))
    return eval_seeds, tuple(hyper)


def _rollout_workers(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig's Ray rollout fields from --ray, --workers, --broadcast-every and
    --rollout-steps (checked here: a bad value is a usage error before Ray starts)."""
    if args.ray is None:
        given = [
            f
            for f in ("workers", "broadcast_every", "rollout_steps")
            if getattr(args, f) is not None
        ]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag}: rollout workers run on Ray; add --ray [ADDRESS]")
        return {}
    workers = 2 if args.workers is None else args.workers
    for flag, value in (
        ("--workers", workers),
        ("--broadcast-every", args.broadcast_every),
        ("--rollout-steps", args.rollout_steps),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: expected an integer >= 1, got {value}")
    options: dict[str, Any] = {"workers": workers, "ray_address": _ray_address(args.ray)}
    if args.broadcast_every is not None:
        options["broadcast_every"] = args.broadcast_every
    if args.rollout_steps is not None:
        options["rollout_steps"] = args.rollout_steps
    return options


def _eval_baseline(args: argparse.Namespace) -> str | None:
    return None if args.eval_baseline == "none" else args.eval_baseline


def _cmd_sweep(args: argparse.Namespace) -> int:
    from marllbd.distributed import sweep
    from marllbd.distributed.cluster import DistributedError
    from marllbd.training import TrainConfig, TrainingError

    eval_seeds, hyper = _train_options(args)
    try:
        space = sweep.parse_space(args.space)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.samples < 1:
        raise UsageError(f"--samples: expected an integer >= 1, got {args.samples}")
    if args.jobs < 1:
        raise UsageError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    out = Path(args.out)
    try:
        config = TrainConfig(
            algo=args.algo, scenario=str(args.scenario), out=out, steps=args.steps,
            seed=args.seed, envs=_envs(args), eval_every=args.eval_every, eval_seeds=eval_seeds,
            eval_baseline=_eval_baseline(args), log_every=args.log_every, hyper=hyper,
        )  # fmt: skip
        sweep.check(config, space)
        if config.eval_baseline is None:
            raise TrainingError("--eval-baseline: a sweep ranks trials by the ratio to it")
        out.mkdir(parents=True, exist_ok=True)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out: cannot write into {out}: {exc.strerror}") from None
    from marllbd.distributed import connect

    try:
        with connect(_ray_address(args.ray or LOCAL_RAY), num_cpus=args.jobs):
            trials = sweep.run(config, space, samples=args.samples, search_seed=args.search_seed)
    except (DistributedError, TrainingError) as exc:
        raise UsageError(str(exc)) from None
    print(sweep.write(trials, out, config.eval_baseline), end="")
    if trials:
        print(f"best: marllbd train ... {sweep.hyper_args(trials[0])}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from marllbd.policies import PolicyError, load
    from marllbd.training import report
    from marllbd.training.evaluate import EvaluationError, evaluate_scenarios

    scenarios = _scenarios(args)
    specs = [s.strip() for s in args.policies.split(",") if s.strip()]
    if not specs or len(set(specs)) != len(specs):
        raise UsageError(
            f"--policies: expected distinct comma-separated policies (e.g. sed,wcmp), "
            f"got {args.policies!r}"
        )
    for spec in specs:
        try:
            load(spec)
        except PolicyError as exc:
            raise UsageError(f"--policies: {exc}") from None
    baseline = None if args.baseline is None else args.baseline.strip()
    if baseline is not None:
        try:
            load(baseline)
        except PolicyError as exc:
            raise UsageError(f"--baseline: {exc}") from None
        if baseline not in specs:  # evaluated as well, after the others
            specs.append(baseline)
    try:
        jobs = int(args.jobs)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UsageError(f"--jobs: expected an integer >= 1, got {args.jobs!r}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UsageError(
            f"--seeds: expected distinct comma-separated integers >= 0 (e.g. 1,2,3), "
            f"got {args.seeds!r}"
        )
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise UsageError(f"--out: cannot write into {out}: {exc.strerror}") from None
    try:
        if args.ray is None:
            results = evaluate_scenarios(
                scenarios, specs, seeds, jobs=jobs, progress=sys.stderr.isatty()
            )
        else:
            from marllbd.distributed import RayExecutor, connect

            with connect(_ray_address(args.ray), num_cpus=jobs if jobs > 1 else None):
                results = evaluate_scenarios(
                    scenarios, specs, seeds, progress=sys.stderr.isatty(), executor=RayExecutor()
                )
    except EvaluationError as exc:
        raise UsageError(str(exc)) from None
    tables = report.write(results, scenarios, out, baseline)
    if args.json:
        print(json.dumps(report.to_json(results, scenarios, baseline)))
    else:
        print(tables, end="")
    return 0


LOCAL_RAY = "local"
"""What `--ray` alone means: start a local Ray cluster."""


def _ray_address(given: str) -> str | None:
    """None (a local cluster) for a bare --ray, else the address to connect to."""
    if given == LOCAL_RAY:
        return None
    if not given.strip():
        raise UsageError("--ray: expected a cluster address (e.g. auto or HOST:6379), got ''")
    return given.strip()


def _add_ray_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
        help=f"{what} on Ray: a local cluster, or the one at ADDRESS (auto, HOST:6379; "
        "needs the distributed extra)",
    )  # fmt: skip


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    """The training options `train` and `sweep` share."""
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--envs", type=int, metavar="N",
        help="simulator instances for rollouts (default: TrainConfig.envs, 32)",
    )  # fmt: skip
    parser.add_argument("--eval-every", type=int, default=2000, help="steps between evaluations")
    parser.add_argument("--eval-seeds", default="1001,1002", help="held-out seeds for evaluations")
    parser.add_argument(
        "--eval-baseline", default="sed", metavar="POLICY",
        help="each evaluation logs the FCTs over this policy's on the same seeds "
        "(eval/ratio_*; default sed; none: no ratio)",
    )  # fmt: skip
    parser.add_argument(
        "--log-every", type=int, default=500, help="steps between loss rows in metrics.csv"
    )
    parser.add_argument(
        "--hyper", action="append", default=[], metavar="NAME=VALUE",
        help="override a hyperparameter (repeatable), e.g. --hyper prior_weight=1.0",
    )  # fmt: skip


def _cmd_run(args: argparse.Namespace) -> int:
    from marllbd.daemon import config as cfg
    from marllbd.daemon.app import main as run_daemon
    from marllbd.policies.interface import PolicyError

    path = Path(args.config) if args.config else None
    try:
        cfg.load(path)
        return run_daemon(path)
    except (cfg.ConfigError, PolicyError) as exc:  # a policy that does not load at start
        raise UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marllbd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run benchmarks, each beside its same-run baseline")
    bench.add_argument("--quick", action="store_true", help="short runs (seconds, not minutes)")
    bench.add_argument("--json", action="store_true", help="one JSON object per line")
    bench.add_argument("--only", metavar="NAME[,NAME]", help="run only these benchmarks")
    bench.set_defaults(func=_cmd_bench)

    sim = sub.add_parser("sim", help="run the simulator as a data plane behind shm regions")
    _add_scenario_args(sim)
    sim.add_argument("--region", required=True, help="region name (one per LB: NAME-0, ...)")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    sim.add_argument("--mode", default="0600", help="region file mode: 0600 or 0660")
    sim.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies"
    )
    sim.set_defaults(func=_cmd_sim)

    tr = sub.add_parser("train", help="train a learned policy on a scenario")
    tr.add_argument("--algo", required=True, help="a registered trainer: sac-gru, qmix, ...")
    _add_scenario_args(tr)
    tr.add_argument("--out", required=True, help="output directory")
    tr.add_argument("--resume", help="checkpoint directory to continue from")
    _add_train_args(tr)
    _add_ray_arg(tr, "collect rollouts with --workers actors")
    tr.add_argument(
        "--workers", type=int, metavar="N",
        help="rollout actors on Ray, each stepping --envs envs (default 2 with --ray)",
    )  # fmt: skip
    tr.add_argument(
        "--broadcast-every", type=int, metavar="K",
        help="learner updates between weight broadcasts to the workers (default 8)",
    )  # fmt: skip
    tr.add_argument(
        "--rollout-steps", type=int, metavar="S",
        help="environment steps per worker chunk (default 64)",
    )  # fmt: skip
    tr.set_defaults(func=_cmd_train)

    sw = sub.add_parser(
        "sweep", help="search hyperparameters on Ray Tune (ASHA), ranked by the ratio to SED"
    )
    sw.add_argument("--algo", required=True, help="a registered trainer: sac-gru, qmix, ...")
    sw.add_argument("--scenario", required=True, help="preset name or TOML file")
    sw.add_argument("--out", required=True, help="output directory")
    sw.add_argument(
        "--space", action="append", default=[], metavar="NAME=KIND(ARGS)|NAME=KIND:A:B,...",
        help="a searched hyperparameter (repeatable): choice(a,b), uniform(lo,hi), "
        "loguniform(lo,hi), randint(lo,hi)",
    )  # fmt: skip
    sw.add_argument("--samples", type=int, default=8, help="trials (default 8)")
    sw.add_argument("--search-seed", type=int, default=0, help="seed of the search's draws")
    sw.add_argument("--jobs", type=int, default=2, help="CPUs of a local cluster (default 2)")
    _add_ray_arg(sw, "run the trials (default: a local cluster)")
    _add_train_args(sw)
    sw.set_defaults(func=_cmd_sweep)

    ev = sub.add_parser("eval", help="evaluate policies on scenarios over seeds")
    _add_scenario_args(ev, several=True)
    ev.add_argument("--policies", required=True, metavar="P[,P]", help="e.g. sed,wcmp,gsq")
    ev.add_argument("--seeds", default="1,2,3", metavar="N[,N]", help="scenario seeds")
    ev.add_argument(
        "--baseline", metavar="P",
        help="report every policy's paired ratio to this one (added to --policies if missing)",
    )  # fmt: skip
    ev.add_argument(
        "--jobs", default="1", metavar="N",
        help="worker processes (default 1); with a bare --ray, the local cluster's CPUs",
    )  # fmt: skip
    _add_ray_arg(ev, "run the evaluations as tasks")
    ev.add_argument("--out", required=True, help="output directory (created if missing)")
    ev.add_argument(
        "--json", action="store_true", help="print one JSON object (runs and summary), not tables"
    )
    ev.set_defaults(func=_cmd_eval)

    sc = sub.add_parser("scenario", help="sample scenario families; list presets and families")
    actions = sc.add_subparsers(dest="action", required=True)
    sample = actions.add_parser("sample", help="print one sample of a family as scenario TOML")
    sample.add_argument("family", metavar="FAMILY", help="a shipped family name or TOML file")
    sample.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    actions.add_parser("list", help="the preset scenarios and shipped families")
    sc.set_defaults(func=_cmd_scenario)

    run = sub.add_parser(
        "run",
        help="run the daemon (default config: the checkout's configs/marllbd.toml, "
        "else /etc/marllbd/marllbd.toml)",
    )
    run.add_argument("--config", help="TOML config file")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except MarllbdError as exc:  # every error of ours, from any command: one line, exit 2
        print(f"marllbd {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
