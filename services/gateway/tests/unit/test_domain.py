"""Unit tests of the gateway's pure logic: breaker, sticky split, routing table, fallback."""

from __future__ import annotations

import pytest

from hindsight.gateway.domain.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Transition,
)
from hindsight.gateway.domain.fallback import (
    Attempt,
    Budget,
    FallbackReason,
    Outcome,
    fallback_reason,
    is_no_model,
)
from hindsight.gateway.domain.routing import (
    ARM_CANDIDATE,
    ARM_CONTROL,
    Completed,
    Deployed,
    RoutingTable,
    bucket,
)

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**config: float) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    clock = FakeClock()
    seen: list[Transition] = []
    breaker = CircuitBreaker("s1", BreakerConfig(**config), clock=clock, on_transition=seen.append)  # type: ignore[arg-type]
    return breaker, clock, seen


def calls(breaker: CircuitBreaker, n: int, *, fail: bool = False, duration: float = 0.001) -> None:
    for _ in range(n):
        assert breaker.try_acquire()
        if fail:
            breaker.record_failure(duration)
        else:
            breaker.record_success(duration)


# --- breaker -------------------------------------------------------------------------


def test_opens_on_failure_rate_once_min_calls_reached() -> None:
    breaker, _, seen = make()
    calls(breaker, 5)
    calls(breaker, 4, fail=True)  # 9 calls: below min_calls=10, stays closed
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, 1, fail=True)  # 10 calls, 5 failures = 50 %
    assert breaker.state is BreakerState.OPEN
    assert not breaker.try_acquire()
    assert [(t.from_state, t.to_state) for t in seen] == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert "failure rate" in seen[0].reason


def test_min_calls_respected_even_when_all_fail() -> None:
    breaker, _, _ = make()
    calls(breaker, 9, fail=True)
    assert breaker.state is BreakerState.CLOSED


def test_below_failure_threshold_stays_closed_and_window_slides() -> None:
    breaker, _, _ = make()
    calls(breaker, 4, fail=True)
    calls(breaker, 16)  # 4 of 20 failed
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, 20)  # the old failures slide out of the window
    calls(breaker, 9, fail=True)  # 9 of 20
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, 1, fail=True)  # 10 of 20 = 50 %
    assert breaker.state is BreakerState.OPEN


def test_opens_on_slow_call_rate() -> None:
    breaker, _, seen = make()
    calls(breaker, 2)
    calls(breaker, 7, duration=0.060)
    assert breaker.state is BreakerState.CLOSED  # 9 calls < min
    calls(breaker, 1, duration=0.060)  # 8 of 10 slow = 80 %
    assert breaker.state is BreakerState.OPEN
    assert "slow-call rate" in seen[-1].reason


def test_slow_rate_below_threshold_stays_closed() -> None:
    breaker, _, _ = make()
    calls(breaker, 3)
    calls(breaker, 7, duration=0.060)  # 70 %
    assert breaker.state is BreakerState.CLOSED


