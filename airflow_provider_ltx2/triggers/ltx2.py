"""The triggers: waiting in the triggerer, so no worker slot is held meanwhile.

``Ltx2VideoTrigger`` waits for a submitted generation; ``Ltx2CapacityTrigger`` waits for capacity at a
gateway that answered a submit with 429; ``Ltx2BatchTrigger`` waits on every job a batch has in flight.
None ever submits: a triggerer re-runs a trigger from its
kwargs after a restart or a takeover, which would pay twice; the paid submit stays in the worker.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.api.connection import Gateway
from airflow_provider_ltx2.api.jobs import Job, JobStatus
from airflow_provider_ltx2.api.retries import RetryPolicy
from airflow_provider_ltx2.batches.progress import BatchProgress
from airflow_provider_ltx2.events import (
    BatchEvent,
    ErrorEvent,
    TriggerPayload,
    VideoEvent,
    batch_event,
    capacity_event,
    capacity_timeout_event,
    error_event,
    step_event,
)
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import READ_TIMEOUT, Ltx2Hook
from airflow_provider_ltx2.waits import CapacityWait, Next, Wait, after_poll, started_at

SCHEDULER_LOOP_MARGIN = 5.0
# The longest a trigger holds its event back, whatever its kwargs say: a worker's clock ahead of the triggerer's,
# or a mistyped setting, must not keep a finished job (or a deadline) waiting for hours.
MAX_RESUME_GUARD_SECONDS = 120.0


async def _answer(hook: Ltx2Hook, job: Job, deadline: float) -> JobStatus | Ltx2Error:
    """One poll's answer as ``after_poll`` takes it: the status, or the error the poll raised after its retries."""
    try:
        return await hook.aget_status(job, deadline=deadline)
    except Ltx2Error as error:
        return error


def resume_guard_seconds() -> float:
    """How long after a deferral a trigger holds back its event.

    Airflow 3.3's scheduler fails a task whose trigger fired, and which it queued again, before the worker's
    report that the deferring process ended reached it ("state mismatch": apache/airflow#66374, #67287,
    #72716). That report comes up to ``[workers] min_heartbeat_interval`` seconds after the deferral, and a
    job can end sooner (a retry reattaching to a finished job, a batch's short jobs, a capacity wait woken by
    a job that ends just after), so every event waits that long and a scheduler loop more. ``[ltx2]
    resume_guard_seconds`` sets it outright (0 where no scheduler runs, as under ``airflow dags test``).
    Read in the worker: the worker's setting is what counts.
    """
    from airflow.providers.common.compat.sdk import conf

    configured = conf.get("ltx2", "resume_guard_seconds", fallback="")
    if configured:
        try:
            seconds = float(configured)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_RESUME_GUARD_SECONDS:
            raise Ltx2ValidationError(
                f"[ltx2] resume_guard_seconds={configured!r}: accepted values are seconds from 0 to "
                f"{MAX_RESUME_GUARD_SECONDS:g}."
            )
        return seconds
    return conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0) + SCHEDULER_LOOP_MARGIN


def resume_not_before() -> float:
    """The ``not_before`` of a trigger deferred to now (epoch seconds): see ``resume_guard_seconds``."""
    return time.time() + resume_guard_seconds()


class Ltx2Trigger(BaseTrigger):
    """What the provider's triggers share: one event each, never before ``not_before``, and an error event for
    any of the provider's errors (no connection, no key), so every failure reaches the task's own handling.

    A subclass says how it waits (``wait``, returning its event) and how an error reads (``error_event``).
    ``not_before`` is None in the kwargs of triggers deferred by 0.3 and earlier: no hold-back.
    """

    def __init__(self, not_before: float | None = None) -> None:
        super().__init__()
        self.not_before = not_before

    async def wait(self) -> TriggerPayload:
        raise NotImplementedError

    def error_event(self, error: Ltx2Error) -> ErrorEvent:
        return error_event(None, error)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            event = await self.wait()
        except Ltx2Error as error:  # the wait could not start or go on: the task fails with this error
            event = self.error_event(error)
        await asyncio.sleep(min(MAX_RESUME_GUARD_SECONDS, max(0.0, (self.not_before or 0.0) - time.time())))
        yield TriggerEvent(event)


def _classpath(trigger: BaseTrigger) -> str:
    return f"{type(trigger).__module__}.{type(trigger).__qualname__}"


