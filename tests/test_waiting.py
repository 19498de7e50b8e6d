"""Unit tests of ``airflow_provider_ltx2.waiting``: one wait's decisions, the trigger events, the result dict."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_ltx2.api import Job, JobState, JobStatus
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2Timeout,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.waiting import (
    MAX_UNKNOWN_POLLS,
    Delivered,
    Wait,
    error_event,
    failed_event,
    finished_event,
    read_event,
    result_dict,
    succeeded_event,
    timeout_event,
)
from tests.conftest import RecordingLog

NOW = 1_750_000_000.0
VIDEO = "https://pub-1234.r2.dev/out/output.mp4"
LEGACY = Job("ltx2-v-7a3b")
UNIVERSAL = Job("ltx-2-video-api-581_019d", "https://gateway.pixazo.ai/v2/requests/status/ltx-2-video-api-581_019d")
SUBMITTED_AT = "2025-06-15T15:00:00+00:00"

QUEUED = JobStatus(JobState.QUEUED, raw_status="IN_QUEUE")
RUNNING = JobStatus(JobState.RUNNING, raw_status="IN_PROGRESS")
SUCCEEDED = JobStatus(JobState.SUCCEEDED, raw_status="COMPLETED", video_url=VIDEO)
FAILED = JobStatus(JobState.FAILED, raw_status="FAILED", error="Content policy violation")
REJECTED = JobStatus(JobState.FAILED, error="Image could not be decoded", input_rejected=True)


def unknown(raw: str = "WARMING_UP") -> JobStatus:
    return JobStatus(JobState.UNKNOWN, raw_status=raw)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Pin ``time.time``; set ``clock[0]`` to move it."""
    now = [NOW]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def make_wait(job: Job = LEGACY, *, timeout: float = 600.0, poll_interval: float = 10.0) -> Wait:
    return Wait(job, deadline=NOW + timeout, poll_interval=poll_interval, started=NOW)


# ==================================================================================================
# Wait
# ==================================================================================================


@pytest.mark.parametrize(
    ("status", "finished"),
    [(QUEUED, False), (RUNNING, False), (unknown(), False), (SUCCEEDED, True), (FAILED, True), (REJECTED, True)],
)
def test_observe_tells_whether_the_job_is_finished(clock: list[float], status: JobStatus, finished: bool) -> None:
    assert make_wait().observe(status, RecordingLog()) is finished


def test_observe_logs_only_when_the_status_changes(clock: list[float]) -> None:
    wait, log = make_wait(), RecordingLog()

    for seconds, status in [(0, QUEUED), (10, QUEUED), (20, RUNNING), (30, RUNNING), (40, RUNNING), (45, SUCCEEDED)]:
        clock[0] = NOW + seconds
        wait.observe(status, log)

    assert log.messages("info") == [
        "LTX-2 request ltx2-v-7a3b is queued after 0s",
        "LTX-2 request ltx2-v-7a3b is running after 20s",
        "LTX-2 request ltx2-v-7a3b is succeeded after 45s",
    ]
    assert wait.last_status == "succeeded"


def test_observe_logs_each_new_unknown_status_word(clock: list[float]) -> None:
    wait, log = make_wait(), RecordingLog()

    for status in (unknown("WARMING_UP"), unknown("WARMING_UP"), unknown("RENDERING"), RUNNING):
        wait.observe(status, log)

    assert log.messages("info") == [
        "LTX-2 request ltx2-v-7a3b is 'WARMING_UP' after 0s",
        "LTX-2 request ltx2-v-7a3b is 'RENDERING' after 0s",
        "LTX-2 request ltx2-v-7a3b is running after 0s",
    ]


def test_observe_tolerates_unknown_statuses_up_to_the_limit(clock: list[float]) -> None:
    wait = make_wait()

    for _ in range(MAX_UNKNOWN_POLLS - 1):
        assert wait.observe(unknown(), RecordingLog()) is False

    with pytest.raises(Ltx2Error, match=f"unknown status 'WARMING_UP' {MAX_UNKNOWN_POLLS} times") as caught:
        wait.observe(unknown(), RecordingLog())

    assert LEGACY.request_id in str(caught.value)


def test_a_known_status_resets_the_unknown_count(clock: list[float]) -> None:
    wait = make_wait()

    for _ in range(MAX_UNKNOWN_POLLS - 1):
        wait.observe(unknown(), RecordingLog())
    wait.observe(RUNNING, RecordingLog())

    assert wait.unknown_polls == 0
    for _ in range(MAX_UNKNOWN_POLLS - 1):
        assert wait.observe(unknown(), RecordingLog()) is False
    with pytest.raises(Ltx2Error):
        wait.observe(unknown(), RecordingLog())


def test_the_unknown_limit_is_bounded() -> None:
    # "running for a bounded number of polls": at the default 10 s interval, a few minutes at most.
    assert 1 < MAX_UNKNOWN_POLLS <= 100


@pytest.mark.parametrize(
    ("seconds", "expired", "delay"),
    [
        (0.0, False, 10.0),
        (500.0, False, 10.0),
        (595.0, False, 5.0),
        (599.9, False, pytest.approx(0.1)),
        (600.0, True, 0.0),
        (900.0, True, 0.0),
    ],
)
def test_expired_and_next_delay_never_go_past_the_deadline(
    clock: list[float], seconds: float, expired: bool, delay: float
) -> None:
    wait = make_wait(timeout=600.0, poll_interval=10.0)
    clock[0] = NOW + seconds

    assert wait.expired() is expired
    assert wait.next_delay() == delay
    assert time.time() + wait.next_delay() <= wait.deadline or expired


