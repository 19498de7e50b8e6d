"""Waiting and delivering, shared by the operator, the sensor, the decorator and the triggers.

``Deadline`` is a task's one absolute deadline; ``RoomWait`` holds the decisions of a wait for room at a
full gateway, ``Wait`` those of a wait for a video (when to poll, when the deadline passed, how long an
unknown status is tolerated, what changed since the last poll). The triggers' events, ``deliver`` (save,
publish) and the task's result dict are defined here too, so every task and trigger reads and writes one
format.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset

from airflow_provider_ltx2 import metrics, storage
from airflow_provider_ltx2.api import Job, JobState, JobStatus, failure_error
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2Throttled, Ltx2Timeout, Ltx2ValidationError
from airflow_provider_ltx2.links import Ltx2VideoLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TIMEOUT = 30 * 60.0
MAX_UNKNOWN_POLLS = 30
FAILURE_XCOM = "ltx2_failure"  # why the generation failed, for the task's "LTX-2 video" tab
# What an asset event of the task's outlets carries in its ``extra``.
ASSET_EVENT_KEYS = ("request_id", "video_url", "output_uri", "bytes", "completed_at", "reused")


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def utc_clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def check_waiting_arguments(poll_interval: float, timeout: float, output_uri: str | None) -> None:
    """Fail at DAG parse time on waiting arguments that could never work."""
    if not poll_interval > 0:
        raise Ltx2ValidationError(f"poll_interval={poll_interval!r}: accepted values are seconds > 0.")
    if not timeout > 0:
        raise Ltx2ValidationError(f"timeout={timeout!r}: accepted values are seconds > 0.")
    if output_uri is not None and not isinstance(output_uri, str):
        raise Ltx2ValidationError(f"output_uri={output_uri!r}: accepted values are a URI string or None.")


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


@dataclass
class Wait:
    """The state of one wait for one job. ``deadline`` is absolute (epoch seconds) so it survives restarts."""

    job: Job
    deadline: float
    poll_interval: float = DEFAULT_POLL_INTERVAL
    limit: str = "timeout"  # what set the deadline, for the timeout message
    started: float = field(default_factory=time.time)
    unknown_polls: int = 0
    last_status: str | None = None

    def observe(self, status: JobStatus, log: logging.Logger | Any) -> bool:
        """Record one poll, log a status change, and tell whether the job is finished.

        An unknown status counts as "still running" for ``MAX_UNKNOWN_POLLS`` polls in a row, so a
        new status word from the gateway does not fail a job at once, nor keep a task waiting forever.
        """
        if status.state is JobState.UNKNOWN:
            self.unknown_polls += 1
            if self.unknown_polls >= MAX_UNKNOWN_POLLS:
                raise Ltx2Error(
                    f"LTX-2 request {self.job.request_id} reported the unknown status "
                    f"{status.raw_status!r} {self.unknown_polls} times in a row; giving up."
                )
        else:
            self.unknown_polls = 0
        shown = status.state.value if status.state is not JobState.UNKNOWN else repr(status.raw_status)
        if shown != self.last_status:
            self.last_status = shown
            log.info("LTX-2 request %s is %s after %.0fs", self.job.request_id, shown, self.elapsed())
        return status.state.finished

    def elapsed(self) -> float:
        return time.time() - self.started

    def expired(self) -> bool:
        return time.time() >= self.deadline

    def next_delay(self) -> float:
        return max(0.0, min(self.poll_interval, self.deadline - time.time()))

    def timeout_message(self) -> str:
        return (
            f"LTX-2 request {self.job.request_id} was not finished by its deadline "
            f"({Deadline(self.deadline, self.limit).describe()}; last status {self.last_status or 'none'}). "
            "It may still finish on the gateway; on Airflow 3.3+ "
            "a retry of the operator's task reattaches to it instead of paying again."
        )


# --------------------------------------------------------------------------------------------------
# Waiting for room at a full gateway (429 / 503 with Retry-After): the submit is tried again later.
# --------------------------------------------------------------------------------------------------

MIN_ROOM_DELAY = 1.0  # a Retry-After of 0 must not become a hot loop
ROOM_FALLBACK_FIRST = 30.0  # deferred: first wake-up when no job of the gateway finished nearby
ROOM_FALLBACK_MAX = 300.0
ROOM_LOG_EVERY = 60.0


@dataclass
class RoomWait:
    """One task's wait for room at the gateway, across worker tries of the submit and deferrals.

    It is plain JSON (``to_dict``/``from_dict``): it travels in ``Ltx2CapacityTrigger``'s kwargs and
    event, so a wait that spans several resumes logs, backs off and ends at one deadline.
    """

    deadline: float
    limit: str = "timeout"
    poll_interval: float = DEFAULT_POLL_INTERVAL
    since: float | None = None  # first throttled answer; also the task's place in the queue
    attempts: int = 0  # throttled submits so far
    throttled_at: float | None = None
    retry_after: float | None = None
    reason: str = ""
    logged_at: float | None = None
    fallback_wakes: int = 0

    @classmethod
    def for_deadline(cls, deadline: Deadline, poll_interval: float) -> RoomWait:
        return cls(deadline=deadline.at, limit=deadline.limit, poll_interval=poll_interval)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoomWait:
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
                "LTX-2 gateway at capacity (%s%s): waiting for room; deadline %s UTC",
                error.reason,
                asked,
                datetime.fromtimestamp(self.deadline, timezone.utc).strftime("%H:%M:%S"),
            )
        elif now - (self.logged_at or 0.0) >= ROOM_LOG_EVERY:
            self.logged_at = now
            log.info(
                "Still waiting for room at the LTX-2 gateway: %.0f s waited, %d attempts (last answer %s)",
                now - self.since,
                self.attempts,
                error.reason,
            )
        if self.not_before() >= self.deadline:
            raise Ltx2Timeout(self.timeout_message())

    def timeout_message(self) -> str:
        waited = time.time() - (self.since or time.time())
        return (
            f"The LTX-2 gateway had no room for this task before its deadline "
            f"({Deadline(self.deadline, self.limit).describe()}): {self.attempts} submits answered "
            f"{self.reason} over {waited:.0f} s; nothing was paid. Size an Airflow pool to the gateway's "
            "concurrency limit (see the README's batches section), or raise the timeout."
        )

    def got_in(self, log: logging.Logger | Any) -> None:
        if self.since is not None:
            log.info(
                "Got into the LTX-2 gateway after %.0f s and %d throttled attempts",
                time.time() - self.since,
                self.attempts,
            )

    def not_before(self) -> float:
        """The earliest time the next submit may be tried: never sooner than the gateway asked."""
        return (self.throttled_at or time.time()) + max(MIN_ROOM_DELAY, self.retry_after or 0.0)

    def worker_delay(self) -> float:
        """Seconds to sleep in the worker: the Retry-After, or a backoff capped at about one poll interval.

        Jittered upwards, so the tasks of a batch do not all retry at the same instant.
        """
        if self.retry_after is not None:
            wait = max(MIN_ROOM_DELAY, self.retry_after) * random.uniform(1.0, 1.2)
        else:
            ceiling = max(MIN_ROOM_DELAY, min(self.poll_interval, 2.0 ** (self.attempts - 1)))
            wait = random.uniform(max(MIN_ROOM_DELAY, ceiling / 2), ceiling)
        return max(0.0, min(wait, self.deadline - time.time()))

    def fallback_delay(self, *, head: bool) -> float:
        """Seconds a deferred wait sleeps unless a job of the gateway finishing nearby wakes it first.

        Only the head of the queue (the longest-waiting task, with no job of the gateway running in its
        triggerer to wake it) starts from the gateway's own Retry-After; the others, whom a finish will
        reach in turn, from ``ROOM_FALLBACK_FIRST``. Either grows with every fallback wake-up: a resume
        costs a worker start, and a task must not bounce between triggerer and worker every few seconds.
        """
        first = max(MIN_ROOM_DELAY, self.retry_after or self.poll_interval) if head else ROOM_FALLBACK_FIRST
        growing = min(ROOM_FALLBACK_MAX, first * 2.0**self.fallback_wakes)
        wake_at = max(self.not_before(), time.time() + growing * random.uniform(1.0, 1.2))
        return max(0.0, min(wake_at, self.deadline) - time.time())

    def expired(self) -> bool:
        return time.time() >= self.deadline


# --------------------------------------------------------------------------------------------------
# Trigger events: one dict per outcome; anything else is rejected.
# --------------------------------------------------------------------------------------------------

EVENT_SUCCEEDED = "succeeded"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_ROOM = "room"


def _error_classes() -> dict[str, type[Ltx2Error]]:
    """Every error class of the provider by name, so an error event keeps its type across the trigger."""
    found: dict[str, type[Ltx2Error]] = {}
    pending: list[type[Ltx2Error]] = [Ltx2Error]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


@dataclass(frozen=True)
class Delivered:
    """What a success event tells the task: where the video is and when it was asked for and finished."""

    job: Job
    video_url: str
    completed_at: str
    submitted_at: str | None


def finished_video(job: Job, status: JobStatus, submitted_at: str | None) -> Delivered:
    """The video of a job a poll found finished, or the generation's failure, raised."""
    if status.state is not JobState.SUCCEEDED or not status.video_url:
        raise failure_error(job, status)
    return Delivered(job, status.video_url, utc_now_iso(), submitted_at)


