"""One retry policy for both paths: which outcomes are tried again, after how long, and for how long."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_ltx2.api.replies import (
    NO_JOB_CREATED,
    UNCONFIRMED,
    Reply,
    TransportFailure,
    is_throttled,
    is_transient,
    retry_after_seconds,
)
from airflow_provider_ltx2.exceptions import Ltx2SubmitUnconfirmed, Ltx2TlsError, Ltx2TransientError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

    ``paid`` calls (the submit) are retried at most ``max_attempts`` times, and only when the gateway
    surely created no job: a 502/503/504 from the gateway, or a connection that never opened. A read
    timeout or a 500 after the body was sent may already have started a paid generation, so it is
    reported, not repeated. A throttled submit (``is_throttled``) is not retried here: it raises
    ``Ltx2Throttled`` and the task waits for capacity until its own deadline (``waits.CapacityWait``).
    Status polls cost nothing: they ride out a gateway outage of up to ``poll_outage_seconds`` (never
    past the wait's deadline), so a restart does not fail a long wait; throttled polls wait as long as
    the gateway asks and never count against that budget.

    The fields are plain numbers so the policy travels in a trigger's kwargs (``to_dict``/``from_dict``).
    """

    max_attempts: int = 5
    poll_outage_seconds: float = 300.0
    base_delay: float = 1.0
    max_delay: float = 60.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        return cls(**data) if data else cls()

    def should_retry(self, outcome: Reply | TransportFailure, paid: bool) -> bool:
        if isinstance(outcome, TransportFailure):
            return not outcome.untrusted and (outcome.before_sending or not paid)
        if paid:
            return outcome.status in NO_JOB_CREATED and not is_throttled(outcome)
        # A poll answered with an HTML page or a torn body is a proxy hiccup, not an answer
        # (a bare 202 is an answer: "still queued").
        return is_transient(outcome) or (outcome.status in (200, 201) and outcome.json() is None)

    def delay(self, attempt: int, outcome: Reply | TransportFailure) -> float:
        """Seconds to wait before attempt ``attempt + 1``: half the backoff, plus up to half again at random.

        A throttled answer's ``Retry-After`` is honoured in full: the gateway said when it has capacity.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        backoff = random.uniform(ceiling / 2, ceiling)
        if isinstance(outcome, Reply):
            asked = retry_after_seconds(outcome.retry_after)
            if asked is not None:
                return max(asked, backoff) if is_throttled(outcome) else min(self.max_delay, max(asked, backoff))
        return backoff


class Attempts:
    """Drives one call's retry loop, so the sync and async paths share every decision.

    Usage: ``outcome = send(); delay = attempts.next_delay(outcome)``; when it returns None the loop
    ends and ``attempts.result(outcome)`` gives the reply (or raises for a transport failure).
    """

    def __init__(self, policy: RetryPolicy, *, paid: bool, action: str, deadline: float | None = None):
        self.policy = policy
        self.paid = paid
        self.action = action
        self.deadline = deadline
        self.attempt = 0
        self.started = time.time()
        self.outage_started: float | None = None  # first failure that was not throttling

    def next_delay(self, outcome: Reply | TransportFailure) -> float | None:
        self.attempt += 1
        if not self.policy.should_retry(outcome, self.paid):
            return None
        if self.paid and self.attempt >= self.policy.max_attempts:
            return None
        delay = self.policy.delay(self.attempt, outcome)
        now = time.time()
        retry_at = now + delay
        if not (isinstance(outcome, Reply) and is_throttled(outcome)):  # throttling is not an outage
            if self.outage_started is None:
                self.outage_started = self.started if self.attempt == 1 else now
            if not self.paid and retry_at - self.outage_started > self.policy.poll_outage_seconds:
                return None
        if self.deadline is not None and retry_at >= self.deadline:
            return None
        return delay

    def describe(self, outcome: Reply | TransportFailure) -> str:
        what = f"HTTP {outcome.status}" if isinstance(outcome, Reply) else outcome.description
        budget = f"of {self.policy.max_attempts}" if self.paid else f"for {time.time() - self.started:.0f}s"
        return f"{self.action}: {what} (attempt {self.attempt} {budget})"

    def result(self, outcome: Reply | TransportFailure) -> Reply:
        if isinstance(outcome, Reply):
            return outcome
        if outcome.untrusted:
            raise Ltx2TlsError(outcome.description)
        if self.paid and not outcome.before_sending:
            raise Ltx2SubmitUnconfirmed(
                f"LTX-2 gateway connection broke after the {self.action} was sent ({outcome.description}). "
                f"{UNCONFIRMED}"
            )
        raise Ltx2TransientError(f"Could not reach the LTX-2 gateway for the {self.action}: {outcome.description}")
