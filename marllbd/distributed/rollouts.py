"""`marllbd train --ray --workers N`: N rollout actors on Ray feeding one learner.

Each worker is a Ray actor holding its own copy of the algorithm (built from the
same TrainConfig with a seed derived from the run's seed and the worker's index)
and steps its rollout envs with the latest broadcast policy.  The learner (this
process) keeps the algorithm that trains; `RayRollouts` stands in for it towards
`marllbd.training.Trainer`: its `collect` takes the next chunk of transitions
from a worker and writes it into the learner's replay, its `update` runs the
algorithm's own updates and broadcasts the weights every `broadcast_every`
updates (one `ray.put`, read by every worker at its next chunk).

How the chunks move is declared by the algorithm (`remote_taps`, a tuple of
`Tap`): in a worker, each tapped object (the replay, the normalisers) is wrapped
so that the named method calls are recorded (and, when `run`, also made, so the
worker's normaliser follows its own data until the next broadcast); the learner
makes the same calls on its own objects in the same order.  A tap's `stream_arg`
is the argument that names a rollout stream: worker w's stream i becomes the
learner's stream w × envs + i (`algorithm.remote_streams(total)` sizes the
learner's replay for all of them).

Every chunk carries the policy version it was collected with (the learner's
update count at the broadcast it used); `train/policy_lag` logs how many updates
behind the data was when it arrived.  Chunks are taken from the workers in turn
(round robin, each worker with one chunk in flight while the learner updates), so
a run is reproducible for a fixed seed and worker count; a slow worker holds the
others back to its pace.  The step budget stays exact: a worker is never asked
for more steps than are left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from marllbd.distributed.cluster import DistributedError, connect
from marllbd.sim.scenario import Scenario
from marllbd.training.errors import TrainingError
from marllbd.training.trainer import Collected, Hooks, TrainConfig, factory

BROADCAST = Path("<broadcast weights>")
"""What a worker names as the source of the arrays it loads (in a misfit's error)."""


@dataclass(frozen=True)
class Tap:
    """Calls of `methods` on the object at `path` (dotted, from the algorithm) that a
    worker records and the learner replays."""

    path: str
    methods: tuple[str, ...]
    run: bool = False
    """Also make the call in the worker (a normaliser the worker's policy reads)."""
    stream_arg: int | None = None
    """The position of the argument that is a rollout stream index, if any."""


Call = tuple[int, str, tuple[Any, ...]]
"""(tap index, method, arguments) as recorded."""


@dataclass
class Chunk:
    """What one worker sends back for one request."""

    worker: int
    version: int
    """The policy version (learner updates at its broadcast) the chunk was collected with."""
    steps: int
    calls: list[Call]
    episodes: list[dict[str, float]] = field(default_factory=list)
    live: dict[str, float] = field(default_factory=dict)


def _resolve(root: Any, path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    for p in parents:
        root = getattr(root, p)
    return root, name


class _Recorder:
    """Stands in for a tapped object: records the tapped calls, passes the rest through."""

    def __init__(self, target: Any, index: int, tap: Tap, log: list[Call]) -> None:
        self._target, self._index, self._tap, self._log = target, index, tap, log

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._tap.methods:
            return attr

        def record(*args: Any) -> Any:
            self._log.append((self._index, name, tuple(_owned(a) for a in args)))
            return attr(*args) if self._tap.run else None

        return record


def _owned(value: Any) -> Any:
    """A copy of an array argument (the caller may overwrite its buffer after the call)."""
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else value


class Worker:
    """One rollout actor (a Ray actor class once wrapped by `ray.remote`)."""

    def __init__(
        self, config: TrainConfig, scenario: Scenario, hooks: Hooks, index: int, taps: Sequence[Tap]
    ) -> None:
        self.index = index
        self.algorithm = factory(config.algo)(config, scenario, hooks)
        self.calls: list[Call] = []
        for i, tap in enumerate(taps):
            parent, name = _resolve(self.algorithm, tap.path)
            setattr(parent, name, _Recorder(getattr(parent, name), i, tap, self.calls))
        self.version = -1

    def rollout(
        self, weights: Mapping[str, np.ndarray], version: int, steps: int, at: int = 0
    ) -> Chunk:
        """`steps` environment steps with the policy of `version` (loaded if new), the
        chunk starting at the run's step `at` (an algorithm with a schedule over the
        steps, QMIX's ε, reads it in `at_step`)."""
        if version != self.version:
            self.algorithm.load_arrays(weights, BROADCAST)
            self.version = version
        if hasattr(self.algorithm, "at_step"):
            self.algorithm.at_step(at)
        done, episodes, live = 0, [], {}
        while done < steps:
            got = self.algorithm.collect(steps - done)
            done += got.steps
            episodes += got.episodes
            live = got.live
        calls, self.calls[:] = list(self.calls), []
        return Chunk(self.index, version, done, calls, episodes, live)


def worker_seed(seed: int, index: int) -> int:
    """Worker `index`'s seed: its envs and exploration differ from every other worker's."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


class RayRollouts:
    """The algorithm of a Ray run, as `marllbd.training.Trainer` drives it (see the module
    docstring); every attribute it does not define is the learner's algorithm's."""

    def __init__(
        self, algorithm: Any, config: TrainConfig, scenario: Scenario, hooks: Hooks
    ) -> None:
        taps = getattr(algorithm, "remote_taps", None)
        if not taps:
            raise TrainingError(
                f"--workers: {config.algo} has no remote rollouts (remote_taps); train it "
                "without --ray"
            )
        self.algorithm = algorithm
        self.config, self.scenario, self.hooks = config, scenario, hooks
        self.taps: tuple[Tap, ...] = tuple(taps)
        if any(t.stream_arg is not None for t in self.taps):
            algorithm.remote_streams(config.workers * config.envs)
        self._stack: ExitStack | None = None
        self._workers: list[Any] = []
        self._pending: dict[int, Any] = {}  # worker → its ObjectRef in flight
        self._asked: dict[int, int] = {}  # worker → steps it was asked for
        self._turn = 0
        self._weights: Any = None
        self.version = -1
        self.samples = np.zeros(config.workers, dtype=np.int64)
        """Environment steps the learner received from each worker."""
        self.worker_versions = np.full(config.workers, -1, dtype=np.int64)
        """The newest policy version each worker's data was collected with."""
        self._lags: list[int] = []
        self._start = 0
        """The run's steps before this object's first chunk (a resumed run's)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.algorithm, name)

    @property
    def updates(self) -> int:
        return int(self.algorithm.updates)

    @updates.setter
    def updates(self, value: int) -> None:
        self.algorithm.updates = value

    # -- the cluster -------------------------------------------------------------------

    def begin(self, steps: int) -> None:
        self.algorithm.begin(steps)
        self._start = steps - int(self.samples.sum())
        if self._stack is not None:
            return
        stack = ExitStack()
        try:
            ray = stack.enter_context(connect(self.config.ray_address, self.config.workers))
            actor = ray.remote(num_cpus=1)(Worker)
            base = replace(self.config, workers=0, ray_address=None, resume=None, progress=False)
            seeds = [worker_seed(self.config.seed, w) for w in range(self.config.workers)]
            self._workers = [
                actor.remote(replace(base, seed=s), self.scenario, self.hooks, w, self.taps)
                for w, s in enumerate(seeds)
            ]
        except DistributedError as exc:
            stack.close()
            raise TrainingError(str(exc)) from None
        except BaseException:
            stack.close()
            raise
        self._ray, self._stack = ray, stack
        self._broadcast()

    def close(self) -> None:
        """Stop the workers (and a local cluster this run started)."""
        if self._stack is None:
            return
        for w in self._workers:
            self._ray.kill(w)
        self._workers, self._pending, self._asked = [], {}, {}
        stack, self._stack = self._stack, None
        stack.close()

    def _broadcast(self) -> None:
        self._weights = self._ray.put(self.algorithm.arrays())
        self.version = self.updates

    # -- what the training loop calls ------------------------------------------------

    def collect(self, budget: int) -> Collected:
        """The next worker's chunk (round robin), written into the learner's replay."""
        if self._stack is None:
            self.begin(0)
        self._ask(budget)
        w = self._next_turn()
        try:
            chunk: Chunk = self._ray.get(self._pending.pop(w))
        except self._ray.exceptions.RayError as exc:
            raise TrainingError(f"--ray: rollout worker {w} failed: {exc}") from None
        self._asked.pop(w)
        self._apply(chunk)
        self._ask(budget - chunk.steps)
        live = {**chunk.live, "lag": float(self.updates - chunk.version)}
        return Collected(steps=chunk.steps, episodes=chunk.episodes, live=live)

    def _ask(self, budget: int) -> None:
        """Give each idle worker a chunk, never more steps in flight than `budget`."""
        chunk = self.config.rollout_steps
        for w, worker in enumerate(self._workers):
            left = budget - sum(self._asked.values())
            if left <= 0:
                return
            if w not in self._pending:
                steps = min(chunk, left)
                at = self._start + int(self.samples.sum()) + sum(self._asked.values())
                self._pending[w] = worker.rollout.remote(self._weights, self.version, steps, at)
                self._asked[w] = steps

    def _next_turn(self) -> int:
        n = len(self._workers)
        for k in range(n):
            w = (self._turn + k) % n
            if w in self._pending:
                self._turn = (w + 1) % n
                return w
        raise RuntimeError("ray rollouts: no chunk in flight")  # _ask always leaves one

    def _apply(self, chunk: Chunk) -> None:
        offset = chunk.worker * self.config.envs
        for index, method, args in chunk.calls:
            tap = self.taps[index]
            parent, name = _resolve(self.algorithm, tap.path)
            own = [_owned(a) for a in args]  # Ray hands arrays over read-only
            if tap.stream_arg is not None:
                own[tap.stream_arg] += offset
            getattr(getattr(parent, name), method)(*own)
        self.samples[chunk.worker] += chunk.steps
        self.worker_versions[chunk.worker] = max(self.worker_versions[chunk.worker], chunk.version)
        self._lags.append(self.updates - chunk.version)

    def update(self, steps: int) -> list[dict[str, float]]:
        losses = self.algorithm.update(steps)
        if self.updates - self.version >= self.config.broadcast_every:
            self._broadcast()
        if self._lags:
            losses.append({"policy_lag": float(np.mean(self._lags))})
            self._lags = []
        return losses