class Ltx2VideoTrigger(Ltx2Trigger):
    """Poll one LTX-2 request until it finishes, fails, or its absolute deadline passes; emit one event.

    Its kwargs are stored in plain text in the metadata DB and logged by the triggerer, so they hold
    only the request id, the gateway's polling URL, the connection id, the poll interval, the deadline
    (epoch seconds, so a restarted triggerer keeps the original deadline) and what set it, the submit
    time, the retry policy, the read timeout and ``not_before`` (numbers). The key is fetched from the
    connection when the trigger runs.
    """

    def __init__(
        self,
        request_id: str,
        deadline: float,
        polling_url: str | None = None,
        ltx2_conn_id: str = defaults.CONN_ID,
        poll_interval: float = defaults.POLL_INTERVAL,
        submitted_at: str | None = None,
        deadline_limit: str = "timeout",
        retry_policy: dict[str, Any] | None = None,
        read_timeout: float = READ_TIMEOUT,
        not_before: float | None = None,
    ) -> None:
        super().__init__(not_before)
        self.request_id = request_id
        self.deadline = deadline
        self.polling_url = polling_url
        self.ltx2_conn_id = ltx2_conn_id
        self.poll_interval = poll_interval
        self.submitted_at = submitted_at
        self.deadline_limit = deadline_limit
        self.retry_policy = RetryPolicy.from_dict(retry_policy)
        self.read_timeout = read_timeout

    @classmethod
    def for_wait(cls, wait: Wait, hook: Ltx2Hook, submitted_at: str | None) -> Ltx2VideoTrigger:
        """The trigger that carries on ``wait`` in the triggerer (same job, deadline, interval and retries)."""
        return cls(
            request_id=wait.job.request_id,
            deadline=wait.deadline,
            polling_url=wait.job.polling_url,
            ltx2_conn_id=hook.ltx2_conn_id,
            poll_interval=wait.poll_interval,
            submitted_at=submitted_at,
            deadline_limit=wait.limit,
            retry_policy=hook.retry_policy.to_dict(),
            read_timeout=hook.read_timeout,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _classpath(self),
            {
                "request_id": self.request_id,
                "deadline": self.deadline,
                "polling_url": self.polling_url,
                "ltx2_conn_id": self.ltx2_conn_id,
                "poll_interval": self.poll_interval,
                "submitted_at": self.submitted_at,
                "deadline_limit": self.deadline_limit,
                "retry_policy": self.retry_policy.to_dict(),
                "read_timeout": self.read_timeout,
                "not_before": self.not_before,
            },
        )

    @property
    def job(self) -> Job:
        return Job(self.request_id, self.polling_url)

    def error_event(self, error: Ltx2Error) -> ErrorEvent:
        return error_event(self.job, error)

    async def wait(self) -> TriggerPayload:
        job = self.job
        wait = Wait(
            job,
            deadline=self.deadline,
            poll_interval=self.poll_interval,
            limit=self.deadline_limit,
            started=started_at(self.submitted_at),
        )
        hook = Ltx2Hook(self.ltx2_conn_id, retry_policy=self.retry_policy, read_timeout=self.read_timeout)
        async with hook.aconnect() as gateway:
            with capacity_queue(gateway).running_jobs(1) as running:
                # Triggers created together (a mapped task, a triggerer restart) spread their first
                # polls over one interval instead of all hitting the gateway at once.
                await asyncio.sleep(random.uniform(0, max(0.0, min(self.poll_interval, self.deadline - time.time()))))
                while True:
                    step = after_poll(wait, await _answer(hook, job, self.deadline), time.time())
                    if step.news:
                        self.log.info(step.news)
                    if step.next is not Next.POLL:
                        break
                    wait = step.wait
                    await asyncio.sleep(step.delay)
                if step.next is Next.FINISHED:
                    running.ended(1)
        return step_event(step, self.submitted_at)


class Ltx2CapacityTrigger(Ltx2Trigger):
    """Wait, without a worker slot, until a throttled task should try its submit again; emit one event.

    It wakes when a job on the same gateway finishes in this triggerer (the longest-waiting task first,
    one per finished job, never sooner than the gateway's ``Retry-After``), or when its fallback timer
    runs out (capacity freed by another triggerer or client), or at the deadline (a timeout event). The
    kwargs are the connection id, the ``CapacityWait`` (numbers and the limit's name) and ``not_before``.
    """

    def __init__(
        self,
        capacity: dict[str, Any] | None = None,
        ltx2_conn_id: str = defaults.CONN_ID,
        not_before: float | None = None,
        room: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(not_before)
        carried = capacity if capacity is not None else room  # ``room``: the kwarg's name in 0.2 and 0.3
        if carried is None:
            raise Ltx2ValidationError("Ltx2CapacityTrigger needs its capacity wait (kwarg capacity).")
        self.capacity = CapacityWait.from_dict(carried)
        self.ltx2_conn_id = ltx2_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return _classpath(self), {
            "capacity": self.capacity.to_dict(),
            "ltx2_conn_id": self.ltx2_conn_id,
            "not_before": self.not_before,
        }

    async def wait(self) -> TriggerPayload:
        capacity = self.capacity
        woken_by = await capacity_queue(await Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id).agateway()).wait(capacity)
        if woken_by is None:
            return capacity_timeout_event(capacity)
        return capacity_event(capacity, woken_by)


