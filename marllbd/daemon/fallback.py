"""Which policy decides: the configured one, or the fallback while it cannot.

One state machine, one transition function (`FallbackState.step`).  Modes:

    POLICY    the policy decides (the fallback is not active)
    BACKOFF   the policy failed; the fallback decides until `retry_at`
    RETRY     the fallback decided last; the policy is tried at the next decision
    UNUSABLE  the policy cannot serve this region (its reset failed); the fallback
              decides until a reset succeeds (re-attach or reload)

Events and edges (any pair not listed leaves the state as it is):

    RESET_OK                 BACKOFF, RETRY, UNUSABLE -> RETRY
    RESET_FAILED             any -> UNUSABLE                      reason unusable
    DECIDED                  any -> POLICY                        (fallback left)
    RAISED, TIMED_OUT,
    INVALID_WEIGHTS          POLICY, RETRY, BACKOFF -> BACKOFF    retry_at = now + retry_after
    BUSY                     POLICY, RETRY -> RETRY               reason busy
    TICK                     BACKOFF -> RETRY once now >= retry_at

Time comes from the injected clock, so the backoff is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    POLICY = "policy"
    BACKOFF = "backoff"
    RETRY = "retry"
    UNUSABLE = "unusable"


class Reason(StrEnum):
    """Why the fallback decided: the `reason` label of marllbd_fallbacks_total."""

    ERROR = "error"
    """The policy raised."""
    TIMEOUT = "timeout"
    """The policy took longer than policy.budget."""
    INVALID_WEIGHTS = "invalid_weights"
    """The policy's weights were refused (non-finite, wrong length, beyond the ratio)."""
    BUSY = "busy"
    """The policy's previous call still runs (a hung policy): calls do not pile up."""
    UNUSABLE = "unusable"
    """The policy cannot serve the region (e.g. a checkpoint for another server count)."""


class Event(StrEnum):
    RESET_OK = "reset_ok"
    RESET_FAILED = "reset_failed"
    DECIDED = "decided"
    RAISED = "raised"
    TIMED_OUT = "timed_out"
    INVALID_WEIGHTS = "invalid_weights"
    BUSY = "busy"
    TICK = "tick"


_FAILURES = {
    Event.RAISED: Reason.ERROR,
    Event.TIMED_OUT: Reason.TIMEOUT,
    Event.INVALID_WEIGHTS: Reason.INVALID_WEIGHTS,
}


@dataclass(frozen=True)
class Transition:
    event: Event
    before: Mode
    after: Mode
    reason: Reason | None
    """The reason after the event; before it, when the event ended the fallback."""

    @property
    def entered(self) -> bool:
        """The fallback became active."""
        return self.before is Mode.POLICY and self.after is not Mode.POLICY

    @property
    def left(self) -> bool:
        """The policy decides again."""
        return self.before is not Mode.POLICY and self.after is Mode.POLICY


class FallbackState:
    """The fallback state of one daemon (see the module docstring for the machine)."""

    def __init__(self, retry_after: float, clock: Callable[[], float] = time.monotonic):
        self.retry_after = retry_after
        """Seconds from a failure until the policy is tried again."""
        self.clock = clock
        self.mode = Mode.POLICY
        self.reason: Reason | None = None
        self.retry_at = 0.0
        """Clock time at which a BACKOFF ends."""

    @property
    def policy_turn(self) -> bool:
        """True when the policy is to be called (else the fallback decides, for `reason`)."""
        return self.mode in (Mode.POLICY, Mode.RETRY)

    @property
    def active(self) -> bool:
        """True while the fallback is active (the marllbd_fallback_active gauge)."""
        return self.mode is not Mode.POLICY

    def step(self, event: Event) -> Transition:
        """Apply one event; the only place the state changes."""
        before, reason, mode = self.mode, self.reason, self.mode
        match event:
            case Event.RESET_OK if mode is not Mode.POLICY:
                mode = Mode.RETRY
            case Event.RESET_FAILED:
                mode, reason = Mode.UNUSABLE, Reason.UNUSABLE
            case Event.DECIDED:
                mode = Mode.POLICY
            case Event.RAISED | Event.TIMED_OUT | Event.INVALID_WEIGHTS if (
                mode is not Mode.UNUSABLE
            ):
                mode, reason = Mode.BACKOFF, _FAILURES[event]
                self.retry_at = self.clock() + self.retry_after
            case Event.BUSY if mode in (Mode.POLICY, Mode.RETRY):
                mode, reason = Mode.RETRY, Reason.BUSY
            case Event.TICK if mode is Mode.BACKOFF and self.clock() >= self.retry_at:
                mode = Mode.RETRY
        self.mode = mode
        self.reason = None if mode is Mode.POLICY else reason
        return Transition(event, before, mode, reason)
