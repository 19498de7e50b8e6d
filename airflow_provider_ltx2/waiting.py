"""Waiting for a video, shared by the worker-side poll loop, the sensor and the trigger.

``Wait`` holds the decisions of one wait (when to poll, when the deadline passed, how long an unknown
status is tolerated, what changed since the last poll); the trigger's events and the task's result
dict are defined here too, so the trigger, the operator and the sensor read and write one format.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_ltx2 import exceptions
from airflow_provider_ltx2.api import Job, JobState, JobStatus, failure_error
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2Timeout

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TIMEOUT = 30 * 60.0
MAX_UNKNOWN_POLLS = 30


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Wait:
    """The state of one wait for one job. ``deadline`` is absolute (epoch seconds) so it survives restarts."""

    job: Job
    deadline: float
    poll_interval: float = DEFAULT_POLL_INTERVAL
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
            f"({datetime.fromtimestamp(self.deadline, timezone.utc).isoformat(timespec='seconds')}, "
            f"last status {self.last_status or 'none'}). It may still finish on the gateway; on Airflow 3.3+ "
            "a retry of the operator's task reattaches to it instead of paying again."
        )


# --------------------------------------------------------------------------------------------------
# Trigger events: one dict per outcome; anything else is rejected.
# --------------------------------------------------------------------------------------------------

EVENT_SUCCEEDED = "succeeded"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
_ERROR_CLASSES: dict[str, type[Ltx2Error]] = {
    cls.__name__: cls
    for cls in (
        exceptions.Ltx2Error,
        exceptions.Ltx2AuthError,
        exceptions.Ltx2ValidationError,
        exceptions.Ltx2GenerationFailed,
        exceptions.Ltx2InputRejected,
        exceptions.Ltx2Timeout,
        exceptions.Ltx2TransientError,
    )
}


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
        raise _ERROR_CLASSES.get(str(event.get("error_class")), Ltx2Error)(str(event.get("message")))
    raise Ltx2Error(f"Unknown status {kind!r} in the event from the LTX-2 trigger: {event!r}")


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
    }
