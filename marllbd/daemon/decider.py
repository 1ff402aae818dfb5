"""The decision step: the configured policy within its budget, else the fallback.

A bounded policy runs on the event loop (no thread hand-off); any other runs in a
worker thread under `asyncio.timeout`.  Which of the two policies decides is the
FallbackState's business; this module feeds it events and reports its changes
(logs, marllbd_fallback_active, marllbd_fallbacks_total).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import structlog

from marllbd.daemon import config as cfg
from marllbd.daemon.fallback import Event, FallbackState, Reason
from marllbd.daemon.metrics import Metrics
from marllbd.ipc.weights import WeightsError, check_weights
from marllbd.policies import Policy, PolicyContext, PolicyError, is_bounded, warm_call
from marllbd.policies import load as load_policy

log = structlog.get_logger("marllbd")


def load_policies(config: cfg.PolicyConfig) -> tuple[Policy, Policy]:
    """(policy, fallback), or an error naming the bad key (nothing half-loaded)."""
    loaded = []
    for key in ("fallback", "name"):
        try:
            loaded.append(load_policy(getattr(config, key)))
        except PolicyError as exc:
            raise PolicyError(f"policy.{key}: {exc}") from None
    fallback, policy = loaded
    return policy, fallback


class Decider:
    def __init__(self, config: cfg.PolicyConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.policy, self.fallback = load_policies(config)
        self.state = FallbackState(config.retry_after)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self._pending: Future[np.ndarray] | None = None
        """The worker thread's call in flight, if any."""
        self._demoted: object | None = None
        """A bounded policy that overran its budget on the loop: it runs in the thread now."""

    def swap(self, config: cfg.PolicyConfig, policy: Policy, fallback: Policy) -> None:
        """Serve new (already loaded) policies; `reset` starts them on a region."""
        self.config, self.policy, self.fallback = config, policy, fallback
        self.state.retry_after = config.retry_after

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _step(self, event: Event) -> None:
        t = self.state.step(event)
        if t.entered:
            log.warning("fallback_entered", reason=t.reason)
            self.metrics.fallback_active.set(1)
        elif t.left:
            log.info("fallback_left", after=t.reason)
            self.metrics.fallback_active.set(0)

    def reset(self, ctx: PolicyContext) -> None:
        """Start both policies on a region's servers.  A policy that cannot serve them
        (e.g. a checkpoint for another server count) leaves decisions to the fallback."""
        self.fallback.reset(ctx)
        try:
            self.policy.reset(ctx)
        except Exception as exc:
            log.error("policy_unusable", policy=self.config.name, error=str(exc))
            self._step(Event.RESET_FAILED)
            return
        self._step(Event.RESET_OK)

    async def decide(
        self, feats: np.ndarray, active: np.ndarray, max_ratio: float
    ) -> tuple[np.ndarray, Reason | None]:
        """The policy's weights, or the fallback's with the reason the policy was not used."""
        self._step(Event.TICK)
        if self.state.policy_turn:
            if self._pending is not None and not self._pending.done():
                self._step(Event.BUSY)
            else:
                event = await self._call_policy(feats, active, max_ratio)
                if isinstance(event, np.ndarray):
                    self._step(Event.DECIDED)
                    return event, None
                self._step(event)
        reason = self.state.reason
        assert reason is not None
        self.metrics.fallbacks.labels(reason=reason).inc()
        return np.asarray(self.fallback.decide(feats, active, None), dtype=np.float64), reason

    async def _call_policy(
        self, feats: np.ndarray, active: np.ndarray, max_ratio: float
    ) -> np.ndarray | Event:
        """The policy's checked weights, or the event its failure is."""
        budget = self.config.budget
        try:
            if is_bounded(self.policy) and self.policy is not self._demoted:
                w = self._decide_inline(feats, active, budget)
            else:
                fut = self._executor.submit(self.policy.decide, feats, active, None)
                self._pending = fut
                async with asyncio.timeout(budget):  # not wait_for: see channels.Latest
                    w = await asyncio.wrap_future(fut, loop=asyncio.get_running_loop())
            weights = np.asarray(w, dtype=np.float64)
            check_weights(weights, feats.shape[0], max_ratio)
        except TimeoutError:
            return Event.TIMED_OUT
        except WeightsError as exc:
            log.warning("policy_invalid_weights", error=str(exc))
            return Event.INVALID_WEIGHTS
        except Exception as exc:
            log.warning("policy_failed", error=repr(exc))
            return Event.RAISED
        return weights

    def _decide_inline(self, feats: np.ndarray, active: np.ndarray, budget: float) -> np.ndarray:
        """A bounded policy runs on the loop: no thread hand-off, whose wake-ups cost
        hundreds of µs on an idle (virtual) machine.  One that overruns its budget all
        the same loses the privilege: its later calls go to the worker thread."""
        t0 = time.perf_counter()
        w = self.policy.decide(feats, active, None)
        took = time.perf_counter() - t0
        if took > budget:
            self._demoted = self.policy
            log.warning("policy_overran_inline", took=round(took, 6), budget=budget)
            raise TimeoutError
        return w

    def warm(self, feats: np.ndarray, active: np.ndarray, max_ratio: float) -> None:
        """The side-effect-free `warm` of whichever policy decides next (bounded policies
        only: it runs on the loop) and the weights check, results unused."""
        self._step(Event.TICK)
        policy = self.policy if self.state.policy_turn else self.fallback
        warm = warm_call(policy) if is_bounded(policy) and policy is not self._demoted else None
        if warm is not None:
            w = np.asarray(warm(feats, active), dtype=np.float64)
            check_weights(w, feats.shape[0], max_ratio)