class Ltx2BatchTrigger(Ltx2Trigger):
    """Poll every job a batch has in flight, over one session; emit one event when any of them ends (a slot
    to fill, a video to deliver), when the batch's wait for capacity is over, or at the deadline.

    Its jobs count as running on the gateway in this triggerer, and each that ends wakes one task waiting
    for capacity there, as a video trigger's does. With nothing in flight it waits for capacity in the same
    queue as the capacity triggers (a finish in this triggerer, or the queue's fallback timer); with jobs in
    flight and a wait for capacity, ``wake_at`` ends the round early, so the task tries its next submit.

    The kwargs are the batch's progress (row ids, request ids, polling URLs, counts and the errors of failed
    rows: no secret, and bounded by the jobs in flight and the failed rows, never by the table), echoed back
    in the event, so a deferral needs no other store; the rest is as ``Ltx2VideoTrigger``'s.
    """

    def __init__(
        self,
        batch: dict[str, Any],
        deadline: float,
        deadline_limit: str = "timeout",
        ltx2_conn_id: str = defaults.CONN_ID,
        poll_interval: float = defaults.POLL_INTERVAL,
        wake_at: float | None = None,
        capacity: dict[str, Any] | None = None,
        retry_policy: dict[str, Any] | None = None,
        read_timeout: float = READ_TIMEOUT,
        not_before: float | None = None,
    ) -> None:
        super().__init__(not_before)
        self.progress = BatchProgress.from_dict(batch)
        self.deadline = deadline
        self.deadline_limit = deadline_limit
        self.ltx2_conn_id = ltx2_conn_id
        self.poll_interval = poll_interval
        self.wake_at = wake_at
        self.capacity = capacity
        self.retry_policy = RetryPolicy.from_dict(retry_policy)
        self.read_timeout = read_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _classpath(self),
            {
                "batch": self.progress.to_dict(),
                "deadline": self.deadline,
                "deadline_limit": self.deadline_limit,
                "ltx2_conn_id": self.ltx2_conn_id,
                "poll_interval": self.poll_interval,
                "wake_at": self.wake_at,
                "capacity": self.capacity,
                "retry_policy": self.retry_policy.to_dict(),
                "read_timeout": self.read_timeout,
                "not_before": self.not_before,
            },
        )

    def _event(self, ended: dict[str, VideoEvent], woken_by: str) -> BatchEvent:
        return batch_event(
            self.progress.to_dict(),
            ended,
            woken_by=woken_by,
            deadline=self.deadline,
            deadline_limit=self.deadline_limit,
            capacity=self.capacity,
        )

    async def wait(self) -> TriggerPayload:
        hook = Ltx2Hook(self.ltx2_conn_id, retry_policy=self.retry_policy, read_timeout=self.read_timeout)
        submitted_at = {flight.request_id: flight.submitted_at for flight in self.progress.in_flight}
        waits = {
            flight.request_id: Wait(
                flight.job,
                deadline=self.deadline,
                poll_interval=self.poll_interval,
                limit=self.deadline_limit,
                started=started_at(flight.submitted_at),
            )
            for flight in self.progress.in_flight
        }
        async with hook.aconnect() as gateway:
            queue = capacity_queue(gateway)
            if not waits:  # nothing in flight: only capacity (or the deadline) wakes the batch
                return self._event({}, await self._capacity_wait(queue) or "timer")
            wake_at = min(self.deadline, self.wake_at or self.deadline)
            ended: dict[str, VideoEvent] = {}
            with queue.running_jobs(len(waits)) as running:
                while True:
                    delay = self.poll_interval
                    replies = await asyncio.gather(*(_answer(hook, wait.job, self.deadline) for wait in waits.values()))
                    for request_id, reply in zip(list(waits), replies, strict=True):
                        step = after_poll(waits[request_id], reply, time.time())
                        if step.news:
                            self.log.info(step.news)
                        if step.next is Next.POLL:
                            waits[request_id] = step.wait
                            delay = min(delay, step.delay)
                            continue
                        ended[request_id] = step_event(step, submitted_at[request_id])
                        del waits[request_id]
                        if step.next is Next.FINISHED:
                            running.ended(1)
                    # An event before ``not_before`` is held back anyway: the jobs that end meanwhile go with it, so
                    # the resume fills every slot they free instead of one round per hold-back.
                    held_back = (self.not_before or 0.0) - time.time()
                    if ended and (held_back <= 0 or not waits):
                        return self._event(ended, "finish")
                    if not ended and time.time() >= wake_at:
                        return self._event({}, "timer")
                    until = held_back if ended else wake_at - time.time()
                    await asyncio.sleep(max(0.0, min(delay, until)))

    async def _capacity_wait(self, queue: _CapacityQueue) -> str | None:
        """Wait in the gateway's queue for capacity (a finish here, or the fallback timer), until the deadline."""
        if self.capacity is None:
            await asyncio.sleep(max(0.0, self.deadline - time.time()))
            return None
        return await queue.wait(CapacityWait.from_dict(self.capacity))


