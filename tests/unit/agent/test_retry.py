"""The agent's backoff: waits grow, are capped and jittered, the total is bounded, and only
an unavailable service is retried. Nothing here sleeps: the clock and sleep are fakes."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from agent import AgentSettings
from agent._agent import Agent
from agent._retry import Backoff, GaveUp, Retrying
from exchange.errors import (
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SamenloopError,
    Unavailable,
)


def seeded(seed: int) -> Callable[[], float]:
    """Reproducible draws for the jitter (not for secrets)."""
    return random.Random(seed).random  # noqa: S311


class FakeTime:
    """A monotonic clock that moves only when slept on (and by ``per_call`` per attempt)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def failing(times: int, time: FakeTime, *, cost: float = 0.0,
            error: SamenloopError | None = None) -> Callable[[], str]:
    """An operation that fails ``times`` times (each attempt taking ``cost`` seconds)."""
    calls = {"n": 0}

    def operation() -> str:
        time.now += cost
        calls["n"] += 1
        if calls["n"] <= times:
            raise error or Unavailable("the hub at 127.0.0.1:9 is unavailable: refused")
        return "answer"

    return operation


def test_waits_grow_until_the_cap_and_stay_within_their_jitter_bounds() -> None:
    time = FakeTime()
    backoff = Backoff(budget=3600)
    retrying = Retrying(backoff, sleep=time.sleep, clock=time.clock,
                        draw=seeded(7))
    assert retrying(failing(14, time), "hub") == "answer"
    assert len(time.sleeps) == 14
    ceilings = [backoff.ceiling(n) for n in range(14)]
    assert ceilings[:7] == [0.5, 1, 2, 4, 8, 16, 30]  # doubling, then capped
    assert set(ceilings[6:]) == {30.0}
    for wait, ceiling in zip(time.sleeps, ceilings, strict=True):
        assert ceiling * (1 - backoff.jitter) <= wait <= ceiling
    assert len(set(time.sleeps)) == len(time.sleeps)  # jittered, not a fixed schedule


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
def test_with_any_draw_each_wait_is_longer_than_the_one_two_before_until_capped(
        draw: float) -> None:
    time = FakeTime()
    retrying = Retrying(Backoff(budget=3600), sleep=time.sleep, clock=time.clock,
                        draw=lambda: draw)
    retrying(failing(10, time), "key service")
    waits = time.sleeps
    assert all(later >= earlier for earlier, later in itertools.pairwise(waits))
    assert max(waits) <= 30.0
    assert min(waits) >= 0.25


def test_the_extremes_of_the_jitter() -> None:
    backoff = Backoff(budget=10)
    assert backoff.wait(0, 0.0) == 0.5
    assert backoff.wait(0, 1.0) == 0.25
    assert backoff.wait(3, 0.0) == 4.0
    assert backoff.wait(10_000, 0.0) == 30.0  # no overflow on a very long outage


@pytest.mark.parametrize(("budget", "cost"), [(300.0, 0.0), (300.0, 0.7), (5.0, 2.0),
                                              (0.1, 0.0)])
def test_the_total_time_is_bounded_by_the_budget(budget: float, cost: float) -> None:
    time = FakeTime()
    retrying = Retrying(Backoff(budget=budget), sleep=time.sleep, clock=time.clock,
                        draw=seeded(1))
    operation = failing(10**6, time, cost=cost)
    start = time.now
    with pytest.raises(GaveUp) as gave_up:
        retrying(operation, "hub")
    first_failure = start + cost
    # Waiting stops at the budget; the last attempt may start just before it ends.
    assert sum(time.sleeps) <= budget + 1e-9
    assert time.now - first_failure <= budget + cost + 1e-9
    assert math.isclose(gave_up.value.waited, time.now - first_failure)
    assert gave_up.value.service == "hub"
    assert gave_up.value.attempts == len(time.sleeps) + 1
    message = str(gave_up.value)
    assert message.startswith("the hub at 127.0.0.1:9 is unavailable: refused")
    assert f"still unavailable after {gave_up.value.attempts} attempts in" in message
    assert "\n" not in message
    assert isinstance(gave_up.value, Unavailable)


