"""The triggers' events: every kind, written by the triggers and read back by the tasks, in this one module.

An event crosses the triggerer's database as a JSON dict; each kind is typed here (``TypedDict``) as it is
written. Every field is checked on reading: a malformed or unknown event fails the task rather than passing
for a success (a cancelled job reported as success is the classic deferrable-operator bug). Events written by
0.2 and 0.3 (the capacity trigger's ``room``) still read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

from airflow_provider_ltx2.api.jobs import Job, JobState, JobStatus, failure_error
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2Timeout
from airflow_provider_ltx2.waits import CapacityWait, Next, PollStep, Wait, utc_now_iso

EVENT_SUCCEEDED: Final = "succeeded"
EVENT_FAILED: Final = "failed"
EVENT_TIMEOUT: Final = "timeout"
EVENT_ERROR: Final = "error"
EVENT_BATCH: Final = "batch"
EVENT_CAPACITY: Final = "capacity"
EVENT_CAPACITY_BEFORE_0_4 = "room"  # the capacity event's status and field in 0.2 and 0.3


class JobFields(TypedDict):
    """The job an event is about: what ``Job.to_dict`` writes."""

    request_id: str
    polling_url: str | None


class SucceededEvent(JobFields):
    status: Literal["succeeded"]
    video_url: str | None
    submitted_at: str | None
    completed_at: str


class FailedEvent(JobFields):
    status: Literal["failed"]
    raw_status: str | None
    message: str | None
    input_rejected: bool


class TimeoutEvent(JobFields):
    status: Literal["timeout"]
    message: str


class ErrorEvent(TypedDict, total=False):
    """Any trigger's event for one of the provider's errors; the job's fields when it waits for one."""

    status: Literal["error"]
    request_id: str
    polling_url: str | None
    error_class: str
    message: str


VideoEvent = SucceededEvent | FailedEvent | TimeoutEvent | ErrorEvent  # ``Ltx2VideoTrigger``'s


class CapacityEvent(TypedDict):
    """``Ltx2CapacityTrigger``'s event: time to try the submit again."""

    status: Literal["capacity"]
    woken_by: str  # "finish" (a job ended in this triggerer) or "timer" (the fallback)
    capacity: dict[str, Any]  # the ``CapacityWait``


class CapacityTimeoutEvent(TypedDict):
    """``Ltx2CapacityTrigger``'s event at the deadline."""

    status: Literal["timeout"]
    capacity: dict[str, Any]
    message: str


class BatchEvent(TypedDict):
    """``Ltx2BatchTrigger``'s event."""

    status: Literal["batch"]
    woken_by: str
    batch: dict[str, Any]  # the ``BatchProgress`` as the trigger was given it
    ended: dict[str, VideoEvent]  # by request id: each job that ended, as the video trigger's event
    deadline: float
    deadline_limit: str
    capacity: dict[str, Any] | None


TriggerPayload = VideoEvent | CapacityEvent | CapacityTimeoutEvent | BatchEvent  # every event a trigger yields


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


def delivered_video(job: Job, status: JobStatus, submitted_at: str | None) -> Delivered:
    """The video of a job a poll found finished, or the generation's failure, raised."""
    if status.state is not JobState.SUCCEEDED or not status.video_url:
        raise failure_error(job, status)
    return Delivered(job, status.video_url, utc_now_iso(), submitted_at)


def succeeded_event(job: Job, status: JobStatus, submitted_at: str | None) -> SucceededEvent:
    return {
        "status": EVENT_SUCCEEDED,
        "request_id": job.request_id,
        "polling_url": job.polling_url,
        "video_url": status.video_url,
        "submitted_at": submitted_at,
        "completed_at": utc_now_iso(),
    }


def failed_event(job: Job, status: JobStatus) -> FailedEvent:
    return {
        "status": EVENT_FAILED,
        "request_id": job.request_id,
        "polling_url": job.polling_url,
        "raw_status": status.raw_status,
        "message": status.error,
        "input_rejected": status.input_rejected,
    }


def timeout_event(wait: Wait) -> TimeoutEvent:
    job = wait.job
    return {
        "status": EVENT_TIMEOUT,
        "request_id": job.request_id,
        "polling_url": job.polling_url,
        "message": wait.timeout_message(),
    }


def error_event(job: Job | None, error: Ltx2Error) -> ErrorEvent:
    """Any trigger's event for an error that ended its wait (with the job's fields when it waits for one)."""
    event: ErrorEvent = {"status": EVENT_ERROR, "error_class": type(error).__name__, "message": str(error)}
    if job is not None:
        event["request_id"], event["polling_url"] = job.request_id, job.polling_url
    return event


def finished_event(job: Job, status: JobStatus, submitted_at: str | None) -> SucceededEvent | FailedEvent:
    if status.state is JobState.SUCCEEDED:
        return succeeded_event(job, status, submitted_at)
    return failed_event(job, status)