def succeeded_event(job: Job, status: JobStatus, submitted_at: str | None) -> dict[str, Any]:
    return {
        "status": EVENT_SUCCEEDED,
        **job.to_dict(),
        "video_url": status.video_url,
        "submitted_at": submitted_at,
        "completed_at": utc_now_iso(),
    }


def failed_event(job: Job, status: JobStatus) -> dict[str, Any]:
    return {
        "status": EVENT_FAILED,
        **job.to_dict(),
        "raw_status": status.raw_status,
        "message": status.error,
        "input_rejected": status.input_rejected,
    }


def timeout_event(wait: Wait) -> dict[str, Any]:
    return {"status": EVENT_TIMEOUT, **wait.job.to_dict(), "message": wait.timeout_message()}


def error_event(job: Job, error: Ltx2Error) -> dict[str, Any]:
    return {"status": EVENT_ERROR, **job.to_dict(), "error_class": type(error).__name__, "message": str(error)}


def finished_event(job: Job, status: JobStatus, submitted_at: str | None) -> dict[str, Any]:
    if status.state is JobState.SUCCEEDED:
        return succeeded_event(job, status, submitted_at)
    return failed_event(job, status)


def room_event(room: RoomWait, woken_by: str) -> dict[str, Any]:
    """``Ltx2CapacityTrigger``'s event: time to try the submit again (``woken_by``: finish, timer)."""
    return {"status": EVENT_ROOM, "woken_by": woken_by, "room": room.to_dict()}


