"""A sliding-window failure counter with lockout, per key, bounded in memory (pure)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Clock", "SlidingWindowThrottle"]

Clock = Callable[[], float]


@dataclass(slots=True)
class _Entry:
    hits: list[float] = field(default_factory=list)  # failure times, oldest first
    locked_until: float | None = None


class SlidingWindowThrottle:
    """Locks a key for ``lockout_s`` once it has ``max_failures`` failures within ``window_s``.

    A lockout that has run out starts the key afresh. At most ``max_keys`` keys are kept:
    when full, idle keys go first, then the least recently touched ones.
    """

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        max_keys: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0 or max_keys < 1:
            raise ValueError("max_failures, window_s, lockout_s and max_keys must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it is not locked."""
        now = self._clock()
        entry = self._live(key, now)
        if entry is None or entry.locked_until is None:
            return 0.0
        return entry.locked_until - now

    def failures(self, key: str) -> int:
        """Failures of ``key`` that count now (within the window, or since its lockout)."""
        entry = self._live(key, self._clock())
        return 0 if entry is None else len(entry.hits)

    def hit(self, key: str) -> bool:
        """Count one failure; True when it starts a lockout."""
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            self._evict(now, room_for=1)
            entry = self._entries[key] = _Entry()
        self._entries.move_to_end(key)
        if entry.locked_until is not None:
            return False
        entry.hits = [t for t in entry.hits if t > now - self.window_s]
        entry.hits.append(now)
        if len(entry.hits) >= self.max_failures:
            entry.locked_until = now + self.lockout_s
            return True
        return False

    def take_back(self, key: str) -> None:
        """Withdraw the latest failure (it was counted early and turned out a success).

        A lockout that no longer has its failures behind it is lifted.
        """
        entry = self._live(key, self._clock())
        if entry is None or not entry.hits:
            return
        entry.hits.pop()
        if entry.locked_until is not None and len(entry.hits) < self.max_failures:
            entry.locked_until = None
        if not entry.hits and entry.locked_until is None:
            del self._entries[key]

    def clear(self, key: str) -> None:
        """Forget every failure and any lockout of ``key``."""
        self._entries.pop(key, None)

    def _idle(self, entry: _Entry, now: float) -> bool:
        if entry.locked_until is not None:
            return entry.locked_until <= now
        return not entry.hits or entry.hits[-1] <= now - self.window_s

    def _live(self, key: str, now: float) -> _Entry | None:
        """The key's entry, dropped first when it no longer holds anything that counts."""
        entry = self._entries.get(key)
        if entry is not None and self._idle(entry, now):
            del self._entries[key]
            return None
        return entry

    def _evict(self, now: float, *, room_for: int) -> None:
        if len(self._entries) + room_for <= self.max_keys:
            return
        # Full: drop every idle key (a sweep, only when full), then the least recently
        # touched live ones that are not locked, locked ones last: memory stays bounded
        # under a flood of names, and a flood cannot lift a lockout while anything else
        # can go.
        for key in [k for k, e in self._entries.items() if self._idle(e, now)]:
            del self._entries[key]
        excess = len(self._entries) + room_for - self.max_keys
        if excess <= 0:
            return
        unlocked = [k for k, e in self._entries.items() if e.locked_until is None]
        for key in unlocked[:excess]:
            del self._entries[key]
        while self._entries and len(self._entries) + room_for > self.max_keys:
            self._entries.popitem(last=False)