def step_event(step: PollStep, submitted_at: str | None) -> VideoEvent:
    """The video trigger's event for a wait that ended: finished, timed out or given up."""
    job = step.wait.job
    if step.next is Next.FINISHED and step.status is not None:
        return finished_event(job, step.status, submitted_at)
    if step.next is Next.TIMED_OUT:
        return timeout_event(step.wait)
    return error_event(job, step.error or Ltx2Error(f"The wait ended without an answer ({step.next.value})"))


def capacity_event(wait: CapacityWait, woken_by: str) -> CapacityEvent:
    """``Ltx2CapacityTrigger``'s event: time to try the submit again (``woken_by``: finish, timer)."""
    return {"status": EVENT_CAPACITY, "woken_by": woken_by, "capacity": wait.to_dict()}


def capacity_timeout_event(wait: CapacityWait) -> CapacityTimeoutEvent:
    """``Ltx2CapacityTrigger``'s event at the deadline: the gateway had no capacity in time."""
    return {"status": EVENT_TIMEOUT, "capacity": wait.to_dict(), "message": wait.timeout_message()}


def read_capacity_event(event: Any) -> CapacityWait:
    """The wait for capacity carried by a capacity trigger's event; a timeout or error event is raised."""
    if isinstance(event, dict) and event.get("status") == EVENT_ERROR:
        raise _error_of(event)
    carried = event.get("capacity", event.get(EVENT_CAPACITY_BEFORE_0_4)) if isinstance(event, dict) else None
    if not isinstance(carried, dict):
        raise Ltx2Error(f"Malformed event from the LTX-2 capacity trigger: {event!r}")
    wait = CapacityWait.from_dict(carried)
    if event.get("status") == EVENT_TIMEOUT:
        raise Ltx2Timeout(str(event.get("message")))
    if event.get("status") not in (EVENT_CAPACITY, EVENT_CAPACITY_BEFORE_0_4):
        raise Ltx2Error(f"Unknown status {event.get('status')!r} in the event from the LTX-2 capacity trigger")
    if event.get("woken_by") == "timer":
        wait.fallback_wakes += 1
    return wait


def read_video_event(event: Any) -> Delivered:
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
        raise _error_of(event)
    raise Ltx2Error(f"Unknown status {kind!r} in the event from the LTX-2 trigger: {event!r}")


def _error_of(event: dict[str, Any]) -> Ltx2Error:
    """The error an error event carries, of its own class (``Ltx2Error`` for a name this version lacks)."""
    return _error_classes().get(str(event.get("error_class")), Ltx2Error)(str(event.get("message")))


@dataclass(frozen=True)
class BatchWake:
    """What ``Ltx2BatchTrigger`` woke a batch task with: its progress as carried, the jobs that ended (a video
    or an error each), its deadline, and its wait for capacity, if any."""

    progress: dict[str, Any]
    ended: dict[str, Delivered | Ltx2Error]
    deadline: float
    deadline_limit: str
    capacity: CapacityWait | None


def batch_event(
    progress: dict[str, Any],
    ended: dict[str, VideoEvent],
    *,
    woken_by: str,
    deadline: float,
    deadline_limit: str,
    capacity: dict[str, Any] | None,
) -> BatchEvent:
    """``Ltx2BatchTrigger``'s event: the jobs that ended (each as the video trigger's event) and the batch's
    progress and deadline as the trigger was given them (``woken_by``: finish, timer)."""
    return {
        "status": EVENT_BATCH,
        "woken_by": woken_by,
        "batch": progress,
        "ended": ended,
        "deadline": deadline,
        "deadline_limit": deadline_limit,
        "capacity": capacity,
    }


def read_batch_event(event: Any) -> BatchWake:
    """Read the batch trigger's event; an error event (no connection, no key) is raised."""
    if isinstance(event, dict) and event.get("status") == EVENT_ERROR:
        raise _error_of(event)
    fields_ok = (
        isinstance(event, dict)
        and event.get("status") == EVENT_BATCH
        and isinstance(event.get("batch"), dict)
        and isinstance(event.get("ended"), dict)
        and isinstance(event.get("deadline"), (int, float))
        and isinstance(event.get("capacity"), (dict, type(None)))
    )
    if not fields_ok:
        raise Ltx2Error(f"Malformed event from the LTX-2 batch trigger: {str(event)[:500]}")
    ended: dict[str, Delivered | Ltx2Error] = {}
    for request_id, job_event in event["ended"].items():
        try:
            ended[str(request_id)] = read_video_event(job_event)
        except Ltx2Error as error:
            ended[str(request_id)] = error
    capacity = event["capacity"]
    return BatchWake(
        event["batch"],
        ended,
        float(event["deadline"]),
        str(event.get("deadline_limit") or "timeout"),
        None if capacity is None else CapacityWait.from_dict(capacity),
    )
