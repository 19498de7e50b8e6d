"""Waiting, as pure decisions: a task's deadline, a wait for a video, a wait for capacity at a full gateway.

Nothing here calls the gateway, sleeps or stores anything; its one side effect is the lines ``CapacityWait``
writes to the log it is handed, so the worker and the triggerer say the same. ``after_poll`` decides what one
poll's answer means for a wait (finished, poll again and when, past the deadline, given up); the worker's
loop, the trigger's loop and the sensor's poke only poll and sleep around it. ``CapacityWait`` holds the
decisions of a wait for capacity (a submit the gateway throttled), in the worker and across deferrals alike.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.api.jobs import Job, JobState, JobStatus
from airflow_provider_ltx2.exceptions import (
    Ltx2Error,
    Ltx2Throttled,
    Ltx2Timeout,
    Ltx2TransientError,
)

MAX_UNKNOWN_POLLS = 30


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def utc_clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def started_at(submitted_at: str | None) -> float:
    """When a job was submitted, as epoch seconds, from the ``submitted_at`` that ``utc_now_iso`` wrote: a wait
    taken up later (a batch's first poll, a trigger) still logs "succeeded after" the job's own age. Now for
    None or anything else (a sensor may be handed any text)."""
    try:
        return min(time.time(), datetime.fromisoformat(str(submitted_at)).timestamp())
    except ValueError:
        return time.time()


@dataclass(frozen=True)
class Deadline:
    """A task's absolute deadline (epoch seconds) and the limit that set it, for the message that ends it.

    ``execution_timeout`` is not enforced by Airflow while a task is deferred, so the task carries the
    earlier of its ``timeout`` and its ``execution_timeout``, both counted from the start of the try's
    first ``execute`` (as Airflow counts ``execution_timeout``), into every trigger it defers to.
    """

    at: float
    limit: str = "timeout"

    @classmethod
    def starting_now(cls, timeout: float, execution_timeout: timedelta | None = None) -> Deadline:
        now = time.time()
        if execution_timeout is not None and execution_timeout.total_seconds() < timeout:
            return cls(now + execution_timeout.total_seconds(), f"execution_timeout={execution_timeout}")
        return cls(now + timeout, f"timeout={timeout:g}s")

    def describe(self) -> str:
        return f"{utc_clock(self.at)}, set by {self.limit}"


# --------------------------------------------------------------------------------------------------
# Waiting for a video: one pure step per poll.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """The state of one wait for one job. ``deadline`` is absolute (epoch seconds) so it survives restarts."""

    job: Job
    deadline: float
    poll_interval: float = defaults.POLL_INTERVAL
    limit: str = "timeout"  # what set the deadline, for the timeout message
    started: float = field(default_factory=time.time)
    unknown_polls: int = 0
    last_status: str | None = None

    def timeout_message(self) -> str:
        return (
            f"LTX-2 request {self.job.request_id} was not finished by its deadline "
            f"({Deadline(self.deadline, self.limit).describe()}; last status {self.last_status or 'none'}). "
            "It may still finish on the gateway; on Airflow 3.3+ "
            "a retry of the operator's task reattaches to it instead of paying again."
        )


class Next(str, Enum):
    """What a wait does after a poll."""

    POLL = "poll"  # poll again after ``PollStep.delay`` seconds
    FINISHED = "finished"  # the job succeeded or failed: ``PollStep.status``
    TIMED_OUT = "timed out"  # the deadline passed: ``PollStep.error`` is the ``Ltx2Timeout``
    GAVE_UP = "gave up"  # no usable answer will come: ``PollStep.error``


@dataclass(frozen=True)
class PollStep:
    """The decision ``after_poll`` made: the wait's new state, what comes next, and a line to log, if any."""

    wait: Wait
    next: Next
    delay: float = 0.0
    status: JobStatus | None = None
    error: Ltx2Error | None = None
    news: str | None = None  # the status changed: say so in the task's (or the triggerer's) log

    def finished_status(self) -> JobStatus:
        """The status of the finished job; a wait that ended otherwise raises its error."""
        if self.next is Next.FINISHED and self.status is not None:
            return self.status
        raise self.error or Ltx2Error(f"The wait for LTX-2 request {self.wait.job.request_id} has not ended.")


def after_poll(wait: Wait, answer: JobStatus | Ltx2Error, now: float) -> PollStep:
    """What one poll's answer means for ``wait``; the one place the worker, the trigger and the sensor ask.

    ``answer`` is the poll's ``JobStatus``, or the error the poll raised after its own retries. A throttled
    poll (the gateway asked to wait past the deadline) is no answer: poll again, no hot loop. A transient
    error at the deadline is the deadline's doing; before it, an outage that outlasted the retry policy
    gives up. An unknown status counts as "still running" for ``MAX_UNKNOWN_POLLS`` polls in a row, so a
    new status word neither fails a job at once nor keeps a task waiting forever.
    """
    news = None
    if isinstance(answer, Ltx2Error):
        late = isinstance(answer, Ltx2TransientError) and now >= wait.deadline
        if not (isinstance(answer, Ltx2Throttled) or late):
            return PollStep(wait, Next.GAVE_UP, error=answer)
    else:
        unknown = answer.state is JobState.UNKNOWN
        unknown_polls = wait.unknown_polls + 1 if unknown else 0
        shown = repr(answer.raw_status) if unknown else answer.state.value
        if shown != wait.last_status:
            news = f"LTX-2 request {wait.job.request_id} is {shown} after {now - wait.started:.0f}s"
        if (unknown_polls, shown) != (wait.unknown_polls, wait.last_status):
            wait = replace(wait, unknown_polls=unknown_polls, last_status=shown)
        if answer.state.finished:
            return PollStep(wait, Next.FINISHED, status=answer, news=news)
        if unknown_polls >= MAX_UNKNOWN_POLLS:
            error = Ltx2Error(
                f"LTX-2 request {wait.job.request_id} reported the unknown status {answer.raw_status!r} "
                f"{unknown_polls} times in a row; giving up."
            )
            return PollStep(wait, Next.GAVE_UP, error=error, news=news)
    if now >= wait.deadline:
        return PollStep(wait, Next.TIMED_OUT, error=Ltx2Timeout(wait.timeout_message()), news=news)
    return PollStep(wait, Next.POLL, delay=min(wait.poll_interval, wait.deadline - now), news=news)


# --------------------------------------------------------------------------------------------------
# Waiting for capacity at a full gateway (429 / 503 with Retry-After): the submit is tried again later.
# --------------------------------------------------------------------------------------------------

MIN_CAPACITY_DELAY = 1.0  # a Retry-After of 0 must not become a hot loop
CAPACITY_FALLBACK_FIRST = 30.0  # deferred: first wake-up when no job of the gateway finished nearby
CAPACITY_FALLBACK_MAX = 300.0
CAPACITY_LOG_EVERY = 60.0


@dataclass
class CapacityWait:
    """One task's wait for capacity at the gateway, across worker tries of the submit and deferrals.

    It is plain JSON (``to_dict``/``from_dict``): it travels in ``Ltx2CapacityTrigger``'s kwargs and
    event, so a wait that spans several resumes logs, backs off and ends at one deadline.
    """

    deadline: float
    limit: str = "timeout"
    poll_interval: float = defaults.POLL_INTERVAL
    since: float | None = None  # first throttled answer; also the task's place in the queue
    attempts: int = 0  # throttled submits so far
    throttled_at: float | None = None
    retry_after: float | None = None
    reason: str = ""
    logged_at: float | None = None
    fallback_wakes: int = 0

    @classmethod
    def for_deadline(cls, deadline: Deadline, poll_interval: float) -> CapacityWait:
        return cls(deadline=deadline.at, limit=deadline.limit, poll_interval=poll_interval)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CapacityWait:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def throttled(self, error: Ltx2Throttled, log: logging.Logger | Any) -> None:
        """Record a throttled submit and log it (once at the start, then at most once a minute).

        Raises ``Ltx2Timeout`` when the gateway would not let the next attempt in before the deadline.
        """
        now = time.time()
        self.attempts += 1
        self.throttled_at, self.retry_after, self.reason = now, error.retry_after, error.reason
        if self.since is None:
            self.since = self.logged_at = now
            asked = "" if error.retry_after is None else f", Retry-After {error.retry_after:g} s"
            log.info(
                "LTX-2 gateway at capacity (%s%s): waiting for capacity; deadline %s UTC",
                error.reason,
                asked,
                datetime.fromtimestamp(self.deadline, timezone.utc).strftime("%H:%M:%S"),
            )
        elif now - (self.logged_at or 0.0) >= CAPACITY_LOG_EVERY:
            self.logged_at = now
            log.info(
                "Still waiting for capacity at the LTX-2 gateway: %.0f s waited, %d attempts (last answer %s)",
                now - self.since,
                self.attempts,
                error.reason,
            )
        if self.not_before() >= self.deadline:
            raise Ltx2Timeout(self.timeout_message())

    def timeout_message(self) -> str:
        waited = time.time() - (self.since or time.time())
        return (
            f"The LTX-2 gateway had no capacity for this task before its deadline "
            f"({Deadline(self.deadline, self.limit).describe()}): {self.attempts} submits answered "
            f"{self.reason} over {waited:.0f} s; nothing was paid. Size an Airflow pool to the gateway's "
            "concurrency limit (see the README's batches section), or raise the timeout."
        )

    def submit_delay(self) -> float:
        """The guard every paid submit passes, the single operator's and a batch's, in the worker and on a resume:
        seconds until it may go (0: now; else the rest of the gateway's ``Retry-After``).

        Raises ``Ltx2Timeout`` when it may not go before the deadline: nothing is paid after it.
        """
        now = time.time()
        ready = now if self.throttled_at is None else max(now, self.not_before())
        if ready >= self.deadline:
            if self.attempts:
                raise Ltx2Timeout(self.timeout_message())
            raise Ltx2Timeout(
                f"The deadline ({Deadline(self.deadline, self.limit).describe()}) passed before this submit: it was "
                "not sent, nothing was paid for it."
            )
        return ready - now

    def got_in(self, log: logging.Logger | Any) -> None:
        if self.since is not None:
            log.info(
                "Got into the LTX-2 gateway after %.0f s and %d throttled attempts",
                time.time() - self.since,
                self.attempts,
            )

    def not_before(self) -> float:
        """The earliest time the next submit may be tried: never sooner than the gateway asked."""
        return (self.throttled_at or time.time()) + max(MIN_CAPACITY_DELAY, self.retry_after or 0.0)

    def worker_delay(self) -> float:
        """Seconds to sleep in the worker: the Retry-After, or a backoff capped at about one poll interval.

        Jittered upwards, so the tasks of a batch do not all retry at the same instant.
        """
        if self.retry_after is not None:
            wait = max(MIN_CAPACITY_DELAY, self.retry_after) * random.uniform(1.0, 1.2)
        else:
            ceiling = max(MIN_CAPACITY_DELAY, min(self.poll_interval, 2.0 ** (self.attempts - 1)))
            wait = random.uniform(max(MIN_CAPACITY_DELAY, ceiling / 2), ceiling)
        return max(0.0, min(wait, self.deadline - time.time()))

    def fallback_delay(self, *, head: bool) -> float:
        """Seconds a deferred wait sleeps unless a job of the gateway finishing nearby wakes it first.

        Only the head of the queue (the longest-waiting task, with no job of the gateway running in its
        triggerer to wake it) starts from the gateway's own Retry-After; the others, whom a finish will
        reach in turn, from ``CAPACITY_FALLBACK_FIRST``. Either grows with every fallback wake-up: a resume
        costs a worker start, and a task must not bounce between triggerer and worker every few seconds.
        """
        first = max(MIN_CAPACITY_DELAY, self.retry_after or self.poll_interval) if head else CAPACITY_FALLBACK_FIRST
        growing = min(CAPACITY_FALLBACK_MAX, first * 2.0**self.fallback_wakes)
        wake_at = max(self.not_before(), time.time() + growing * random.uniform(1.0, 1.2))
        return max(0.0, min(wake_at, self.deadline) - time.time())

    def expired(self) -> bool:
        return time.time() >= self.deadline


# --------------------------------------------------------------------------------------------------
# Pacing the polls of a batch's jobs in the worker.
# --------------------------------------------------------------------------------------------------

PACE_TOLERANCE = 0.1  # seconds: once the likely end is known this closely, poll right at it


@dataclass
class JobPace:
    """When to poll each job a batch has in flight in the worker, so a freed slot is seen soon after.

    Polled every ``poll_interval``, a job is found done up to that long after it ended, and its slot idles
    meanwhile. A batch's jobs take much the same time, so its finished jobs tell when the next is likely
    done: it ended after the latest age a job was last seen running (``running``) and by the earliest age
    one was found done (``done``). A job is polled first between the two (narrowing them), then at
    ``done``, then every ``poll_interval``: at most one poll more per job than a fixed interval makes.
    Jobs whose times differ widely only get that one early poll.
    """

    poll_interval: float
    running: float = 0.0
    done: float | None = None
    started: dict[str, float] = field(default_factory=dict)  # request id -> submit time, this process
    last_running: dict[str, float] = field(default_factory=dict)  # request id -> age last seen running
    due: dict[str, float] = field(default_factory=dict)  # request id -> time of its next poll

    def submitted(self, request_id: str, at: float) -> None:
        self.started[request_id] = at
        self.due[request_id] = at + self._first_age()

    def _first_age(self) -> float:
        if self.done is None:
            return self.poll_interval
        if self.done - self.running > PACE_TOLERANCE:
            return (self.running + self.done) / 2
        return self.done

    def due_now(self, request_ids: list[str], now: float) -> list[str]:
        """The jobs to poll now; a job this process did not submit (a retry reattached to it) is due at once."""
        return [request_id for request_id in request_ids if self.due.setdefault(request_id, now) <= now]

    def polled(self, request_id: str, now: float, finished: bool) -> None:
        started = self.started.get(request_id)
        if finished:
            if started is not None:
                self.running = max(self.running, self.last_running.get(request_id, 0.0))
                self.done = now - started if self.done is None else min(self.done, now - started)
            for known in (self.started, self.last_running, self.due):
                known.pop(request_id, None)
            return
        if started is None:
            self.due[request_id] = now + self.poll_interval
            return
        age = now - started
        self.last_running[request_id] = age
        following = self.done if self.done is not None and age < self.done else age + self.poll_interval
        self.due[request_id] = started + following

    def next_due(self) -> float | None:
        return min(self.due.values(), default=None)