# --------------------------------------------------------------------------------------------------
# Who waits for capacity on which gateway, in this triggerer's event loop.
# --------------------------------------------------------------------------------------------------


class RunningJobs:
    """Jobs of one gateway that a trigger polls in this event loop: each that finishes frees a slot there."""

    def __init__(self, queue: _CapacityQueue, count: int) -> None:
        self.queue = queue
        self.count = count

    def ended(self, finished: int) -> None:
        """``finished`` of them finished: no longer running, and each wakes the longest-waiting task."""
        self.count -= finished
        self.queue.running -= finished
        for _ in range(finished):
            self.queue.wake_one()


@dataclass
class _CapacityQueue:
    """The capacity waiters of one gateway in one event loop, longest-waiting first, and its running jobs.

    A finished job frees one slot, so it wakes one waiter: waking them all would send every waiting task
    back to a worker to meet one free slot. While jobs of the gateway run in this loop (a video trigger's, a
    batch trigger's), capacity will come through here, so the fallback timers stay long and restart whenever a
    job finishes; with none running, the head of the queue watches the gateway's Retry-After instead.
    """

    waiters: list[tuple[float, int, asyncio.Future[None]]] = field(default_factory=list)
    running: int = 0  # jobs of this gateway that triggers poll in this loop
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    order: itertools.count[int] = field(default_factory=itertools.count)

    @contextmanager
    def running_jobs(self, count: int) -> Iterator[RunningJobs]:
        """Count ``count`` jobs as running here while a trigger polls them; the ones that did not finish (the
        deadline, an error, a cancelled trigger) stop counting when it stops, without waking anyone."""
        running = RunningJobs(self, count)
        self.running += count
        try:
            yield running
        finally:
            self.running -= running.count

    def wake_one(self) -> None:
        while self.waiters:
            _, _, future = heapq.heappop(self.waiters)
            if not future.done():
                future.set_result(None)
                break
        self.finished.set()
        self.finished = asyncio.Event()

    def _is_head(self, future: asyncio.Future[None]) -> bool:
        while self.waiters and self.waiters[0][2].done():
            heapq.heappop(self.waiters)
        return bool(self.waiters) and self.waiters[0][2] is future

    async def wait(self, capacity: CapacityWait) -> str | None:
        """Until woken by a finish ("finish"), the fallback timer ("timer") or the deadline (None)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiters, (capacity.since or time.time(), next(self.order), future))
        try:
            while True:
                fallback = capacity.fallback_delay(head=self.running == 0 and self._is_head(future))
                finished: asyncio.Future[Any] = asyncio.ensure_future(self.finished.wait())
                either: set[asyncio.Future[Any]] = {future, finished}
                done, _ = await asyncio.wait(either, timeout=fallback, return_when=asyncio.FIRST_COMPLETED)
                finished.cancel()
                if future in done:
                    await asyncio.sleep(max(0.0, capacity.not_before() - time.time()))
                    return None if capacity.expired() else "finish"
                if not done:  # the timer ran out with no job finishing here
                    return None if capacity.expired() else "timer"
        finally:
            future.cancel()


_CAPACITY_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Gateway, _CapacityQueue]] = (
    weakref.WeakKeyDictionary()
)


def capacity_queue(gateway: Gateway) -> _CapacityQueue:
    """The capacity queue of ``gateway`` in this event loop (one per gateway: base URL and key)."""
    queues = _CAPACITY_QUEUES.setdefault(asyncio.get_running_loop(), {})
    return queues.setdefault(gateway, _CapacityQueue())
