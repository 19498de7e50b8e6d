"""Unit tests of ``api.jobs``: job states, the video URL, and reading the gateway's submit and status replies."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ltx2.api.calls import poll_call
from airflow_provider_ltx2.api.jobs import (
    Job,
    JobState,
    JobStatus,
    failure_error,
    find_video_url,
    normalise_state,
    parse_status,
    parse_submission,
)
from airflow_provider_ltx2.api.replies import Reply
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2SubmitUnconfirmed,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from tests.conftest import APIM_401, BASE, reply

VIDEO = "https://pub-1234.r2.dev/out/output.mp4"


# ==================================================================================================
# Status normalisation and the video URL
# ==================================================================================================

RAW_STATES = [
    *[(raw, JobState.QUEUED) for raw in ("IN_QUEUE", "QUEUED", "PENDING")],
    *[(raw, JobState.RUNNING) for raw in ("IN_PROGRESS", "PROCESSING", "RUNNING", "STARTED")],
    *[(raw, JobState.SUCCEEDED) for raw in ("COMPLETED", "SUCCEEDED", "SUCCESS", "OK", "DONE")],
    *[(raw, JobState.FAILED) for raw in ("FAILED", "ERROR", "CANCELLED", "CANCELED")],
]


@pytest.mark.parametrize(("raw", "state"), RAW_STATES)
def test_normalise_state_follows_the_api_md_table_case_insensitively(raw: str, state: JobState) -> None:
    assert normalise_state(raw) is state
    assert normalise_state(raw.lower()) is state
    assert normalise_state(raw.title()) is state
    assert normalise_state(f" {raw} ") is state


@pytest.mark.parametrize("raw", ["WAITING", "COMPLETE", "IN-QUEUE", "", "   ", None, 3, ["QUEUED"]])
def test_normalise_state_of_anything_else_is_unknown(raw: Any) -> None:
    assert normalise_state(raw) is JobState.UNKNOWN


def test_only_succeeded_and_failed_are_finished() -> None:
    assert {state for state in JobState if state.finished} == {JobState.SUCCEEDED, JobState.FAILED}


# Each place docs/gateway-contract.md lists, in its order, with a distinct URL.
URL_LOCATIONS: list[tuple[str, dict[str, Any]]] = [
    ("output.media_url[0]", {"output": {"media_url": ["https://cdn.example/0.mp4"]}}),
    ("video.url", {"video": {"url": "https://cdn.example/1.mp4"}}),
    ("result.video.url", {"result": {"video": {"url": "https://cdn.example/2.mp4"}}}),
    ("payload.video.url", {"payload": {"video": {"url": "https://cdn.example/3.mp4"}}}),
    ("result.video_url", {"result": {"video_url": "https://cdn.example/4.mp4"}}),
    ("video_url", {"video_url": "https://cdn.example/5.mp4"}),
    ("output_url", {"output_url": "https://cdn.example/6.mp4"}),
    ("url", {"url": "https://cdn.example/7.mp4"}),
]


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Deep-merge bodies, so ``result.video.url`` and ``result.video_url`` can sit side by side."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _merge([merged[key], value])
            else:
                merged[key] = value
    return merged


@pytest.mark.parametrize("index", range(len(URL_LOCATIONS)), ids=[name for name, _ in URL_LOCATIONS])
def test_find_video_url_finds_each_location_alone(index: int) -> None:
    assert find_video_url(URL_LOCATIONS[index][1]) == f"https://cdn.example/{index}.mp4"


@pytest.mark.parametrize("first", range(len(URL_LOCATIONS)), ids=[name for name, _ in URL_LOCATIONS])
def test_find_video_url_takes_the_first_location_in_api_md_order(first: int) -> None:
    body = _merge([part for _, part in URL_LOCATIONS[first:]])

    assert find_video_url(body) == f"https://cdn.example/{first}.mp4"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"output": {"media_url": VIDEO}}, VIDEO),
        ({"output": {"media_url": [VIDEO, "https://cdn.example/second.mp4"]}}, VIDEO),
        ({"output": {"media_url": []}, "video": {"url": VIDEO}}, VIDEO),
        ({"output": None, "video": {"url": VIDEO}}, VIDEO),
        ({"output": {"media_url": ["s3://bucket/v.mp4"]}, "video": {"url": VIDEO}}, VIDEO),
        ({"video": {"url": "ftp://cdn.example/v.mp4"}, "video_url": VIDEO}, VIDEO),
        ({"video": {"url": "/relative/v.mp4"}, "url": VIDEO}, VIDEO),
        ({"video": "https://cdn.example/not-an-object.mp4", "output_url": VIDEO}, VIDEO),
        ({"output": {"media_url": [None]}, "url": VIDEO}, VIDEO),
        ({"url": "http://cdn.example/plain-http.mp4"}, "http://cdn.example/plain-http.mp4"),
    ],
)
def test_find_video_url_skips_empty_and_non_http_values(body: dict[str, Any], expected: str) -> None:
    assert find_video_url(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        [VIDEO],
        VIDEO,
        {},
        {"status": "IN_QUEUE", "queue_position": 3},
        {"output": {"media_url": []}},
        {"url": "file:///tmp/v.mp4"},
        {"video": {"url": ""}},
        {"video_url": 42},
    ],
)
def test_find_video_url_without_a_usable_url_is_none(body: Any) -> None:
    assert find_video_url(body) is None


# ==================================================================================================
# parse_status
# ==================================================================================================

LEGACY_DONE = {
    "video": {"url": VIDEO, "content_type": "video/mp4", "file_name": "output.mp4", "file_size": 6841082},
}
UNIVERSAL = {
    "request_id": "ltx-2-video-api-581_019d",
    "model_id": "ltx-2-video-api-581",
    "error": None,
    "output": None,
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-01T00:00:10Z",
    "completed_at": None,
}


def test_parse_status_legacy_done_body_without_status_is_succeeded() -> None:
    status = parse_status(reply(200, LEGACY_DONE))

    assert status == JobStatus(JobState.SUCCEEDED, raw_status=None, video_url=VIDEO)


def test_parse_status_universal_completed_with_media_url() -> None:
    body = {**UNIVERSAL, "status": "COMPLETED", "output": {"media_url": [VIDEO], "media_type": "video/mp4"}}

    status = parse_status(reply(200, body))

    assert status.state is JobState.SUCCEEDED
    assert status.raw_status == "COMPLETED"
    assert status.video_url == VIDEO


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ({"status": "IN_QUEUE", "queue_position": 3}, JobState.QUEUED),
        ({"status": "IN_PROGRESS", "logs": [{"message": "step 3"}]}, JobState.RUNNING),
        ({**UNIVERSAL, "status": "QUEUED"}, JobState.QUEUED),
        ({**UNIVERSAL, "status": "PROCESSING"}, JobState.RUNNING),
        ({"status": "COMPLETED", "request_id": "r1", "video": {"url": VIDEO}}, JobState.SUCCEEDED),
        ({"status": "BRAND_NEW_WORD"}, JobState.UNKNOWN),
        ({}, JobState.UNKNOWN),
    ],
)
def test_parse_status_reads_the_state(body: dict[str, Any], state: JobState) -> None:
    assert parse_status(reply(200, body)).state is state


@pytest.mark.parametrize(
    "body",
    [
        {**UNIVERSAL, "status": "COMPLETED"},
        {**UNIVERSAL, "status": "COMPLETED", "output": {"media_url": [], "media_type": "video/mp4"}},
        {"status": "done", "video": {"url": "s3://bucket/v.mp4"}},
    ],
)
def test_parse_status_succeeded_without_a_url_is_a_generation_failure(body: dict[str, Any]) -> None:
    with pytest.raises(Ltx2GenerationFailed, match="no video URL"):
        parse_status(reply(200, body))


@pytest.mark.parametrize("raw", ["FAILED", "ERROR", "cancelled"])
def test_parse_status_failed_carries_the_gateway_error(raw: str) -> None:
    body = {**UNIVERSAL, "status": raw, "error": "Content policy violation"}

    status = parse_status(reply(200, body))

    assert status.state is JobState.FAILED
    assert status.raw_status == raw
    assert "Content policy violation" in (status.error or "")
    assert status.input_rejected is False


def test_parse_status_error_payload_without_status_is_failed() -> None:
    status = parse_status(reply(200, {"error": "Upstream model crashed"}))

    assert status.state is JobState.FAILED
    assert status.error == "Upstream model crashed"
    assert status.input_rejected is False


def test_parse_status_fal_detail_without_status_is_an_input_rejection() -> None:
    body = {"detail": "Image could not be decoded", "error_type": "image_load_error"}

    status = parse_status(reply(200, body))

    assert status.state is JobState.FAILED
    assert status.input_rejected is True
    assert "Image could not be decoded" in (status.error or "")
    assert "image_load_error" in (status.error or "")


def test_parse_status_422_is_an_input_rejection() -> None:
    detail = [{"loc": ["body", "image_url"], "msg": "Image too small", "type": "value_error"}]

    status = parse_status(reply(422, {"detail": detail}))

    assert status.state is JobState.FAILED
    assert status.input_rejected is True
    assert "Image too small" in (status.error or "")


@pytest.mark.parametrize("text", ["", "Accepted", "<html>queued</html>"])
def test_parse_status_202_without_json_is_queued(text: str) -> None:
    assert parse_status(reply(202, text=text)).state is JobState.QUEUED


def test_parse_status_404_is_a_terminal_generation_failure() -> None:
    with pytest.raises(Ltx2GenerationFailed, match="unknown to the gateway or has expired") as caught:
        parse_status(reply(404, {"error": "Request not found"}))

    assert "Request not found" in str(caught.value)
    assert not isinstance(caught.value, Ltx2TransientError)


@pytest.mark.parametrize("status_code", [401, 403])
def test_parse_status_401_403_is_an_auth_error_with_the_apim_message(status_code: int) -> None:
    with pytest.raises(Ltx2AuthError) as caught:
        parse_status(reply(status_code, {**APIM_401, "statusCode": status_code}))

    assert "Access denied due to invalid subscription key" in str(caught.value)
    assert f"HTTP {status_code}" in str(caught.value)
    assert isinstance(caught.value, AirflowFailException)


def test_parse_status_402_is_an_auth_error_about_the_balance() -> None:
    body = {"error": "Insufficient Balance", "message": "Your balance is $0.00"}

    with pytest.raises(Ltx2AuthError, match="balance") as caught:
        parse_status(reply(402, body))

    assert "Insufficient Balance: Your balance is $0.00" in str(caught.value)


@pytest.mark.parametrize("status_code", [429, 500, 502, 503, 504])
def test_parse_status_429_and_5xx_are_transient(status_code: int) -> None:
    with pytest.raises(Ltx2TransientError, match=f"HTTP {status_code}"):
        parse_status(reply(status_code, {"error": "try later"}))


@pytest.mark.parametrize("text", ["<html><body>502 Bad Gateway</body></html>", "", '{"status": "COMP'])
def test_parse_status_200_that_is_not_json_is_transient(text: str) -> None:
    with pytest.raises(Ltx2TransientError, match="not JSON"):
        parse_status(reply(200, text=text))


# ==================================================================================================
# parse_submission and the job
# ==================================================================================================


def test_parse_submission_legacy_in_queue_is_a_job_without_polling_url() -> None:
    body = {"status": "IN_QUEUE", "request_id": "ltx2-v-7a3b", "message": "Video generation request queued."}

    job = parse_submission(reply(200, body), BASE)

    assert job == Job("ltx2-v-7a3b", None)


@pytest.mark.parametrize("base", [BASE, BASE + "/"])
def test_parse_submission_universal_keeps_a_polling_url_on_the_gateway(base: str) -> None:
    polling_url = f"{BASE}/v2/requests/status/ltx-2-video-api-581_019d"
    body = {"request_id": "ltx-2-video-api-581_019d", "status": "QUEUED", "polling_url": polling_url}

    job = parse_submission(reply(202, body), base)

    assert job == Job("ltx-2-video-api-581_019d", polling_url)


@pytest.mark.parametrize(
    "polling_url",
    [
        "https://evil.example/v2/requests/status/abc",
        "http://gateway.pixazo.ai/v2/requests/status/abc",
        "https://gateway.pixazo.ai:8443/v2/requests/status/abc",
        "https://gateway.pixazo.ai.evil.example/v2/requests/status/abc",
        "https://gateway.pixazo.ai@evil.example/v2/requests/status/abc",
        "//evil.example/v2/requests/status/abc",
        "/v2/requests/status/abc",
    ],
)
def test_parse_submission_never_keeps_a_polling_url_off_the_gateway(polling_url: str) -> None:
    body = {"request_id": "abc", "status": "QUEUED", "polling_url": polling_url}

    job = parse_submission(reply(202, body), BASE)

    assert job == Job("abc", f"{BASE}/v2/requests/status/abc")


OFF_GATEWAY = [
    "https://evil.example/v2/requests/status/abc",
    "http://gateway.pixazo.ai/v2/requests/status/abc",
    "https://gateway.pixazo.ai:8443/v2/requests/status/abc",
    "https://gateway.pixazo.ai.evil.example/v2/requests/status/abc",
    "https://gateway.pixazo.ai@evil.example/v2/requests/status/abc",
    "https://evil.example\\@gateway.pixazo.ai/v2/requests/status/abc",
    "https://gateway.pixazo.ai/v2/requests/status/abc\r\nHost: evil.example",
    "//evil.example/v2/requests/status/abc",
    "/v2/requests/status/abc",
]


@pytest.mark.parametrize("polling_url", OFF_GATEWAY)
def test_a_polling_url_handed_from_anywhere_is_polled_on_the_gateway(polling_url: str) -> None:
    """A sensor's argument, a dict through XCom, a trigger's kwargs: not only a submit reply is checked."""
    call = poll_call(BASE, Job("abc", polling_url))

    assert call.url == f"{BASE}/v2/requests/status/abc"
    assert urlsplit(requests.Request("GET", call.url).prepare().url).hostname == "gateway.pixazo.ai"


@pytest.mark.parametrize("polling_url", [123, ["https://evil.example/x"], {"url": "https://evil.example/x"}])
def test_a_polling_url_that_is_not_text_is_polled_on_the_gateway(polling_url: object) -> None:
    """A dict handed to the sensor through XCom may carry anything; it was an AttributeError."""
    job = Job.from_dict({"request_id": "abc", "polling_url": polling_url})

    assert poll_call(BASE, job).url == f"{BASE}/v2/requests/status/abc"


def test_a_polling_url_on_the_gateway_is_polled_as_given() -> None:
    assert poll_call(BASE, Job("abc", f"{BASE}/v2/requests/status/abc?x=1")).url == f"{BASE}/v2/requests/status/abc?x=1"
    below = "https://gw.example/api"
    assert poll_call(below, Job("abc", "https://gw.example/apix/status/abc")).url == f"{below}/v2/requests/status/abc"


def test_parse_submission_quotes_the_request_id_in_a_rebuilt_polling_url() -> None:
    body = {"request_id": "a/b c?d", "polling_url": "https://evil.example/x"}

    job = parse_submission(reply(202, body), BASE)

    assert job.polling_url == f"{BASE}/v2/requests/status/a%2Fb%20c%3Fd"


def test_parse_submission_polling_url_with_a_backslash_cannot_send_the_key_elsewhere() -> None:
    body = {"request_id": "abc", "polling_url": "https://evil.example\\@gateway.pixazo.ai/v2/requests/status/abc"}

    job = parse_submission(reply(202, body), BASE)

    sent_to = requests.Request("GET", poll_call(BASE, job).url).prepare().url
    assert urlsplit(sent_to).hostname == "gateway.pixazo.ai"


@pytest.mark.parametrize(
    "the_reply",
    [
        reply(200, {"status": "IN_QUEUE", "message": "queued"}),
        reply(202, {"request_id": "", "status": "QUEUED"}),
        reply(202, {"request_id": 123, "status": "QUEUED"}),
        reply(200, ["ltx2-v-7a3b"]),
        reply(200, text="<html>OK</html>"),
        reply(201, text=""),
    ],
)
def test_parse_submission_without_a_request_id_is_unconfirmed(the_reply: Reply) -> None:
    with pytest.raises(Ltx2SubmitUnconfirmed, match="no readable request_id") as caught:
        parse_submission(the_reply, BASE)

    assert isinstance(caught.value, AirflowFailException), "the gateway may have charged: no Airflow retry"


def test_parse_submission_400_is_a_validation_error_with_the_gateway_text() -> None:
    with pytest.raises(Ltx2ValidationError, match="HTTP 400 to the submit: image_url must be a public URL"):
        parse_submission(reply(400, {"error": "image_url must be a public URL"}), BASE)


@pytest.mark.parametrize(
    ("status_code", "error_class"),
    [
        (401, Ltx2AuthError),
        (402, Ltx2AuthError),
        (429, Ltx2TransientError),
        (503, Ltx2TransientError),
        (500, Ltx2SubmitUnconfirmed),  # may have created (and charged for) a job: not for Airflow to retry
    ],
)
def test_parse_submission_error_replies_raise(status_code: int, error_class: type[Ltx2Error]) -> None:
    with pytest.raises(error_class):
        parse_submission(reply(status_code, {"error": "no"}), BASE)


@pytest.mark.parametrize("job", [Job("r1"), Job("r2", f"{BASE}/v2/requests/status/r2")])
def test_job_round_trips_through_json(job: Job) -> None:
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job


@pytest.mark.parametrize(("input_rejected", "error_class"), [(False, Ltx2GenerationFailed), (True, Ltx2InputRejected)])
def test_failure_error(input_rejected: bool, error_class: type[Ltx2Error]) -> None:
    status = JobStatus(JobState.FAILED, raw_status="FAILED", error="NSFW content", input_rejected=input_rejected)

    error = failure_error(Job("r9"), status)

    assert type(error) is error_class
    assert "r9" in str(error)
    assert "NSFW content" in str(error)
    assert isinstance(error, AirflowFailException) is input_rejected
