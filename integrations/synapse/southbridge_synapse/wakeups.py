"""How often one remote server may be woken in southbridge because it contacted us."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable


class WakeLimiter:
    """Lets each server through at most once per `interval_s`.

    It remembers only the servers let through within the last interval, and at most
    `capacity` of them: past that the one let through longest ago is forgotten (and may be
    let through again early), so memory stays bounded however many servers contact us.
    `now` is a monotonic clock in seconds.
    """

    def __init__(self, interval_s: float, capacity: int, now: Callable[[], float]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._interval_s = interval_s
        self._capacity = capacity
        self._now = now
        # server -> when it was let through, oldest first
        self._let_through_at: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._let_through_at)

    def allow(self, server: str) -> bool:
        """Whether `server` may be woken now; if so, it is not again for `interval_s`."""
        now = self._now()
        while self._let_through_at:
            oldest, at = next(iter(self._let_through_at.items()))
            if now - at < self._interval_s:
                break
            del self._let_through_at[oldest]
        if server in self._let_through_at:
            return False
        if len(self._let_through_at) >= self._capacity:
            self._let_through_at.popitem(last=False)
        self._let_through_at[server] = now
        return True

    def forget(self, server: str) -> None:
        """Lets `server` through on its next `allow`: its wake-up did not reach southbridge."""
        self._let_through_at.pop(server, None)
