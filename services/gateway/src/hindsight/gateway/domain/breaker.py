"""A circuit breaker per scorer endpoint, with resilience4j's semantics.

CLOSED: every call is admitted; outcomes go to a count-based sliding window. Once the
window holds at least ``min_calls`` outcomes, a failure rate ≥ ``failure_rate`` or a
slow-call rate ≥ ``slow_rate`` opens the breaker.
OPEN: no call is admitted for ``open_s`` seconds; the next admission attempt after that
moves to HALF_OPEN (lazily, like resilience4j without automatic transition).
HALF_OPEN: exactly ``half_open_calls`` probes are admitted; when they have all ended, any
failure (or a slow rate ≥ ``slow_rate``) opens again, otherwise the breaker closes with
an empty window.

Calls that end with an ignored outcome (the client's own error, a cancelled call) give
their permission back without being recorded. The clock is injected; nothing here does I/O.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

__all__ = ["BreakerConfig", "BreakerSnapshot", "BreakerState", "CircuitBreaker", "Transition"]


class BreakerState(IntEnum):
    """Breaker states; the values are what the ``breaker_state`` metric exports."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of a breaker. These defaults are the gateway's (its settings default to
    them): change the breaker policy here."""

    window_size: int = 20
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_rate: float = 0.8
    slow_call_s: float = 0.050
    open_s: float = 5.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        if self.window_size < 1 or not 1 <= self.min_calls <= self.window_size:
            raise ValueError("need window_size >= 1 and 1 <= min_calls <= window_size")
        if not (0 < self.failure_rate <= 1 and 0 < self.slow_rate <= 1):
            raise ValueError("rates must be in (0, 1]")
        if self.slow_call_s <= 0 or self.open_s < 0 or self.half_open_calls < 1:
            raise ValueError("slow_call_s > 0, open_s >= 0 and half_open_calls >= 1 required")


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state and window counts at one moment (``GET /v1/breakers``)."""

    endpoint: str
    state: Literal["closed", "open", "half_open"]
    calls: int
    """Outcomes in the sliding window."""
    failures: int
    slow: int
    probes_admitted: int
    """Half-open probes admitted so far (0 in the other states)."""
    open_remaining_s: float
    """Seconds until an open breaker admits probes (0 in the other states)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, for logs and metrics."""

    endpoint: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str


class CircuitBreaker:
    """The breaker of one endpoint. Not thread-safe: used from one event loop."""

    def __init__(
        self,
        endpoint: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        # (failed, slow) per recorded call, newest last; counts kept alongside.
        self._window: deque[tuple[bool, bool]] = deque()
        self._failures = 0
        self._slow = 0
        self._opened_at = 0.0
        self._probes_admitted = 0
        self._probe_results: list[tuple[bool, bool]] = []

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN turns HALF_OPEN here once its wait is over)."""
        if self._state is BreakerState.OPEN and self._open_elapsed():
            self._move(BreakerState.HALF_OPEN, f"open for {self.config.open_s:g}s")
        return self._state

    def would_admit(self) -> bool:
        """Whether :meth:`try_acquire` would admit a call now (no permission taken)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            return self._probes_admitted < self.config.half_open_calls
        return False

    def try_acquire(self) -> bool:
        """Ask permission for one call; every granted call must end in one of
        :meth:`record_success`, :meth:`record_failure` or :meth:`release`."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_admitted < self.config.half_open_calls:
            self._probes_admitted += 1
            return True
        return False

    def record_success(self, duration_s: float) -> None:
        """A granted call succeeded after ``duration_s`` seconds."""
        self._record(failed=False, slow=duration_s >= self.config.slow_call_s)

    def record_failure(self, duration_s: float) -> None:
        """A granted call failed (unavailable, deadline, internal, connection)."""
        self._record(failed=True, slow=duration_s >= self.config.slow_call_s)

    def release(self) -> None:
        """A granted call ended with an ignored outcome: neither success nor failure."""
        if self._state is BreakerState.HALF_OPEN and self._probes_admitted > len(
            self._probe_results
        ):
            self._probes_admitted -= 1

    def snapshot(self) -> BreakerSnapshot:
        """State and window counts, for the HTTP API."""
        state = self.state
        names: dict[BreakerState, Literal["closed", "open", "half_open"]] = {
            BreakerState.CLOSED: "closed",
            BreakerState.OPEN: "open",
            BreakerState.HALF_OPEN: "half_open",
        }
        return BreakerSnapshot(
            endpoint=self.endpoint,
            state=names[state],
            calls=len(self._window),
            failures=self._failures,
            slow=self._slow,
            probes_admitted=self._probes_admitted if state is BreakerState.HALF_OPEN else 0,
            open_remaining_s=(
                max(0.0, self._opened_at + self.config.open_s - self._clock())
                if state is BreakerState.OPEN
                else 0.0
            ),
        )

    # --- internals -----------------------------------------------------------------

    def _open_elapsed(self) -> bool:
        return self._clock() - self._opened_at >= self.config.open_s

    def _record(self, *, failed: bool, slow: bool) -> None:
        state = self._state
        if state is BreakerState.CLOSED:
            self._push(failed, slow)
            self._check_closed()
        elif state is BreakerState.HALF_OPEN:
            self._probe_results.append((failed, slow))
            self._check_half_open()
        # OPEN: a call admitted before the breaker opened; its outcome is stale.

    def _push(self, failed: bool, slow: bool) -> None:
        window = self._window
        if len(window) == self.config.window_size:
            old_failed, old_slow = window.popleft()
            self._failures -= old_failed
            self._slow -= old_slow
        window.append((failed, slow))
        self._failures += failed
        self._slow += slow

    def _check_closed(self) -> None:
        n = len(self._window)
        if n < self.config.min_calls:
            return
        failure_rate = self._failures / n
        slow_rate = self._slow / n
        if failure_rate >= self.config.failure_rate:
            self._open(f"failure rate {failure_rate:.0%} over {n} calls")
        elif slow_rate >= self.config.slow_rate:
            self._open(f"slow-call rate {slow_rate:.0%} over {n} calls")

    def _check_half_open(self) -> None:
        results = self._probe_results
        failures = sum(failed for failed, _ in results)
        if failures:
            self._open(f"{failures} of {len(results)} probe calls failed")
            return
        if len(results) < self.config.half_open_calls:
            return
        slow_rate = sum(slow for _, slow in results) / len(results)
        if slow_rate >= self.config.slow_rate:
            self._open(f"slow-call rate {slow_rate:.0%} over {len(results)} probe calls")
        else:
            self._move(BreakerState.CLOSED, f"{len(results)} probe calls succeeded")

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._move(BreakerState.OPEN, reason)

    def _move(self, to: BreakerState, reason: str) -> None:
        before = self._state
        self._state = to
        self._window.clear()
        self._failures = self._slow = 0
        self._probes_admitted = 0
        self._probe_results = []
        if self._on_transition is not None and before is not to:
            self._on_transition(Transition(self.endpoint, before, to, reason))
