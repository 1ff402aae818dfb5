"""The one training loop, and the Python API around it.

    from marllbd.training import Trainer
    trainer = Trainer.make("sac-gru", scenario="seed-16", out="runs/sac", seed=0)
    trainer.learn(8_000, callback=lambda trainer, info: print(info["step"]))
    trainer.save("runs/sac/final")
    policy = Trainer.load("runs/sac/final").policy()   # a marllbd Policy (numpy only)
    action, state = trainer.predict(obs)                # SB3-style, on env observations

An algorithm (registered in the `marllbd.trainers` entry-point group, like
policies in `marllbd.policies`) holds only what is particular to it: networks,
replay, loss, update and how it steps its rollout envs.  It implements the
`Algorithm` protocol below; this module does the rest for every algorithm:
the step budget (`steps` means exactly that many environment steps), periodic
evaluation through `marllbd.training.evaluate` (the loop `marllbd eval` uses,
so the checkpoint picked as best is the one `marllbd eval` ranks best),
`checkpoints/last` and `checkpoints/best`, logs (marllbd.training.logs), the
progress display, callbacks and resume.

Resume restores networks, optimiser moments, normalisers and the counters
(steps, episodes, updates, best evaluation) exactly.  It does not restore the
replay buffer: it would make each `last` checkpoint tens of megabytes, written
at every evaluation; a resumed run refills it from fresh rollouts and waits
for the algorithm's warm-up (learning_starts, warmup_steps) before it updates
again (the first line it logs says so).
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import numpy as np

from marllbd import checkpoint
from marllbd.policies import Policy, PolicyError
from marllbd.policies import load as load_policy
from marllbd.sim.scenario import Scenario, load_scenario
from marllbd.training import evaluate, logs
from marllbd.training.errors import TrainingError

ENTRY_POINTS = "marllbd.trainers"


@dataclass(frozen=True)
class TrainConfig:
    """What `marllbd train` (or `Trainer.make`) was asked to do."""

    algo: str
    scenario: str
    out: Path
    steps: int = 20_000
    """Environment steps (one env, one control interval each) to train for, in total."""
    seed: int = 0
    resume: Path | None = None
    """A checkpoint directory to continue from."""
    envs: int = 32
    """Simulator instances stepped together for rollouts (one LoadBalanceVectorEnv or
    MultiAgentVectorEnv).  32 by measurement: the batch steps them at ~80 k env steps/s,
    and the algorithms' defaults learn from them at one update per 64 env steps
    (docs/benchmarks.md, "Time to quality")."""
    eval_every: int = 2_000
    """Steps between evaluations (and best-by-evaluation checkpoints)."""
    eval_seeds: tuple[int, ...] = (1001, 1002)
    """Held-out scenario seeds used by the periodic evaluation."""
    eval_baseline: str | None = "sed"
    """A policy spec run once on the same seeds; every evaluation logs the policy's FCTs
    over it, paired by seed (eval/ratio_*: the time-to-quality curve).  None: no ratio."""
    episode_seconds: float | None = None
    """Override the scenario's duration for training episodes."""
    family: str | None = None
    """A scenario family (a shipped name or TOML file) the rollouts draw their episodes
    from, a fresh sample per group of envs when its episodes end (SAC-GRU with arch
    'equivariant': the samples' server counts differ); `scenario` is then the one the
    evaluations run."""
    progress: bool = True
    log_every: int = 500
    """Steps between train/ rows (mean losses since the last row) in the logs."""
    hyper: tuple[tuple[str, Any], ...] = ()
    """Hyperparameter overrides as (name, value) pairs."""
    workers: int = 0
    """Rollout actors on Ray (marllbd.distributed.rollouts), each with `envs` envs;
    0: the rollout envs step in this process."""
    ray_address: str | None = None
    """The Ray cluster the workers run on (auto, HOST:6379); None: a local one."""
    broadcast_every: int = 8
    """With workers: learner updates between two broadcasts of the weights to them."""
    rollout_steps: int = 64
    """With workers: environment steps a worker collects per request (one chunk)."""

    def __post_init__(self) -> None:
        counts = ("steps", "envs", "eval_every", "log_every", "broadcast_every", "rollout_steps")
        for name in counts:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingError(f"{name}: expected a positive integer, got {value!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise TrainingError(f"workers: expected an integer >= 0, got {self.workers!r}")
        if self.ray_address is not None and self.workers == 0:
            raise TrainingError("ray_address: rollouts run on Ray only with workers >= 1")
        if self.workers and self.rollout_steps % self.envs:
            raise TrainingError(
                f"rollout_steps: expected a multiple of envs ({self.envs}), got "
                f"{self.rollout_steps} (a worker steps all its envs at once)"
            )
        if not self.eval_seeds:
            raise TrainingError("eval_seeds: expected at least one held-out seed")
        if self.eval_baseline is not None:
            try:
                load_policy(self.eval_baseline)
            except PolicyError as exc:
                raise TrainingError(f"eval_baseline: {exc}") from None
        if self.episode_seconds is not None and not self.episode_seconds > 0:
            raise TrainingError(
                f"episode_seconds: expected a duration > 0, got {self.episode_seconds}"
            )


@dataclass(frozen=True)
class TrainResult:
    best: Path
    """The best-by-evaluation checkpoint directory."""
    last: Path
    steps: int
    wall_seconds: float
    metrics_csv: Path


@dataclass(frozen=True)
class Hooks:
    """A user's parts: each None keeps the algorithm's own."""

    env_factory: Callable[[Scenario], Any] | None = None
    """scenario → an env with marllbd's observation layout (a Gymnasium env for
    single-LB algorithms, a PettingZoo parallel env for multi-agent ones)."""
    reward_fn: Callable[[np.ndarray, np.ndarray], float] | None = None
    """(features (n, 12), active (n,)) → reward, instead of the default reward."""
    network: Callable[..., Any] | None = None
    """Builds the algorithm's training-only network (SAC-GRU: each critic; QMIX: the
    mixer) with the algorithm's own signature.  The served network is fixed: the
    daemon runs it in numpy (marllbd.policies.learned)."""


@dataclass
class Collected:
    """What one `Algorithm.collect` call did."""

    steps: int
    """Environment steps taken (summed over the rollout envs)."""
    episodes: list[dict[str, float]] = field(default_factory=list)
    """episode/ scalars of each episode that ended."""
    live: dict[str, float] = field(default_factory=dict)
    """Figures for the progress display."""


class Algorithm(Protocol):
    """What an algorithm gives the loop (see sac_gru.py and qmix.py in marllbd_rl)."""

    name: ClassVar[str]
    updates: int

    def begin(self, steps: int) -> None:
        """`learn` starts at step `steps` (0, or where a resumed run left off)."""
        ...

    def collect(self, budget: int) -> Collected:
        """Step the rollout envs by at most `budget` environment steps (at least one)."""
        ...

    def update(self, steps: int) -> list[dict[str, float]]:
        """The gradient updates due once `steps` environment steps are done; their losses."""
        ...

    def policy(self, lb: int) -> Policy:
        """LB node `lb`'s serving policy from the current networks (the numpy one)."""
        ...

    def predict(self, obs: Any, state: Any, deterministic: bool) -> tuple[Any, Any]:
        """Env action(s) for observation(s) `obs` and the recurrent state to pass next."""
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array a resumed run needs (networks, normalisers, optimiser moments)."""
        ...

    def load_arrays(self, arrays: Mapping[str, np.ndarray], where: Path) -> None: ...

    def manifest(self) -> dict[str, Any]:
        """dims, hyper, action, reward (and layout) for the checkpoint manifest."""
        ...


AlgorithmFactory = Callable[[TrainConfig, Scenario, Hooks], Algorithm]


def algorithms() -> dict[str, importlib.metadata.EntryPoint]:
    """Registered trainers by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def factory(algo: str) -> AlgorithmFactory:
    """The registered algorithm `algo`; a clear error if unknown or not installed."""
    known = algorithms()
    if algo not in known:
        raise TrainingError(f"--algo: expected one of {', '.join(sorted(known))}, got {algo!r}")
    try:
        loaded: AlgorithmFactory = known[algo].load()
    except ImportError as exc:
        raise TrainingError(
            f"--algo {algo}: training needs the rl extra "
            f"(pip install -c constraints.txt 'marllbd[rl]'): {exc}"
        ) from None
    return loaded


Callback = Callable[["Trainer", Mapping[str, Any]], bool | None]
"""Called after every collect step (info["event"] == "step") and evaluation ("eval");
returning False stops `learn`."""


class Trainer:
    """An algorithm, its scenario and its counters; `learn` runs the training loop."""

    def __init__(self, config: TrainConfig, hooks: Hooks | None = None) -> None:
        self.config = config
        self.hooks = hooks or Hooks()
        scenario = load_scenario(config.scenario)
        self.eval_scenario = scenario
        """Evaluations run the scenario as given (its own duration)."""
        self.scenario = (
            scenario
            if config.episode_seconds is None
            else scenario.replace(duration=config.episode_seconds)
        )
        if self.hooks.env_factory is not None and self.hooks.reward_fn is not None:
            raise TrainingError(
                "reward_fn: applies to the algorithm's own env; with env_factory, compute the "
                "reward in your env (e.g. LoadBalanceEnv(reward_metric='custom', reward_fn=...))"
            )
        self.algorithm = factory(config.algo)(config, self.scenario, self.hooks)
        if config.workers:
            from marllbd.distributed.rollouts import RayRollouts

            remote = RayRollouts(self.algorithm, config, self.scenario, self.hooks)
            self.algorithm = cast(Algorithm, remote)  # its name is the algorithm's, per instance
        self.steps = 0
        self.episodes = 0
        self.best_fct = math.inf
        self.last_eval: evaluate.Summary | None = None
        self.last_ratio: evaluate.Ratio | None = None
        """The last evaluation's FCTs over config.eval_baseline's (None without one)."""
        self._baseline: list[evaluate.Result] | None = None  # its runs: deterministic, once
        if config.resume is not None:
            self._resume(config.resume)

    @classmethod
    def make(
        cls,
        algo: str,
        scenario: str,
        out: str | Path = "runs/train",
        *,
        hyper: Mapping[str, Any] | None = None,
        env_factory: Callable[[Scenario], Any] | None = None,
        reward_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
        network: Callable[..., Any] | None = None,
        **options: Any,
    ) -> Trainer:
        """A trainer from keyword arguments (TrainConfig's fields; `hyper` as a mapping)."""
        config = TrainConfig(
            algo=algo,
            scenario=scenario,
            out=Path(out),
            hyper=tuple((hyper or {}).items()),
            **{"progress": False, **options},
        )
        return cls(config, Hooks(env_factory, reward_fn, network))

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> Trainer:
        """A trainer resumed from a checkpoint directory (its manifest names the run)."""
        ckpt = checkpoint.load(path)
        m = ckpt.manifest
        run = m.get("run") or {}
        config = TrainConfig(
            algo=m["algorithm"],
            scenario=overrides.pop("scenario", run.get("scenario_path") or m.get("scenario")),
            out=Path(overrides.pop("out", run.get("out", Path(path).parent))),
            seed=int(m["seed"]),
            resume=Path(path),
            hyper=tuple((m.get("hyper") or {}).items()),
            **{"progress": False, **overrides},
        )
        return cls(config)

    # -- the loop ------------------------------------------------------------------

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def learn(self, steps: int | None = None, callback: Callback | None = None) -> TrainResult:
        """Train until the step counter reaches `steps` (default config.steps), exactly."""
        total = self.config.steps if steps is None else steps
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise TrainingError(f"steps: expected a positive integer, got {total!r}")
        cfg, algo = self.config, self.algorithm
        best_dir, last_dir = self.out / "checkpoints" / "best", self.out / "checkpoints" / "last"
        log = logs.RunLog(self.out, resume_step=self.steps if self.steps else None)
        progress = logs.Progress(total, initial=self.steps, enabled=cfg.progress)
        if self.config.resume is not None and self.steps and cfg.progress:
            progress.stream.write(
                f"{algo.name}: resumed at step {self.steps} ({self.episodes} episodes, "
                f"{algo.updates} updates); the replay buffer starts empty\n"
            )
        algo.begin(self.steps)
        try:
            self._loop(total, log, progress, best_dir, last_dir, callback)
        finally:
            close = getattr(algo, "close", None)  # remote rollouts stop their workers
            if callable(close):
                close()
        log.close()
        logs.plot(log.path, self.out / "learning_curve.png", x="wall_seconds")
        last = self.last_ratio
        vs = "" if last is None else f"; last eval {last.mean_fct.mean:.4f} x {last.baseline}"
        progress.close(
            f"{algo.name}: {self.steps} steps, {self.episodes} episodes, {algo.updates} updates "
            f"in {log.wall_seconds:.0f} s; best eval fct_mean {self.best_fct:.4f} s over seeds "
            f"{list(cfg.eval_seeds)}{vs}"
        )
        return TrainResult(best_dir, last_dir, self.steps, log.wall_seconds, log.path)

    def _loop(
        self,
        total: int,
        log: logs.RunLog,
        progress: logs.Progress,
        best_dir: Path,
        last_dir: Path,
        callback: Callback | None,
    ) -> None:
        cfg, algo = self.config, self.algorithm
        if self.steps == 0:
            self._evaluate(log, best_dir, last_dir, callback)
        next_eval = (self.steps // cfg.eval_every + 1) * cfg.eval_every
        next_log = (self.steps // cfg.log_every + 1) * cfg.log_every
        losses: list[dict[str, float]] = []
        since = (self.steps, log.wall_seconds)
        stop = False
        while self.steps < total and not stop:
            got = algo.collect(total - self.steps)
            self.steps += got.steps
            for episode in got.episodes:
                self.episodes += 1
                log.write(self.steps, episode)
            losses += algo.update(self.steps)
            if self.steps >= next_log:
                wall = log.wall_seconds
                rate = (self.steps - since[0]) / max(wall - since[1], 1e-9)
                log.write(self.steps, {**_mean(losses), "train/steps_per_second": rate})
                losses, since = [], (self.steps, wall)
                next_log = (self.steps // cfg.log_every + 1) * cfg.log_every
            ratio = {} if self.last_ratio is None else {"ratio": self.last_ratio.mean_fct.mean}
            progress.update(self.steps, **got.live, best_fct=self.best_fct, **ratio)
            if (
                callback is not None
                and callback(self, {"event": "step", "step": self.steps}) is False
            ):
                stop = True
            if self.steps >= next_eval or self.steps >= total or stop:
                if self._evaluate(log, best_dir, last_dir, callback) is False:
                    stop = True
                next_eval = (self.steps // cfg.eval_every + 1) * cfg.eval_every

    def _evaluate(
        self, log: logs.RunLog, best_dir: Path, last_dir: Path, callback: Callback | None
    ) -> bool | None:
        """Evaluate the current policy on the held-out seeds; write last (and best)."""
        results = self._eval_results(self.config.eval_seeds)
        (summary,) = evaluate.summary(results)
        self.last_eval = summary
        scalars = {
            "eval/fct_mean": summary.mean_fct,
            "eval/fct_p90": summary.p90_fct,
            "eval/fct_p99": summary.p99_fct,
        }
        baseline = self.config.eval_baseline
        if baseline is not None:
            if self._baseline is None:
                self._baseline = evaluate.evaluate(
                    self.eval_scenario, [baseline], self.config.eval_seeds
                )
            (ratio, *_) = evaluate.compare([*results, *self._baseline], baseline)
            self.last_ratio = ratio
            for f in evaluate.CI_FIELDS:
                scalars[f"eval/ratio_{f}"] = getattr(ratio, f).mean
        log.write(self.steps, scalars)
        improved = summary.mean_fct < self.best_fct
        if improved:
            self.best_fct = summary.mean_fct
        arrays = self.algorithm.arrays()  # once for both checkpoints
        self.save(last_dir, arrays)
        if improved or not (best_dir / checkpoint.MANIFEST).exists():
            self.save(best_dir, arrays)
        if callback is None:
            return None
        info = {"event": "eval", "step": self.steps, "summary": summary, "ratio": self.last_ratio}
        return callback(self, info)

    def _eval_results(self, seeds: Sequence[int]) -> list[evaluate.Result]:
        source = evaluate.PolicySource(self.algorithm.name, self.algorithm.policy)
        return evaluate.evaluate(self.eval_scenario, [source], seeds, progress=False)

    def evaluate(self, seeds: Sequence[int]) -> evaluate.Summary:
        """The current policy through `marllbd.training.evaluate` on the scenario as given."""
        (summary,) = evaluate.summary(self._eval_results(seeds))
        return summary

    # -- checkpoints ---------------------------------------------------------------

    def save(self, path: str | Path, arrays: Mapping[str, np.ndarray] | None = None) -> Path:
        """A checkpoint a daemon serves and `Trainer.load` / --resume continue from
        (`arrays`: the algorithm's, if already taken)."""
        ev = self.last_eval
        manifest = {
            "algorithm": self.algorithm.name,
            "seed": self.config.seed,
            "scenario": self.scenario.name,
            **self.algorithm.manifest(),
            "progress": {
                "steps": self.steps,
                "episodes": self.episodes,
                "updates": self.algorithm.updates,
                "best_fct": None if math.isinf(self.best_fct) else self.best_fct,
            },
            "run": {"scenario_path": self.config.scenario, "out": str(self.out)},
        }
        if ev is not None:
            manifest["eval"] = {
                "fct_mean": ev.mean_fct,
                "fct_p90": ev.p90_fct,
                "fct_p99": ev.p99_fct,
                "seeds": list(self.config.eval_seeds),
            }
            if self.last_ratio is not None:
                manifest["eval"]["baseline"] = self.last_ratio.baseline
                for f in evaluate.CI_FIELDS:
                    manifest["eval"][f"ratio_{f}"] = getattr(self.last_ratio, f).mean
        return checkpoint.save(
            path, manifest, self.algorithm.arrays() if arrays is None else arrays
        )

    def _resume(self, path: Path) -> None:
        try:
            ckpt = checkpoint.load(path, algorithm=self.algorithm.name)
            self.algorithm.load_arrays(ckpt.arrays, ckpt.path)
        except checkpoint.CheckpointError as exc:
            raise TrainingError(f"--resume: {exc}") from None
        progress = ckpt.manifest.get("progress") or {}
        self.steps = int(progress.get("steps", 0))
        self.episodes = int(progress.get("episodes", 0))
        self.algorithm.updates = int(progress.get("updates", 0))
        best = progress.get("best_fct")
        self.best_fct = math.inf if best is None else float(best)

    # -- using the policy ------------------------------------------------------------

    def policy(self, lb: int = 0) -> Policy:
        """LB node `lb`'s serving policy from the current networks."""
        return self.algorithm.policy(lb)

    def predict(self, obs: Any, state: Any = None, deterministic: bool = True) -> tuple[Any, Any]:
        """The env action for `obs` and the recurrent state to pass with the next call."""
        return self.algorithm.predict(obs, state, deterministic)


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in rows for k in r}
    return {f"train/{k}": float(np.mean([r[k] for r in rows if k in r])) for k in sorted(keys)}


def train(config: TrainConfig, hooks: Hooks | None = None) -> TrainResult:
    """`marllbd train`: a Trainer from `config`, trained for config.steps."""
    return Trainer(config, hooks).learn()
