"""A circuit breaker: stop calling a service that keeps failing, try again after a pause.

Closed (calls pass) → open after ``failure_threshold`` consecutive failures (calls fail
fast, nothing is sent) → half-open once ``reset_timeout`` seconds have passed (exactly one
trial call passes) → closed if the trial succeeds, open again if it fails.

The breaker knows nothing about HTTP: the caller asks :meth:`CircuitBreaker.admit` before a
call and reports the outcome with :meth:`record_success`, :meth:`record_failure` or
:meth:`release`. It is meant for one event loop; its methods never await, so no lock is
needed between coroutines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitOpen(Exception):
    """The breaker refused the call without trying it."""


class CircuitBreaker:
    """Counts consecutive failures of one downstream service and fails fast while it is down.

    ``clock`` returns monotonic seconds; tests inject a fake one to skip the cool-down.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must not be negative")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` (cool-down over, a trial call may pass)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout:
            return "half_open"
        return "open"

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    def admit(self) -> None:
        """Let a call through or raise :class:`CircuitOpen`.

        In the half-open state only the first caller passes; the others fail fast until
        that trial reports its outcome.
        """
        state = self.state
        if state == "closed":
            return
        if state == "open" or self._trial_in_flight:
            raise CircuitOpen("circuit open")
        self._trial_in_flight = True

    def record_success(self) -> None:
        """The service answered: close the circuit and forget past failures."""
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """The service failed: count it, and (re)open the circuit at the threshold.

        The count is not reset while open, so a failed half-open trial reopens the circuit
        at once and restarts the cool-down.
        """
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._trial_in_flight = False

    def release(self) -> None:
        """The admitted call ended without a verdict (e.g. it was cancelled).

        Frees the half-open trial slot so that the next caller can try; changes nothing else.
        """
        self._trial_in_flight = False
