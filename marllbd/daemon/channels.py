"""Latest-value mailboxes: a consumer always gets the newest item, never a backlog."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    """Holds at most one item; put() replaces an unread one (counted as dropped)."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._event = asyncio.Event()
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store item; True when it replaced one nobody had taken (that one is dropped)."""
        replaced = self._event.is_set()
        if replaced:
            self.dropped += 1
        self._item = item
        self._event.set()
        return replaced

    async def get(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to `timeout` seconds; None on timeout."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that lands in the same loop iteration as the item, and the task never stops.
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return None
        self._event.clear()
        item, self._item = self._item, None
        return item

    def clear(self) -> None:
        self._event.clear()
        self._item = None
