"""The fallback state machine, edge by edge, on an injected clock (no sleeps)."""

from __future__ import annotations

import pytest

from marllbd.daemon.fallback import Event, FallbackState, Mode, Reason

RETRY_AFTER = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def in_mode(mode: Mode, clock: Clock) -> FallbackState:
    """A state machine brought to `mode` through ordinary events."""
    s = FallbackState(RETRY_AFTER, clock=clock)
    path = {
        Mode.POLICY: [],
        Mode.BACKOFF: [Event.RAISED],
        Mode.RETRY: [Event.BUSY],
        Mode.UNUSABLE: [Event.RESET_FAILED],
    }[mode]
    for event in path:
        s.step(event)
    assert s.mode is mode
    return s


FAILURES = [
    (Event.RAISED, Reason.ERROR),
    (Event.TIMED_OUT, Reason.TIMEOUT),
    (Event.INVALID_WEIGHTS, Reason.INVALID_WEIGHTS),
]

# (mode before, event) -> (mode after, reason after); every pair of the machine.
EDGES: dict[tuple[Mode, Event], tuple[Mode, Reason | None]] = {
    (Mode.POLICY, Event.RESET_OK): (Mode.POLICY, None),
    (Mode.BACKOFF, Event.RESET_OK): (Mode.RETRY, Reason.ERROR),
    (Mode.RETRY, Event.RESET_OK): (Mode.RETRY, Reason.BUSY),
    (Mode.UNUSABLE, Event.RESET_OK): (Mode.RETRY, Reason.UNUSABLE),
    **{(m, Event.RESET_FAILED): (Mode.UNUSABLE, Reason.UNUSABLE) for m in Mode},
    **{(m, Event.DECIDED): (Mode.POLICY, None) for m in Mode},
    **{
        (m, e): (Mode.BACKOFF, r)
        for e, r in FAILURES
        for m in (Mode.POLICY, Mode.RETRY, Mode.BACKOFF)
    },
    **{(Mode.UNUSABLE, e): (Mode.UNUSABLE, Reason.UNUSABLE) for e, _ in FAILURES},
    (Mode.POLICY, Event.BUSY): (Mode.RETRY, Reason.BUSY),
    (Mode.RETRY, Event.BUSY): (Mode.RETRY, Reason.BUSY),
    (Mode.BACKOFF, Event.BUSY): (Mode.BACKOFF, Reason.ERROR),
    (Mode.UNUSABLE, Event.BUSY): (Mode.UNUSABLE, Reason.UNUSABLE),
    # TICK before the backoff's time is up (the expiry has its own test).
    (Mode.POLICY, Event.TICK): (Mode.POLICY, None),
    (Mode.BACKOFF, Event.TICK): (Mode.BACKOFF, Reason.ERROR),
    (Mode.RETRY, Event.TICK): (Mode.RETRY, Reason.BUSY),
    (Mode.UNUSABLE, Event.TICK): (Mode.UNUSABLE, Reason.UNUSABLE),
}


def test_the_table_covers_every_mode_and_event() -> None:
    assert set(EDGES) == {(m, e) for m in Mode for e in Event}


@pytest.mark.parametrize(("before", "event"), sorted(EDGES))
def test_edge(before: Mode, event: Event) -> None:
    clock = Clock()
    s = in_mode(before, clock)
    after, reason = EDGES[before, event]
    t = s.step(event)
    assert (s.mode, s.reason) == (after, reason)
    assert (t.before, t.after, t.event) == (before, after, event)
    assert s.policy_turn == (after in (Mode.POLICY, Mode.RETRY))
    assert s.active == (after is not Mode.POLICY)
    assert t.entered == (before is Mode.POLICY and after is not Mode.POLICY)
    assert t.left == (before is not Mode.POLICY and after is Mode.POLICY)
    if t.left:
        assert t.reason is not None and t.reason == in_mode(before, clock).reason


def test_backoff_lasts_retry_after_on_the_clock() -> None:
    clock = Clock()
    s = FallbackState(RETRY_AFTER, clock=clock)
    s.step(Event.TIMED_OUT)
    assert s.retry_at == 100.0 + RETRY_AFTER and not s.policy_turn
    clock.now = 100.0 + RETRY_AFTER - 1e-9
    assert s.step(Event.TICK).after is Mode.BACKOFF
    clock.now = 100.0 + RETRY_AFTER
    t = s.step(Event.TICK)
    assert t.after is Mode.RETRY and s.policy_turn and s.reason is Reason.TIMEOUT
    assert not t.left  # still flagged as fallback until the policy succeeds


def test_a_failure_in_backoff_or_retry_restarts_the_backoff() -> None:
    clock = Clock()
    s = FallbackState(RETRY_AFTER, clock=clock)
    s.step(Event.RAISED)
    clock.now += 3
    s.step(Event.INVALID_WEIGHTS)
    assert s.retry_at == clock.now + RETRY_AFTER and s.reason is Reason.INVALID_WEIGHTS
    clock.now += RETRY_AFTER
    s.step(Event.TICK)
    assert s.mode is Mode.RETRY
    s.step(Event.RAISED)  # the retry failed: back off again, from now
    assert s.mode is Mode.BACKOFF and s.retry_at == clock.now + RETRY_AFTER


def test_retry_after_change_applies_to_the_next_failure() -> None:
    clock = Clock()
    s = FallbackState(RETRY_AFTER, clock=clock)
    s.step(Event.RAISED)
    s.retry_after = 1.0  # a reload
    assert s.retry_at == 100.0 + RETRY_AFTER
    s.step(Event.RAISED)
    assert s.retry_at == 101.0


def test_unusable_never_times_out() -> None:
    clock = Clock()
    s = in_mode(Mode.UNUSABLE, clock)
    clock.now += 1e9
    assert s.step(Event.TICK).after is Mode.UNUSABLE and not s.policy_turn


def test_a_full_episode_enters_and_leaves_once() -> None:
    clock = Clock()
    s = FallbackState(RETRY_AFTER, clock=clock)
    changes = []
    for event, dt in [
        (Event.DECIDED, 0),
        (Event.RAISED, 0),
        (Event.TICK, 1),
        (Event.TICK, RETRY_AFTER),
        (Event.BUSY, 0),
        (Event.DECIDED, 0),
    ]:
        clock.now += dt
        t = s.step(event)
        changes += ["entered"] * t.entered + ["left"] * t.left
    assert changes == ["entered", "left"] and s.mode is Mode.POLICY and s.reason is None