def read_room_event(event: Any) -> RoomWait:
    """The wait for room carried by a capacity trigger's event; a timeout or error event is raised."""
    if not isinstance(event, dict) or not isinstance(event.get("room"), dict):
        raise Ltx2Error(f"Malformed event from the LTX-2 capacity trigger: {event!r}")
    room = RoomWait.from_dict(event["room"])
    if event.get("status") == EVENT_TIMEOUT:
        raise Ltx2Timeout(str(event.get("message")))
    if event.get("status") != EVENT_ROOM:
        raise Ltx2Error(f"Unknown status {event.get('status')!r} in the event from the LTX-2 capacity trigger")
    if event.get("woken_by") == "timer":
        room.fallback_wakes += 1
    return room


def read_event(event: Any) -> Delivered:
    """Read a success event; raise the matching error for any other event.

    Every field is checked: a malformed or unknown event fails the task rather than passing for a
    success (a cancelled job reported as success is the classic deferrable-operator bug).
    """
    if not isinstance(event, dict) or not isinstance(event.get("request_id"), str):
        raise Ltx2Error(f"Malformed event from the LTX-2 trigger: {event!r}")
    job = Job.from_dict(event)
    kind = event.get("status")
    if kind == EVENT_SUCCEEDED:
        video_url = event.get("video_url")
        if not isinstance(video_url, str) or not video_url:
            raise Ltx2Error(f"LTX-2 trigger reported success for {job.request_id} without a video URL.")
        return Delivered(job, video_url, str(event.get("completed_at") or utc_now_iso()), event.get("submitted_at"))
    if kind == EVENT_FAILED:
        status = JobStatus(
            JobState.FAILED,
            raw_status=event.get("raw_status"),
            error=event.get("message"),
            input_rejected=bool(event.get("input_rejected")),
        )
        raise failure_error(job, status)
    if kind == EVENT_TIMEOUT:
        raise Ltx2Timeout(str(event.get("message")))
    if kind == EVENT_ERROR:
        raise _error_classes().get(str(event.get("error_class")), Ltx2Error)(str(event.get("message")))
    raise Ltx2Error(f"Unknown status {kind!r} in the event from the LTX-2 trigger: {event!r}")