def test_half_open_after_wait_admits_probes_then_closes() -> None:
    breaker, clock, seen = make()
    calls(breaker, 10, fail=True)
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert not breaker.try_acquire()
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    assert [breaker.try_acquire() for _ in range(4)] == [True, True, True, False]
    breaker.record_success(0.001)
    breaker.record_success(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(0.001)
    assert breaker.state is BreakerState.CLOSED
    assert [t.to_state for t in seen] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
    # A fresh window: 9 failures do not reopen it.
    calls(breaker, 9, fail=True)
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_reopens() -> None:
    breaker, clock, seen = make()
    calls(breaker, 10, fail=True)
    clock.now += 5.0
    assert breaker.try_acquire() and breaker.try_acquire()
    breaker.record_success(0.001)
    breaker.record_failure(0.001)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.try_acquire()
    assert seen[-1].reason.startswith("1 of 2 probe")
    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN


def test_released_probe_gives_its_permission_back() -> None:
    breaker, clock, _ = make(half_open_calls=1)
    calls(breaker, 10, fail=True)
    clock.now += 5.0
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.release()  # e.g. INVALID_ARGUMENT: neither success nor failure
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()
    breaker.record_success(0.001)
    assert breaker.state is BreakerState.CLOSED


def test_released_calls_do_not_count_in_closed_state() -> None:
    breaker, _, _ = make()
    for _ in range(30):
        assert breaker.try_acquire()
        breaker.release()
    calls(breaker, 9, fail=True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().calls == 9


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(window_size=5, min_calls=10)
    with pytest.raises(ValueError):
        BreakerConfig(failure_rate=0)


# --- sticky split and routing ----------------------------------------------------------


def test_sticky_split_90_10_within_one_and_a_half_points() -> None:
    table = RoutingTable()
    table.apply(Deployed("m", "v1", "production"))
    table.apply(Deployed("m", "v2", "canary", "exp-1", {"v1": 0.9, "v2": 0.1}))
    ids = [f"signal-{i}" for i in range(10_000)]
    arms = [table.route("m", s).arm for s in ids]
    share = arms.count(ARM_CANDIDATE) / len(ids)
    assert abs(share - 0.10) <= 0.015, share
    assert set(arms) == {ARM_CONTROL, ARM_CANDIDATE}
    # The same signal_id always lands in the same arm.
    assert [table.route("m", s).arm for s in ids] == arms


def test_bucket_follows_the_contract() -> None:
    import hashlib

    digest = hashlib.sha256(b"exp-1:abc").digest()
    assert bucket("exp-1", "abc") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0.0 <= bucket("e", "s") < 1.0


def test_candidate_route_pins_the_version() -> None:
    table = RoutingTable()
    table.apply(Deployed("m", "v2", "canary", "exp-1", {"v1": 0.0, "v2": 1.0}))
    route = table.route("m", "any")
    assert (route.model_version, route.arm, route.experiment_id) == ("v2", "candidate", "exp-1")
    control = RoutingTable()
    control.apply(Deployed("m", "v2", "canary", "exp-1", {"v1": 1.0, "v2": 0.0}))
    assert control.route("m", "any").model_version is None
    assert control.route("m", "any").arm == ARM_CONTROL
    assert table.route("other-model", "any").arm == ""


def test_routing_table_folds_the_experiment_lifecycle() -> None:
    table = RoutingTable()
    table.apply(Deployed("m", "v1", "production"))
    assert table.route("m", "s").arm == ""
    table.apply(Deployed("m", "v2", "canary", "ab-1", {"v1": 0.5, "v2": 0.5}))
    table.apply(Deployed("m", "v3", "shadow", "sh-1"))
    route = table.route("m", "s")
    assert route.experiment_id == "ab-1"
    assert [e.version for e in route.shadows] == ["v3"]
    snap = table.snapshot()[0]
    assert snap.production_version == "v1"
    assert [e.experiment_id for e in snap.experiments] == ["ab-1", "sh-1"]
    table.apply(Completed("ab-1", "m", "keep"))
    assert table.route("m", "s").arm == ""
    assert [e.version for e in table.route("m", "s").shadows] == ["v3"]
    table.apply(Deployed("m", "v3", "retired"))  # shadow version unloaded: shadow ends
    assert table.route("m", "s").shadows == ()
    # A promoted candidate ends its experiment even without ab.completed.
    table.apply(Deployed("m", "v4", "canary", "ab-2", {"v1": 0.1, "v4": 0.9}))
    table.apply(Deployed("m", "v4", "production"))
    assert table.route("m", "s").arm == ""
    assert table.production("m") == "v4"
    # Replaying the same events again changes nothing.
    again = RoutingTable()
    for event in [Deployed("m", "v4", "production")] * 2:
        again.apply(event)
    assert again.snapshot() == table.snapshot()


def test_canary_without_experiment_id_does_not_route() -> None:
    table = RoutingTable()
    table.apply(Deployed("m", "v2", "canary", None, {"v2": 1.0}))
    assert table.route("m", "s").arm == ""


# --- fallback reasons and budget -------------------------------------------------------


def test_fallback_reasons() -> None:
    assert fallback_reason([], refused_by_breaker=2, budget_left=True) is (
        FallbackReason.BREAKER_OPEN
    )
    assert fallback_reason([], refused_by_breaker=0, budget_left=False) is FallbackReason.DEADLINE
    unavailable = Attempt("a", Outcome.UNAVAILABLE)
    assert fallback_reason([unavailable], refused_by_breaker=1, budget_left=True) is (
        FallbackReason.UNAVAILABLE
    )
    assert fallback_reason([unavailable], refused_by_breaker=0, budget_left=False) is (
        FallbackReason.DEADLINE
    )
    assert (
        fallback_reason([Attempt("a", Outcome.DEADLINE)], refused_by_breaker=0, budget_left=True)
        is FallbackReason.DEADLINE
    )
    assert (
        fallback_reason(
            [Attempt("a", Outcome.NO_MODEL), unavailable], refused_by_breaker=0, budget_left=True
        )
        is FallbackReason.NO_MODEL
    )
    assert is_no_model("no model loaded yet")
    assert is_no_model("no production version of 'm' is loaded")
    assert not is_no_model("connection refused")


def test_budget_uses_the_caller_deadline_or_the_default() -> None:
    budget = Budget.plan(10.0, caller_remaining_s=0.5, default_s=0.1, margin_s=0.002)
    assert budget.remaining(10.0) == pytest.approx(0.498)
    default = Budget.plan(10.0, caller_remaining_s=None, default_s=0.1, margin_s=0.002)
    assert default.remaining(10.05) == pytest.approx(0.048)
    assert default.remaining(11.0) == 0.0
    tiny = Budget.plan(10.0, caller_remaining_s=0.001, default_s=0.1, margin_s=0.002)
    assert tiny.remaining(10.0) == 0.0
    ratio = Budget.plan(
        10.0, caller_remaining_s=1.0, default_s=0.1, margin_s=0.005, margin_ratio=0.1
    )
    assert ratio.remaining(10.0) == pytest.approx(0.9)