def test_elapsed_counts_from_started(clock: list[float]) -> None:
    wait = make_wait()
    clock[0] = NOW + 42.5

    assert wait.elapsed() == 42.5


def test_timeout_message_names_the_request_deadline_and_last_status(clock: list[float]) -> None:
    wait = make_wait(UNIVERSAL, timeout=90.0)
    wait.observe(RUNNING, RecordingLog())

    message = wait.timeout_message()

    assert UNIVERSAL.request_id in message
    assert "2025-06-15T15:08:10+00:00" in message  # NOW + 90 s, in UTC
    assert "last status running" in message


def test_timeout_message_before_any_poll(clock: list[float]) -> None:
    assert "last status none" in make_wait().timeout_message()


# ==================================================================================================
# Trigger events
# ==================================================================================================


def round_trip(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the triggerer stores and hands it back: strict JSON, no NaN, no objects."""
    return json.loads(json.dumps(event, allow_nan=False))


@pytest.mark.parametrize("job", [LEGACY, UNIVERSAL], ids=["legacy", "universal"])
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
    event = round_trip(succeeded_event(UNIVERSAL, SUCCEEDED, SUBMITTED_AT))

    delivered = read_event(event)

    assert delivered.job == UNIVERSAL
    assert delivered.video_url == VIDEO
    assert delivered.submitted_at == SUBMITTED_AT
    assert delivered.completed_at == event["completed_at"]
    assert datetime.fromisoformat(delivered.completed_at).utcoffset() is not None


def test_a_success_without_completed_at_gets_the_current_time() -> None:
    event = {"status": "succeeded", "request_id": "r1", "video_url": VIDEO}

    delivered = read_event(event)

    assert delivered == Delivered(Job("r1"), VIDEO, delivered.completed_at, None)
    assert datetime.fromisoformat(delivered.completed_at).utcoffset() is not None


def test_finished_event_picks_the_event_for_the_state() -> None:
    assert finished_event(LEGACY, SUCCEEDED, SUBMITTED_AT)["status"] == "succeeded"
    assert finished_event(LEGACY, FAILED, SUBMITTED_AT)["status"] == "failed"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(FAILED, Ltx2GenerationFailed), (REJECTED, Ltx2InputRejected)],
    ids=["failed", "rejected"],
)
def test_a_failed_event_raises_with_the_gateway_message(status: JobStatus, error_class: type[Ltx2Error]) -> None:
    with pytest.raises(error_class) as caught:
        read_event(round_trip(failed_event(LEGACY, status)))

    assert type(caught.value) is error_class
    assert status.error in str(caught.value)
    assert LEGACY.request_id in str(caught.value)


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
    event = round_trip(error_event(LEGACY, error_class("the gateway said no")))

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
        pytest.param({"status": "succeeded", "video_url": VIDEO}, "Malformed event", id="no-request-id"),
        pytest.param({"status": "succeeded", "request_id": 7, "video_url": VIDEO}, "Malformed event", id="int-id"),
        pytest.param({"status": "succeeded", "request_id": "r1"}, "without a video URL", id="no-url"),
        pytest.param({"status": "succeeded", "request_id": "r1", "video_url": ""}, "without a video URL", id="empty"),
        pytest.param({"status": "succeeded", "request_id": "r1", "video_url": 3}, "without a video URL", id="int-url"),
        pytest.param({"status": "cancelled", "request_id": "r1", "video_url": VIDEO}, "Unknown status", id="unknown"),
        pytest.param({"status": "SUCCEEDED", "request_id": "r1", "video_url": VIDEO}, "Unknown status", id="upper"),
        pytest.param({"request_id": "r1", "video_url": VIDEO}, "Unknown status", id="no-status"),
    ],
)
def test_a_malformed_event_is_an_error_never_a_success(event: Any, fragment: str) -> None:
    with pytest.raises(Ltx2Error, match=fragment) as caught:
        read_event(event)

    assert type(caught.value) is Ltx2Error


# ==================================================================================================
# The task's result
# ==================================================================================================


def test_result_dict_has_exactly_the_documented_keys() -> None:
    delivered = Delivered(UNIVERSAL, VIDEO, "2025-06-15T15:01:30+00:00", SUBMITTED_AT)
    request = {"image_url": "https://example.com/cat.jpg", "prompt": "the cat turns its head", "duration": 6}

    result = result_dict(delivered, request=request, output_uri="file:///data/v.mp4", size=6_841_082)

    assert result == {
        "request_id": UNIVERSAL.request_id,
        "status": "succeeded",
        "video_url": VIDEO,
        "output_uri": "file:///data/v.mp4",
        "bytes": 6_841_082,
        "request": request,
        "submitted_at": SUBMITTED_AT,
        "completed_at": "2025-06-15T15:01:30+00:00",
        "reused": False,
    }
    assert round_trip(result) == result


def test_result_dict_without_a_download() -> None:
    delivered = read_event(succeeded_event(LEGACY, SUCCEEDED, None))

    result = result_dict(delivered, request=None, output_uri=None, size=None)

    assert set(result) == {
        "request_id",
        "status",
        "video_url",
        "output_uri",
        "bytes",
        "request",
        "submitted_at",
        "completed_at",
        "reused",
    }
    assert (result["output_uri"], result["bytes"], result["submitted_at"]) == (None, None, None)