@contextmanager
def failure_reported(context: Context) -> Iterator[None]:
    """Count a failure by kind and keep its message in XCom ``ltx2_failure`` (the UI shows it), then fail."""
    try:
        yield
    except Ltx2Error as error:
        metrics.failure(type(error).__name__)
        context["ti"].xcom_push(key=FAILURE_XCOM, value=str(error))
        raise


def deliver(
    hook: Ltx2Hook,
    context: Context,
    delivered: Delivered,
    *,
    request: dict[str, Any] | None,
    output_uri: str | None,
    output_conn_id: str | None,
    outlets: Iterable[Any] = (),
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Save the video (and its sidecar) where asked, publish it, and build the result dict."""
    try:
        submitted = datetime.fromisoformat(delivered.submitted_at or "")
        metrics.seconds(
            metrics.GENERATION_SECONDS, (datetime.fromisoformat(delivered.completed_at) - submitted).total_seconds()
        )
    except ValueError:  # no submit time known (a sensor given a bare request id)
        pass
    size = None
    if output_uri:
        import hashlib

        started, digest = time.monotonic(), hashlib.sha256()
        size = hook.download_video(delivered.video_url, output_uri, output_conn_id, digest=digest)
        metrics.seconds(metrics.DOWNLOAD_SECONDS, time.monotonic() - started)
        hook.log.info("LTX-2 video %s saved to %s (%d bytes)", delivered.job.request_id, output_uri, size)
    else:
        hook.log.info("LTX-2 video %s is ready at %s", delivered.job.request_id, delivered.video_url)
    result = result_dict(delivered, request=request, output_uri=output_uri, size=size)
    if output_uri:
        storage.write_sidecar(output_uri, output_conn_id, storage.sidecar(result, fingerprint, digest.hexdigest()))
    publish(context, result, outlets)
    return result


def publish(context: Context, result: dict[str, Any], outlets: Iterable[Any]) -> None:
    """Point the extra link at the video and give the task's outlet assets its facts."""
    Ltx2VideoLink.persist(context, result["video_url"])
    outlet_events = context.get("outlet_events")
    for outlet in outlets:
        if outlet_events is not None and isinstance(outlet, Asset):
            outlet_events[outlet].extra.update({key: result[key] for key in ASSET_EVENT_KEYS})


def reused_result(saved: dict[str, Any]) -> dict[str, Any]:
    """The result dict of a video an earlier run made, read back from its sidecar."""
    return {
        **{key: saved[key] for key in ("request_id", "video_url", "output_uri", "bytes", "request")},
        "status": EVENT_SUCCEEDED,
        "submitted_at": saved.get("submitted_at"),
        "completed_at": saved.get("completed_at"),
        "reused": True,
    }


def result_dict(
    delivered: Delivered, *, request: dict[str, Any] | None, output_uri: str | None, size: int | None
) -> dict[str, Any]:
    """The task's return value (XCom ``return_value``), the same from the operator and the sensor."""
    return {
        "request_id": delivered.job.request_id,
        "status": EVENT_SUCCEEDED,
        "video_url": delivered.video_url,
        "output_uri": output_uri,
        "bytes": size,
        "request": request,
        "submitted_at": delivered.submitted_at,
        "completed_at": delivered.completed_at,
        "reused": False,
    }
