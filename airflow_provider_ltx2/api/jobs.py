"""A generation at the gateway: the submit's answer read into a ``Job``, a poll's into a ``JobStatus``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_ltx2.api.replies import NO_JOB_CREATED, UNCONFIRMED, Reply, error_for_reply, gateway_message
from airflow_provider_ltx2.contract import STATUS_PATH
from airflow_provider_ltx2.exceptions import (
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2SubmitUnconfirmed,
    Ltx2TransientError,
)


@dataclass(frozen=True)
class Job:
    """A submitted generation: what is needed to ask about it later. JSON-safe and secret-free."""

    request_id: str
    polling_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "polling_url": self.polling_url}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        return cls(request_id=str(data["request_id"]), polling_url=data.get("polling_url"))


def on_gateway(url: object, base_url: str) -> bool:
    """Whether ``url`` is plainly under ``base_url``: the same scheme, host and port, below its path.

    Anything clever (user info, backslashes, control characters, a different port spelling) is not, nor is
    anything but text (a polling URL may come from XCom or a sensor's dict: data of any shape).
    """
    if not isinstance(url, str) or not url.isascii() or not url.isprintable() or any(c in url for c in "@\\ "):
        return False
    base, found = urlsplit(base_url.rstrip("/")), urlsplit(url)
    return (
        found.scheme.lower() == base.scheme.lower()
        and found.netloc.lower() == base.netloc.lower()
        and found.path.startswith(base.path + "/")
    )


def polling_url_on_gateway(job: Job, base_url: str) -> str | None:
    """Where to poll ``job``: its polling URL when it is on the gateway, else the gateway's own status URL.

    The key is sent with every poll, so it goes to the gateway only, wherever the URL came from: a submit
    reply, a sensor's argument, a dict handed through XCom, a trigger's kwargs. None: the legacy result call.
    """
    if not job.polling_url:
        return None
    if on_gateway(job.polling_url, base_url):
        return job.polling_url
    return base_url.rstrip("/") + STATUS_PATH.format(request_id=quote(job.request_id, safe=""))


def parse_submission(reply: Reply, base_url: str) -> Job:
    """Turn the submit reply into a ``Job``; either protocol of the gateway is accepted.

    A ``polling_url`` that is not on the gateway is replaced by the gateway's own (``polling_url_on_gateway``).
    """
    if reply.status not in (200, 201, 202):
        if reply.status >= 500 and reply.status not in NO_JOB_CREATED:
            raise Ltx2SubmitUnconfirmed(
                f"LTX-2 gateway answered HTTP {reply.status} to the submit: {gateway_message(reply)}. {UNCONFIRMED}"
            )
        raise error_for_reply(reply, "the submit")
    body = reply.json()
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if not isinstance(request_id, str) or not request_id:
        raise Ltx2SubmitUnconfirmed(
            f"LTX-2 gateway answered HTTP {reply.status} to the submit but sent no readable request_id: "
            f"{reply.excerpt()}. {UNCONFIRMED}"
        )
    polling_url = body.get("polling_url")
    job = Job(request_id, polling_url if isinstance(polling_url, str) and polling_url else None)
    return Job(request_id, polling_url_on_gateway(job, base_url))


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


_RAW_STATES = {
    **dict.fromkeys(("IN_QUEUE", "QUEUED", "PENDING"), JobState.QUEUED),
    **dict.fromkeys(("IN_PROGRESS", "PROCESSING", "RUNNING", "STARTED"), JobState.RUNNING),
    **dict.fromkeys(("COMPLETED", "SUCCEEDED", "SUCCESS", "OK", "DONE"), JobState.SUCCEEDED),
    **dict.fromkeys(("FAILED", "ERROR", "CANCELLED", "CANCELED"), JobState.FAILED),
}


@dataclass(frozen=True)
class JobStatus:
    """One poll's answer, normalised: the state, the video URL when there is one, the error otherwise."""

    state: JobState
    raw_status: str | None = None
    video_url: str | None = None
    error: str | None = None
    input_rejected: bool = False


# Where a result body may hold the video's URL, in the order docs/gateway-contract.md lists them.
VIDEO_URL_PLACES = (
    ("output", "media_url"),
    ("video", "url"),
    ("result", "video", "url"),
    ("payload", "video", "url"),
    ("result", "video_url"),
    ("video_url",),
    ("output_url",),
    ("url",),
)


def find_video_url(body: Any) -> str | None:
    """The video URL in a result body, checking the places docs/gateway-contract.md lists in order; first wins."""
    if not isinstance(body, dict):
        return None
    for path in VIDEO_URL_PLACES:
        value: Any = body
        for key in path:
            if not isinstance(value, dict):
                value = None
                break
            value = value.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
            return value
    return None


def normalise_state(raw_status: Any) -> JobState:
    if not isinstance(raw_status, str):
        return JobState.UNKNOWN
    return _RAW_STATES.get(raw_status.strip().upper(), JobState.UNKNOWN)


def parse_status(reply: Reply) -> JobStatus:
    """Read one poll reply into a ``JobStatus``; raise for replies that end the wait (401, 404, ...).

    A 422 or a ``detail`` payload is fal's way of saying the model rejected the input: that is a
    failure retrying cannot fix, flagged as ``input_rejected``.
    """
    body = reply.json()
    if reply.status == 202 and not isinstance(body, dict):
        return JobStatus(JobState.QUEUED)
    if reply.status == 422:
        return JobStatus(JobState.FAILED, error=gateway_message(reply), input_rejected=True)
    if reply.status >= 300:
        raise error_for_reply(reply, "the status poll")
    if not isinstance(body, dict):
        raise Ltx2TransientError(f"LTX-2 gateway sent a status reply that is not JSON: {reply.excerpt(200)}")
    raw = body.get("status")
    state = normalise_state(raw)
    if state is JobState.QUEUED or state is JobState.RUNNING:
        return JobStatus(state, raw_status=raw)  # the common answer: no video to look for yet
    video_url = find_video_url(body)
    if raw is None:
        if video_url:
            state = JobState.SUCCEEDED
        elif body.get("error") or body.get("detail"):
            state = JobState.FAILED
    if state is JobState.FAILED:
        return JobStatus(
            state,
            raw_status=raw,
            error=gateway_message(reply),
            input_rejected="detail" in body and raw is None,
        )
    if state is JobState.SUCCEEDED and not video_url:
        raise Ltx2GenerationFailed(
            f"LTX-2 gateway reported the generation as {raw or 'done'} but sent no video URL: {reply.excerpt()}"
        )
    return JobStatus(state, raw_status=raw, video_url=video_url)


def failure_error(job: Job, status: JobStatus) -> Ltx2GenerationFailed:
    """The exception for a generation the gateway reported as failed."""
    error_class = Ltx2InputRejected if status.input_rejected else Ltx2GenerationFailed
    return error_class(
        f"LTX-2 generation {job.request_id} failed ({status.raw_status or 'no status'}): "
        f"{status.error or 'no reason given'}"
    )
