"""Retrying a call while its service is unavailable: exponential backoff with jitter.

The n-th wait (n = 0, 1, ...) is drawn uniformly from ``[c_n * (1 - jitter), c_n]`` where
``c_n = min(cap, first * factor**n)``: 0.25-0.5 s, 0.5-1 s, 1-2 s, ... up to 15-30 s. The
waits stop once ``budget`` seconds have passed since the first failure (the last wait is
cut to end on time), so a call gives up at most ``budget`` seconds plus one attempt after
it first failed. A budget of 0 never retries.

Only :class:`exchange.errors.Unavailable` is retried: the service could not be reached,
was shutting down, did not answer in time or asked the caller to slow down. A refused
request (invalid input, permission denied, a failed precondition...) is never retried:
sending it again would be refused again.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from exchange import log
from exchange.errors import InvalidInput, Unavailable

T = TypeVar("T")
_log = log.get("agent")

FIRST_WAIT = 0.5
MAX_WAIT = 30.0


class GaveUp(Unavailable):
    """A service stayed unavailable for the whole retry time."""

    def __init__(self, last: Unavailable, service: str, attempts: int, waited: float) -> None:
        super().__init__(f"{last} (still unavailable after {attempts} attempts in "
                         f"{waited:.0f} s)")
        self.service = service
        self.attempts = attempts
        self.waited = waited


@dataclass(frozen=True)
class Backoff:
    """How long to wait before each retry, and for how long to keep retrying."""

    budget: float
    first: float = FIRST_WAIT
    cap: float = MAX_WAIT
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget) and self.budget >= 0):
            raise InvalidInput("retry_seconds must be a number of seconds, 0 or more")
        if not (0 < self.first <= self.cap and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError("backoff needs 0 < first <= cap, factor >= 1, 0 <= jitter <= 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (counted from 0)."""
        # The exponent is bounded so that a long outage cannot overflow the float.
        return min(self.cap, self.first * self.factor ** min(attempt, 64))

    def wait(self, attempt: int, draw: float) -> float:
        """The wait before retry ``attempt``, for a uniform ``draw`` in [0, 1)."""
        return self.ceiling(attempt) * (1 - self.jitter * draw)


class Retrying:
    """Calls an operation, retrying it under a :class:`Backoff` while it is unavailable.

    ``sleep``, ``clock`` and ``draw`` are injectable so tests need not wait. ``reconnect``
    (per call) runs before each retry, e.g. to open a fresh channel: a gRPC channel that
    failed waits out its own reconnect backoff (up to two minutes) before trying again.
    """

    def __init__(self, backoff: Backoff, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._draw = draw

    def __call__(self, operation: Callable[[], T], service: str, *,
                 reconnect: Callable[[], None] | None = None) -> T:
        started: float | None = None
        attempt = 0
        while True:
            try:
                result = operation()
            except Unavailable as exc:
                now = self._clock()
                started = now if started is None else started
                waited = now - started
                left = self.backoff.budget - waited
                if left <= 0:
                    if self.backoff.budget == 0:
                        raise
                    _log.error("service still unavailable, giving up", service=service,
                               attempts=attempt + 1, waited_seconds=round(waited, 1))
                    raise GaveUp(exc, service, attempt + 1, waited) from None
                pause = min(self.backoff.wait(attempt, self._draw()), left)
                _log.warning("service unavailable, retrying", service=service,
                             attempt=attempt + 1, wait_seconds=round(pause, 2),
                             gives_up_in_seconds=round(left, 1))
                self._sleep(pause)
                attempt += 1
                if reconnect is not None:
                    reconnect()
                continue
            if attempt:
                _log.warning("service available again", service=service, attempts=attempt + 1)
            return result