def test_the_last_wait_is_cut_to_end_on_time() -> None:
    time = FakeTime()
    retrying = Retrying(Backoff(budget=10.0), sleep=time.sleep, clock=time.clock,
                        draw=lambda: 0.0)
    with pytest.raises(GaveUp):
        retrying(failing(10**6, time), "hub")
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 2.5]  # 0.5 + 1 + 2 + 4 = 7.5; 2.5 left


def test_a_zero_budget_never_retries() -> None:
    time = FakeTime()
    original = Unavailable("the key service at 127.0.0.1:9 is unavailable: refused")
    retrying = Retrying(Backoff(budget=0), sleep=time.sleep, clock=time.clock)
    with pytest.raises(Unavailable) as raised:
        retrying(failing(1, time, error=original), "key service")
    assert raised.value is original
    assert time.sleeps == []


@pytest.mark.parametrize("refusal", [InvalidInput("category: unknown"),
                                     PermissionDenied("not a partner"),
                                     FailedPrecondition("key rotated"),
                                     NotFound("signal x not found"),
                                     SamenloopError("the hub: internal")])
def test_a_refused_request_is_never_retried(refusal: SamenloopError) -> None:
    time = FakeTime()
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise refusal

    retrying = Retrying(Backoff(budget=300), sleep=time.sleep, clock=time.clock)
    with pytest.raises(type(refusal)) as raised:
        retrying(operation, "hub")
    assert raised.value is refusal
    assert (calls, time.sleeps) == ([1], [])


def test_a_fresh_connection_is_made_before_each_retry() -> None:
    time = FakeTime()
    events: list[str] = []

    def operation() -> str:
        events.append("call")
        if len(events) < 5:
            raise Unavailable("down")
        return "ok"

    def reconnect() -> None:
        events.append("reconnect")

    retrying = Retrying(Backoff(budget=60), sleep=time.sleep, clock=time.clock)
    assert retrying(operation, "hub", reconnect=reconnect) == "ok"
    assert events == ["call", "reconnect", "call", "reconnect", "call"]


def test_each_retry_is_logged_with_the_service_and_counts_only() -> None:
    time = FakeTime()
    retrying = Retrying(Backoff(budget=2.0), sleep=time.sleep, clock=time.clock,
                        draw=lambda: 0.0)
    with capture_logs() as logs, pytest.raises(GaveUp):
        retrying(failing(10**6, time, error=Unavailable("secret 123456782")), "hub")
    retries = [e for e in logs if e["event"] == "service unavailable, retrying"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert all(e["log_level"] == "warning" and e["service"] == "hub" for e in retries)
    assert logs[-1]["event"] == "service still unavailable, giving up"
    assert "123456782" not in repr(logs)  # the error's text is not logged
    with capture_logs() as logs:
        Retrying(Backoff(budget=60), sleep=time.sleep, clock=time.clock)(
            failing(1, time), "key service")
    assert logs[-1] == {"event": "service available again", "service": "key service",
                        "attempts": 2, "log_level": "warning"}


@pytest.mark.parametrize("budget", [-1.0, math.nan, math.inf])
def test_a_budget_must_be_a_finite_number_of_seconds(budget: float) -> None:
    with pytest.raises(InvalidInput, match="retry_seconds"):
        Backoff(budget=budget)


def test_the_agent_refuses_a_negative_retry_time(tmp_path: object) -> None:
    with pytest.raises(InvalidInput, match="retry_seconds must be"):
        Agent(AgentSettings(organisation="org-a", retry_seconds=-5,
                            state_database=f"sqlite:///{tmp_path}/state.db"))


def test_the_agent_retries_for_retry_seconds_by_default() -> None:
    assert AgentSettings(organisation="org-a").retry_seconds == 300.0
