"""LoadBalanceVectorEnv: N LoadBalanceEnv episodes stepped in one compiled call.

A `gymnasium.vector.VectorEnv`: `gym.make_vec("marllbd/LoadBalance-v0", num_envs=N,
vectorization_mode="vector_entry_point")` returns it (the default mode for these ids).
Each step advances every sub-env's engine one control interval in one call
(`marllbd.sim.engine.EngineBatch`, on numba's threads with parallel=True) and computes
the rewards in one more; sub-env i with seed s gives the observations, rewards, FCTs
and infos of `LoadBalanceEnv` reset with seed s, bit for bit (tests/envs/test_vector.py).

Autoreset (`metadata["autoreset_mode"]`): Gymnasium's next-step mode by default: the
step after a sub-env's episode ends resets it, ignoring its action, and returns its
first observation with reward 0 and terminated = truncated = False.  With
autoreset_mode="Disabled" the caller resets ended sub-envs itself, with
`reset(options={"reset_mask": mask})` (the trainers do: their replay wants the last
observation of an episode and the first of the next apart).  reset(seed=s) seeds
sub-env i with s + i (a list gives each its own); without a seed each keeps its
generator, and a never-seeded one draws fresh entropy, as `gymnasium.Env.reset` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from marllbd import features
from marllbd.envs.render import RENDER_MODES, ansi_table, check_render_mode
from marllbd.envs.single import LoadBalanceEnv, episode_engine, writable_state
from marllbd.sim.engine import EngineBatch, first_weights
from marllbd.sim.scenario import Scenario

_INFO_KEYS = ("t", "fct_mean", "fct_p90_max", "completed", "rejected", "utilization", "weights")


def checked_reset_mask(mask: Any, count: int, started: bool) -> np.ndarray:
    """A vector env's reset(options={"reset_mask": mask}), checked: a bool (count,) numpy
    array, on envs that have been reset without a mask before."""
    if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (count,)):
        raise ValueError(f"reset_mask: expected a bool numpy array of shape ({count},)")
    if not started:
        raise RuntimeError("reset_mask: call reset() without a mask first")
    return mask


def sub_env_seeds(seed: int | Sequence[int | None] | None, count: int) -> list[int | None]:
    """The vector envs' reset(seed=...) per sub-env: an integer s gives sub-env i s + i,
    a sequence one each, None none (each keeps its generator)."""
    if seed is None:
        return [None] * count
    if isinstance(seed, bool):
        raise ValueError(f"seed: expected an integer or {count} of them, got {seed!r}")
    if isinstance(seed, int):
        return [seed + i for i in range(count)]
    seeds = list(seed)
    if len(seeds) != count:
        raise ValueError(f"seed: expected {count} seeds (one per sub-env), got {len(seeds)}")
    return seeds


class LoadBalanceVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """num_envs LoadBalanceEnv(scenario, **env_kwargs) in one batch.

    Observations (num_envs, num_servers, 12) float32, actions (num_envs, num_servers),
    rewards/terminations/truncations (num_envs,); info holds each LoadBalanceEnv info
    key as an array over the sub-envs (utilization and weights (num_envs, num_servers)),
    with Gymnasium's "_key" masks (all True: every sub-env reports every key).

    max_episode_steps (make_vec passes the registration's) truncates an episode after
    that many step() calls, as gymnasium.make's TimeLimit does for the single env; the
    scenario's end truncates it too.  parallel=False steps the engines on one thread.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - gymnasium's convention
        "render_modes": list(RENDER_MODES),
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Scenario | None = None,
        *,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        parallel: bool = True,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: expected a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and not (
            isinstance(max_episode_steps, int) and max_episode_steps >= 1
        ):
            raise ValueError(
                f"max_episode_steps: expected a positive integer or None, got {max_episode_steps!r}"
            )
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED)
        mode = next((m for m in modes if autoreset_mode in (m, m.value)), None)
        if mode is None:
            raise ValueError(
                f"autoreset_mode: expected {' or '.join(m.value for m in modes)}, "
                f"got {autoreset_mode!r}"
            )
        self.autoreset_mode = mode
        self.render_mode = check_render_mode(render_mode)
        # The single env validates the arguments and holds the definitions: the scenario,
        # the action and reward specs, the spaces.  It never steps.
        self.template = LoadBalanceEnv(scenario, **env_kwargs)
        t = self.template
        self.num_envs = num_envs
        self.scenario, self.lb, self.tau = t.scenario, t.lb, t.tau
        self.num_servers = n = t.num_servers
        self.capacities = t.capacities
        self.max_episode_steps = max_episode_steps
        self.parallel = parallel
        self.metadata = {
            **type(self).metadata,
            "render_fps": t.metadata["render_fps"],
            "autoreset_mode": mode,
        }
        self.single_observation_space = t.observation_space
        self.single_action_space = t.action_space
        self.observation_space = batch_space(t.observation_space, num_envs)
        self.action_space = batch_space(t.action_space, num_envs)
        self._tiled_caps = np.tile(self.capacities, num_envs)
        self._feats = np.zeros((num_envs, 1, n, features.NUM_FEATURES))
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._batch: EngineBatch | None = None
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._first = first_weights(self.scenario.dispatch, self.capacities)
        self._weights = np.tile(self._first, (num_envs, 1))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(writable_state(state))

    @property
    def engines(self) -> list[Any]:
        """The sub-envs' engines (after reset())."""
        if self._batch is None:
            raise RuntimeError("call reset() before step()")
        return self._batch.engines

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Every sub-env's first interval; seed s seeds sub-env i with s + i.  With
        options={"reset_mask": mask} (a bool (num_envs,) array) only the masked sub-envs
        start a new episode; the others' observations are their latest, and the info's
        "_key" masks are the reset mask."""
        count = self.num_envs
        mask = (options or {}).get("reset_mask")
        seeds = sub_env_seeds(seed, count)
        if mask is not None:
            return self._reset_some(mask, seeds)
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(s)[0]
        engines = [episode_engine(self.scenario, rng) for rng in self._generators()]
        self._batch = EngineBatch(engines, parallel=self.parallel)
        self._elapsed[:] = 0
        self._autoreset[:] = False
        obs, _, _, _, info = self._advance(np.tile(self._first, (count, 1)), None)
        return obs, info

    def _reset_some(self, mask: Any, seeds: list[int | None]) -> tuple[np.ndarray, dict[str, Any]]:
        count = self.num_envs
        mask = checked_reset_mask(mask, count, self._batch is not None)
        batch = self._batch
        assert batch is not None  # checked
        for i in np.flatnonzero(mask).tolist():
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
            batch[i] = episode_engine(self.scenario, self._generators()[i])
        self._elapsed[mask] = 0
        weights = self._weights.copy()
        weights[mask] = self._first
        obs, _, _, _, info = self._advance(weights, None, only=mask)
        info.update({f"_{k}": mask.copy() for k in _INFO_KEYS})
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._batch is None:
            raise RuntimeError("call reset() before step()")
        count, n = self.num_envs, self.num_servers
        a = np.asarray(actions)
        if a.shape != (count, n):
            raise ValueError(f"actions: expected shape ({count}, {n}), got {a.shape}")
        weights = self.template.action_spec.weights(a.reshape(count * n), self._tiled_caps)
        weights = weights.reshape(count, n)
        resetting = None
        if self.autoreset_mode is AutoresetMode.DISABLED and self._autoreset.any():
            ended = np.flatnonzero(self._autoreset).tolist()
            raise RuntimeError(
                f"sub-envs {ended}: their episodes ended; reset them first "
                "(reset(options={'reset_mask': mask}): autoreset is disabled)"
            )
        if self._autoreset.any():
            resetting = self._autoreset.copy()
            for i in np.flatnonzero(resetting).tolist():
                self._batch[i] = episode_engine(self.scenario, self._generators()[i])
            weights[resetting] = self._first
            self._elapsed[resetting] = 0
        return self._advance(weights, resetting)

    def render(self) -> tuple[str, ...] | None:
        """Each sub-env's text table (render_mode "ansi"), else None."""
        if self.render_mode is None:
            return None
        return tuple(ansi_table(e, range(self.lb, self.lb + 1)) for e in self.engines)

    def _generators(self) -> list[np.random.Generator]:
        rngs = self._rngs
        assert all(r is not None for r in rngs)
        return rngs  # type: ignore[return-value]

    def _advance(
        self, weights: np.ndarray, resetting: np.ndarray | None, only: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        batch = self._batch
        assert batch is not None
        truth, totals, n_fct = batch.advance(
            self._feats, weights, lb=self.lb, first_lb=self.lb, tau=self.tau, only=only
        )
        self._weights = weights
        feats = self._feats[:, 0]
        active = [e.active for e in batch.engines] if self.template.reward_spec.fn else []
        rewards, fct_mean, fct_p90 = self.template.reward_spec.batch_step(feats, n_fct, active)
        self._elapsed += 1 if only is None else only
        truncated = batch.done
        if self.max_episode_steps is not None:
            truncated |= self._elapsed > self.max_episode_steps
        if resetting is not None:
            rewards[resetting] = 0.0
            truncated[resetting] = False
        self._autoreset = truncated.copy()
        info = {
            "t": batch.t.copy(),
            "fct_mean": fct_mean,
            "fct_p90_max": fct_p90,
            "completed": totals[:, 0].copy(),
            "rejected": totals[:, 1].copy(),
            "utilization": truth[:, 0],
            "weights": weights,
        }
        mask = np.ones(self.num_envs, dtype=bool)
        info.update({f"_{k}": mask for k in _INFO_KEYS})
        terminated = np.zeros(self.num_envs, dtype=bool)  # no terminal state: time runs out
        return feats.astype(np.float32), rewards, terminated, truncated, info
