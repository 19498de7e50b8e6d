"""Unit tests of ``airflow_provider_ltx2.events``: the triggers' events, written and read back strictly."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, get_type_hints

import pytest

from airflow_provider_ltx2.api.jobs import Job, JobStatus
from airflow_provider_ltx2.events import (
    Delivered,
    error_event,
    failed_event,
    finished_event,
    read_video_event,
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

    delivered = read_video_event(event)

    assert delivered.job == UNIVERSAL_JOB
    assert delivered.video_url == VIDEO_URL
    assert delivered.submitted_at == SUBMITTED_AT
    assert delivered.completed_at == event["completed_at"]
    assert datetime.fromisoformat(delivered.completed_at).utcoffset() is not None


def test_a_success_without_completed_at_gets_the_current_time() -> None:
    event = {"status": "succeeded", "request_id": "r1", "video_url": VIDEO_URL}

    delivered = read_video_event(event)

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
        read_video_event(round_trip(failed_event(LEGACY_JOB, status)))

    assert type(caught.value) is error_class
    assert status.error in str(caught.value)
    assert LEGACY_JOB.request_id in str(caught.value)


def test_a_timeout_event_raises_ltx2_timeout(clock: list[float]) -> None:
    wait = make_wait()

    with pytest.raises(Ltx2Timeout) as caught:
        read_video_event(round_trip(timeout_event(wait)))

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
        read_video_event(event)

    assert type(caught.value) is error_class
    assert str(caught.value) == "the gateway said no"


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt", "AirflowException", "NoSuchError", None])
def test_an_error_event_with_an_unknown_class_falls_back_to_ltx2_error(name: str | None) -> None:
    event = {"status": "error", "request_id": "r1", "error_class": name, "message": "boom"}

    with pytest.raises(Ltx2Error, match="boom") as caught:
        read_video_event(event)

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
        read_video_event(event)

    assert type(caught.value) is Ltx2Error


def every_kind_of_event(clock: list[float]) -> list[tuple[Any, type]]:
    """One event of each kind a trigger yields, with the type ``events.py`` declares for it."""
    from airflow_provider_ltx2 import events
    from airflow_provider_ltx2.waits import CapacityWait, Deadline

    capacity = CapacityWait.for_deadline(Deadline(CLOCK_START + 600.0), poll_interval=10.0)
    return [
        (succeeded_event(LEGACY_JOB, SUCCEEDED, SUBMITTED_AT), events.SucceededEvent),
        (failed_event(UNIVERSAL_JOB, REJECTED), events.FailedEvent),
        (timeout_event(make_wait()), events.TimeoutEvent),
        (error_event(LEGACY_JOB, Ltx2AuthError("HTTP 401")), events.ErrorEvent),
        (error_event(None, Ltx2Error("no connection")), events.ErrorEvent),
        (events.capacity_event(capacity, "timer"), events.CapacityEvent),
        (events.capacity_timeout_event(capacity), events.CapacityTimeoutEvent),
        (
            events.batch_event(
                {"table": "t"},
                {LEGACY_JOB.request_id: succeeded_event(LEGACY_JOB, SUCCEEDED, None)},
                woken_by="finish",
                deadline=CLOCK_START + 600.0,
                deadline_limit="timeout",
                capacity=None,
            ),
            events.BatchEvent,
        ),
    ]


def test_every_event_has_the_fields_and_status_its_type_declares(clock: list[float]) -> None:
    """The types in ``events.py`` are what the triggers write: no field missing, none undeclared, the status its
    ``Literal``, and JSON as the triggerer stores it."""
    for event, declared in every_kind_of_event(clock):
        required, optional = set(declared.__required_keys__), set(declared.__optional_keys__)
        assert required <= set(event) <= required | optional, (declared.__name__, sorted(event))
        assert get_type_hints(declared)["status"].__args__ == (event["status"],), declared.__name__
        assert round_trip(event) == event


def test_a_capacity_event_names_capacity_and_one_of_0_3_still_reads(clock: list[float]) -> None:
    """0.4 writes ``capacity``; an event stored by 0.3's triggerer (``room``) is read the same during an upgrade."""
    from airflow_provider_ltx2.events import capacity_event, capacity_timeout_event, read_capacity_event
    from airflow_provider_ltx2.waits import CapacityWait, Deadline

    wait = CapacityWait.for_deadline(Deadline(CLOCK_START + 600.0), poll_interval=10.0)
    event = capacity_event(wait, "timer")
    assert event["status"] == "capacity" and "room" not in event
    stored_by_0_3 = {"status": "room", "woken_by": "timer", "room": wait.to_dict()}

    assert read_capacity_event(round_trip(event)) == read_capacity_event(stored_by_0_3)
    timed_out = capacity_timeout_event(wait)
    for late in (timed_out, {"status": "timeout", "room": timed_out["capacity"], "message": timed_out["message"]}):
        with pytest.raises(Ltx2Timeout, match="no capacity for this task before its deadline"):
            read_capacity_event(round_trip(late))
