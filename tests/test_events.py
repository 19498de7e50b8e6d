"""Unit tests of ``airflow_provider_ltx2.events``: the triggers' events, written and read back strictly."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_ltx2.api.jobs import Job, JobStatus
from airflow_provider_ltx2.events import (
    Delivered,
    error_event,
    failed_event,
    finished_event,
    read_event,
    succeeded_event,
    timeout_event,
)
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2Timeout,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.waits import Wait
from tests.conftest import CLOCK_START, FAILED, LEGACY_JOB, REJECTED, SUCCEEDED, UNIVERSAL_JOB, VIDEO_URL

SUBMITTED_AT = "2025-06-15T15:00:00+00:00"


def make_wait(job: Job = LEGACY_JOB, *, timeout: float = 600.0) -> Wait:
    return Wait(job, deadline=CLOCK_START + timeout, poll_interval=10.0, started=CLOCK_START)


def round_trip(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the triggerer stores and hands it back: strict JSON, no NaN, no objects."""
    return json.loads(json.dumps(event, allow_nan=False))


@pytest.mark.parametrize("job", [LEGACY_JOB, UNIVERSAL_JOB], ids=["legacy", "universal"])
def test_every_event_is_json_safe(clock: list[float], job: Job) -> None:
    wait = make_wait(job)
    events = [
        succeeded_event(job, SUCCEEDED, SUBMITTED_AT),
        succeeded_event(job, SUCCEEDED, None),
        failed_event(job, FAILED),
        failed_event(job, REJECTED),
        timeout_event(wait),
        error_event(job, Ltx2AuthError("HTTP 401: Access denied")),
        finished_event(job, SUCCEEDED, SUBMITTED_AT),
        finished_event(job, FAILED, SUBMITTED_AT),
    ]

    for event in events:
        assert round_trip(event) == event
        assert event["request_id"] == job.request_id
        assert event["polling_url"] == job.polling_url


def test_succeeded_event_reads_back_as_delivered() -> None:
    event = round_trip(succeeded_event(UNIVERSAL_JOB, SUCCEEDED, SUBMITTED_AT))

    delivered = read_event(event)

    assert delivered.job == UNIVERSAL_JOB
    assert delivered.video_url == VIDEO_URL
    assert delivered.submitted_at == SUBMITTED_AT
    assert delivered.completed_at == event["completed_at"]
    assert datetime.fromisoformat(delivered.completed_at).utcoffset() is not None


def test_a_success_without_completed_at_gets_the_current_time() -> None:
    event = {"status": "succeeded", "request_id": "r1", "video_url": VIDEO_URL}

    delivered = read_event(event)

    assert delivered == Delivered(Job("r1"), VIDEO_URL, delivered.completed_at, None)
    assert datetime.fromisoformat(delivered.completed_at).utcoffset() is not None


def test_finished_event_picks_the_event_for_the_state() -> None:
    assert finished_event(LEGACY_JOB, SUCCEEDED, SUBMITTED_AT)["status"] == "succeeded"
    assert finished_event(LEGACY_JOB, FAILED, SUBMITTED_AT)["status"] == "failed"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(FAILED, Ltx2GenerationFailed), (REJECTED, Ltx2InputRejected)],
    ids=["failed", "rejected"],
)
def test_a_failed_event_raises_with_the_gateway_message(status: JobStatus, error_class: type[Ltx2Error]) -> None:
    with pytest.raises(error_class) as caught:
        read_event(round_trip(failed_event(LEGACY_JOB, status)))

    assert type(caught.value) is error_class
    assert status.error in str(caught.value)
    assert LEGACY_JOB.request_id in str(caught.value)


def test_a_timeout_event_raises_ltx2_timeout(clock: list[float]) -> None:
    wait = make_wait()

    with pytest.raises(Ltx2Timeout) as caught:
        read_event(round_trip(timeout_event(wait)))

    assert str(caught.value) == wait.timeout_message()


@pytest.mark.parametrize(
    "error_class",
    [
        Ltx2Error,
        Ltx2AuthError,
        Ltx2ValidationError,
        Ltx2GenerationFailed,
        Ltx2InputRejected,
        Ltx2Timeout,
        Ltx2TransientError,
    ],
)
def test_an_error_event_re_raises_the_named_class(error_class: type[Ltx2Error]) -> None:
    event = round_trip(error_event(LEGACY_JOB, error_class("the gateway said no")))

    with pytest.raises(error_class) as caught:
        read_event(event)

    assert type(caught.value) is error_class
    assert str(caught.value) == "the gateway said no"


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt", "AirflowException", "NoSuchError", None])
def test_an_error_event_with_an_unknown_class_falls_back_to_ltx2_error(name: str | None) -> None:
    event = {"status": "error", "request_id": "r1", "error_class": name, "message": "boom"}

    with pytest.raises(Ltx2Error, match="boom") as caught:
        read_event(event)

    assert type(caught.value) is Ltx2Error


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        pytest.param(None, "Malformed event", id="none"),
        pytest.param("succeeded", "Malformed event", id="string"),
        pytest.param([{"status": "succeeded"}], "Malformed event", id="list"),
        pytest.param({"status": "succeeded", "video_url": VIDEO_URL}, "Malformed event", id="no-request-id"),
        pytest.param({"status": "succeeded", "request_id": 7, "video_url": VIDEO_URL}, "Malformed event", id="int-id"),
        pytest.param({"status": "succeeded", "request_id": "r1"}, "without a video URL", id="no-url"),
        pytest.param({"status": "succeeded", "request_id": "r1", "video_url": ""}, "without a video URL", id="empty"),
        pytest.param({"status": "succeeded", "request_id": "r1", "video_url": 3}, "without a video URL", id="int-url"),
        pytest.param(
            {"status": "cancelled", "request_id": "r1", "video_url": VIDEO_URL}, "Unknown status", id="unknown"
        ),
        pytest.param({"status": "SUCCEEDED", "request_id": "r1", "video_url": VIDEO_URL}, "Unknown status", id="upper"),
        pytest.param({"request_id": "r1", "video_url": VIDEO_URL}, "Unknown status", id="no-status"),
    ],
)
def test_a_malformed_event_is_an_error_never_a_success(event: Any, fragment: str) -> None:
    with pytest.raises(Ltx2Error, match=fragment) as caught:
        read_event(event)

    assert type(caught.value) is Ltx2Error
