"""Unit tests of ``airflow_provider_ltx2.api``: the request contract, reply reading and the retry policy.

Everything here is pure: no network, no Airflow metadata DB, no sleeping. Time and jitter are pinned
with ``monkeypatch`` where a decision depends on them.
"""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_ltx2.api import (
    ASPECT_RATIOS,
    FPS_VALUES,
    KEY_HEADER,
    RESOLUTIONS,
    Attempts,
    Gateway,
    Job,
    JobState,
    JobStatus,
    Reply,
    RetryPolicy,
    TransportFailure,
    auth_headers,
    build_request,
    error_for_reply,
    failure_error,
    find_video_url,
    gateway_from_connection,
    gateway_message,
    image_kind,
    is_mp4,
    is_throttled,
    normalise_state,
    parse_status,
    parse_submission,
    poll_call,
    retry_after_seconds,
    submit_call,
)
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2SubmitUnconfirmed,
    Ltx2Throttled,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.get_provider_info import DEFAULT_BASE_URL

BASE = "https://gateway.pixazo.ai"
IMAGE = "https://example.com/cat.jpg"
PROMPT = "the cat turns its head"
VIDEO = "https://pub-1234.r2.dev/out/output.mp4"
SECRET = "sk-5f0c1e9a7b-secret"


def reply(status: int, body: Any = None, *, text: str | None = None, retry_after: str | None = None) -> Reply:
    """A ``Reply`` with ``body`` as JSON, or with the raw ``text`` given."""
    return Reply(status, text if text is not None else json.dumps(body), retry_after)


# ==================================================================================================
# build_request
# ==================================================================================================

ACCEPTED_VALUES = [
    *[("duration", seconds) for seconds in range(2, 11)],
    *[("resolution", value) for value in ("720p", "1080p", "2160p")],
    *[("aspect_ratio", value) for value in ("16:9", "9:16", "1:1")],
    *[("fps", value) for value in (24, 25, 30)],
    ("generate_audio", True),
    ("generate_audio", False),
]


def test_the_accepted_value_tables_match_api_md() -> None:
    assert RESOLUTIONS == ("720p", "1080p", "2160p")
    assert ASPECT_RATIOS == ("16:9", "9:16", "1:1")
    assert FPS_VALUES == (24, 25, 30)


@pytest.mark.parametrize(("field", "value"), ACCEPTED_VALUES)
def test_build_request_accepts_every_value_of_the_contract(field: str, value: Any) -> None:
    body = build_request(IMAGE, PROMPT, **{field: value})

    assert body == {"image_url": IMAGE, "prompt": PROMPT, field: value}
    assert type(body[field]) is type(value)


def test_build_request_with_only_the_required_fields_sends_no_optional_field() -> None:
    assert build_request(IMAGE, PROMPT) == {"image_url": IMAGE, "prompt": PROMPT}


def test_build_request_omits_optional_fields_left_as_none() -> None:
    body = build_request(IMAGE, PROMPT, duration=None, resolution="1080p", aspect_ratio=None, fps=None)

    assert body == {"image_url": IMAGE, "prompt": PROMPT, "resolution": "1080p"}


def test_build_request_with_every_field() -> None:
    body = build_request(
        image_url=IMAGE,
        prompt=PROMPT,
        duration=8,
        resolution="2160p",
        aspect_ratio="9:16",
        fps=25,
        generate_audio=True,
    )

    assert body == {
        "image_url": IMAGE,
        "prompt": PROMPT,
        "duration": 8,
        "resolution": "2160p",
        "aspect_ratio": "9:16",
        "fps": 25,
        "generate_audio": True,
    }


@pytest.mark.parametrize(
    ("field", "rendered", "expected"),
    [
        ("duration", "6", 6),
        ("duration", " 10 ", 10),
        ("duration", "+2", 2),
        ("fps", "30", 30),
        ("fps", " 24\n", 24),
        ("resolution", " 1080p ", "1080p"),
        ("aspect_ratio", "16:9\n", "16:9"),
        ("generate_audio", "true", True),
        ("generate_audio", "True", True),
        ("generate_audio", " FALSE ", False),
        ("generate_audio", "false", False),
    ],
)
def test_build_request_converts_template_rendered_strings(field: str, rendered: str, expected: Any) -> None:
    body = build_request(IMAGE, PROMPT, **{field: rendered})

    assert body[field] == expected
    assert type(body[field]) is type(expected)


def test_build_request_strips_a_rendered_image_url() -> None:
    assert build_request(f"  {IMAGE}\n", PROMPT)["image_url"] == IMAGE


def test_build_request_passes_a_long_prompt_with_quotes_newlines_and_unicode_unchanged() -> None:
    line = 'She says "hello", it\'s {raining}; \\n is literal \u00e9\u00e8 \u4e2d\u6587 \U0001f3ac\t<b>&amp;</b>\n'
    prompt = (line * (10_000 // len(line) + 1))[:10_000] + "  "

    body = build_request(IMAGE, prompt)

    assert body["prompt"] == prompt
    assert json.loads(json.dumps(body))["prompt"] == prompt


BAD_VALUES = [
    # field, bad value, a fragment of the accepted values the message must show
    ("image_url", None, "http(s) URL"),
    ("image_url", 42, "http(s) URL"),
    ("image_url", b"https://example.com/cat.jpg", "http(s) URL"),
    ("image_url", "", "http(s) URL"),
    ("image_url", "   ", "http(s) URL"),
    ("image_url", "example.com/cat.jpg", "http(s) URL"),
    ("image_url", "ftp://example.com/cat.jpg", "http(s) URL"),
    ("image_url", "gopher://example.com/cat.jpg", "object-storage URI"),
    ("image_url", "s3://", "object-storage URI"),
    ("image_url", "https://", "http(s) URL"),
    ("image_url", "http:///cat.jpg", "http(s) URL"),
    ("prompt", None, "non-empty"),
    ("prompt", "", "non-empty"),
    ("prompt", "   \n\t ", "non-empty"),
    ("prompt", 42, "non-empty"),
    ("prompt", ["a cat"], "non-empty"),
    ("duration", 1, "from 2 to 10"),
    ("duration", 11, "from 2 to 10"),
    ("duration", 0, "from 2 to 10"),
    ("duration", -6, "from 2 to 10"),
    ("duration", True, "from 2 to 10"),
    ("duration", False, "from 2 to 10"),
    ("duration", 6.0, "from 2 to 10"),
    ("duration", 6.5, "from 2 to 10"),
    ("duration", "6.5", "from 2 to 10"),
    ("duration", "11", "from 2 to 10"),
    ("duration", "six", "from 2 to 10"),
    ("duration", "", "from 2 to 10"),
    ("duration", [6], "from 2 to 10"),
    ("resolution", "4K", "'720p', '1080p', '2160p'"),
    ("resolution", "1440p", "'720p', '1080p', '2160p'"),
    ("resolution", "1080", "'720p', '1080p', '2160p'"),
    ("resolution", 1080, "'720p', '1080p', '2160p'"),
    ("resolution", "", "'720p', '1080p', '2160p'"),
    ("aspect_ratio", "4:3", "'16:9', '9:16', '1:1'"),
    ("aspect_ratio", "16/9", "'16:9', '9:16', '1:1'"),
    ("aspect_ratio", 1.78, "'16:9', '9:16', '1:1'"),
    ("fps", 60, "24, 25, 30"),
    ("fps", 50, "24, 25, 30"),
    ("fps", 23, "24, 25, 30"),
    ("fps", True, "24, 25, 30"),
    ("fps", 30.0, "24, 25, 30"),
    ("fps", "60", "24, 25, 30"),
    ("fps", "thirty", "24, 25, 30"),
    ("generate_audio", "yes", "true or false"),
    ("generate_audio", "1", "true or false"),
    ("generate_audio", 1, "true or false"),
    ("generate_audio", 0, "true or false"),
    ("generate_audio", "", "true or false"),
]


def _build_with(field: str, value: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"image_url": IMAGE, "prompt": PROMPT, field: value}
    return build_request(**arguments)


@pytest.mark.parametrize(("field", "value", "accepted"), BAD_VALUES)
def test_build_request_rejects_a_bad_value_naming_field_value_and_accepted_values(
    field: str, value: Any, accepted: str
) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        _build_with(field, value)

    message = str(caught.value)
    assert f"{field}={value!r}" in message
    assert accepted in message


def test_a_validation_error_fails_the_task_without_retries_and_is_a_value_error() -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        build_request(IMAGE, PROMPT, fps=60)

    assert isinstance(caught.value, AirflowFailException)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, Ltx2Error)


def test_a_huge_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        build_request("ftp://" + "x" * 5_000, PROMPT)

    assert len(str(caught.value)) < 400
    assert "image_url='ftp://xxx" in str(caught.value)


@pytest.mark.parametrize("value", ["+-6", "--6", "-+6"])
def test_build_request_rejects_doubled_signs_with_a_validation_error(value: str) -> None:
    with pytest.raises(Ltx2ValidationError, match="duration="):
        build_request(IMAGE, PROMPT, duration=value)


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
APIM_401 = {
    "statusCode": 401,
    "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
    "subscription.",
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


def test_parse_status_after_exhausted_retries_raises_the_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 100.0, 101.0, 102.5])  # start, then one reading per retry decision
    monkeypatch.setattr(time, "time", lambda: next(clock))
    attempts = Attempts(RetryPolicy(poll_outage_seconds=2.0, base_delay=0.0), paid=False, action="status poll")
    outcomes = iter([reply(503, text="<html>busy</html>"), reply(502, text=""), reply(504, {"error": "timed out"})])

    outcome = next(outcomes)
    while attempts.next_delay(outcome) is not None:
        outcome = next(outcomes)

    assert attempts.attempt == 3, "the third failure came after the outage budget"
    with pytest.raises(Ltx2TransientError, match=r"HTTP 504.*timed out"):
        parse_status(attempts.result(outcome))


def test_throttled_polls_never_use_up_the_outage_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    attempts = Attempts(RetryPolicy(poll_outage_seconds=2.0), paid=False, action="status poll", deadline=1_000.0)
    throttled = reply(429, {"error": {"type": "rate_limit_error", "message": "slow down"}}, retry_after="5")

    delays = []
    while (delay := attempts.next_delay(throttled)) is not None:
        delays.append(delay)
        now[0] += delay

    assert sum(delays) > 800, "15 minutes of 429s are waited out, not cut at the 2 s outage budget"
    assert min(delays) >= 5.0, "never sooner than the gateway asked"
    assert max(delays) <= attempts.policy.max_delay, "backing off, up to the policy's longest wait"


def test_an_outage_after_throttling_gets_its_whole_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    attempts = Attempts(RetryPolicy(poll_outage_seconds=90.0, base_delay=1.0), paid=False, action="status poll")
    for _ in range(20):  # a minute and more of throttling first
        now[0] += attempts.next_delay(reply(429, text="", retry_after="3")) or 0.0

    assert attempts.next_delay(reply(503, text="")) is not None, "the outage clock starts at the first 503"


# ==================================================================================================
# Error replies
# ==================================================================================================


@pytest.mark.parametrize(
    ("status_code", "error_class"),
    [
        (400, Ltx2ValidationError),
        (401, Ltx2AuthError),
        (402, Ltx2AuthError),
        (403, Ltx2AuthError),
        (404, Ltx2GenerationFailed),
        (422, Ltx2ValidationError),
        (429, Ltx2Throttled),
        (500, Ltx2TransientError),
        (502, Ltx2TransientError),
        (503, Ltx2TransientError),
        (504, Ltx2TransientError),
        (418, Ltx2Error),
        (501, Ltx2Error),
    ],
)
def test_error_for_reply_maps_the_status_code(status_code: int, error_class: type[Ltx2Error]) -> None:
    error = error_for_reply(reply(status_code, {"error": "the gateway's words"}), "the submit")

    assert type(error) is error_class
    assert f"HTTP {status_code} to the submit" in str(error)
    assert "the gateway's words" in str(error)


@pytest.mark.parametrize(
    ("body_text", "expected"),
    [
        (json.dumps({"error": "Invalid image_url"}), "Invalid image_url"),
        (json.dumps({"error": "Insufficient Balance", "message": "Top up"}), "Insufficient Balance: Top up"),
        (json.dumps({"error": "same", "message": "same"}), "same"),
        (json.dumps(APIM_401), APIM_401["message"]),
        (json.dumps({"detail": [{"msg": "bad"}]}), '[{"msg": "bad"}]'),
        (json.dumps({"detail": "nope", "error_type": "image_load_error"}), "nope: image_load_error"),
        ("<html>\n  <h1>502   Bad Gateway</h1>\n</html>", "<html> <h1>502 Bad Gateway</h1> </html>"),
        (json.dumps({"statusCode": 500}), '{"statusCode": 500}'),
        ("", "(empty body)"),
        ("  \n ", "(empty body)"),
    ],
)
def test_gateway_message_reads_every_error_shape(body_text: str, expected: str) -> None:
    assert gateway_message(Reply(500, body_text)) == expected


def test_gateway_message_shortens_a_long_html_page() -> None:
    assert len(gateway_message(Reply(502, "<p>" + "x" * 5_000 + "</p>"))) == 300


# ==================================================================================================
# parse_submission, calls
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


@pytest.mark.parametrize("base", [BASE, BASE + "/"])
def test_submit_and_poll_calls(base: str) -> None:
    body = build_request(IMAGE, PROMPT)

    submit = submit_call(base, body)
    legacy = poll_call(base, Job("ltx2-v-1"))
    universal = poll_call(base, Job("u-1", f"{BASE}/v2/requests/status/u-1"))

    assert (submit.method, submit.url, submit.json_body) == (
        "POST",
        f"{BASE}/ltx-2-video-api-581/v1/ltx-2-video-api-request",
        body,
    )
    assert (legacy.method, legacy.url, legacy.json_body) == (
        "POST",
        f"{BASE}/ltx-2-video-api-581/v1/ltx-2-video-api-request-result",
        {"request_id": "ltx2-v-1"},
    )
    assert (universal.method, universal.url, universal.json_body) == ("GET", f"{BASE}/v2/requests/status/u-1", None)


def test_auth_headers() -> None:
    assert auth_headers(SECRET) == {  # the gateway's own header names
        "Ocp-Apim-Subscription-Key": SECRET,
        "Content-Type": "application/json",
        "Cache-Control": "no-cache",
    }


@pytest.mark.parametrize("job", [Job("r1"), Job("r2", f"{BASE}/v2/requests/status/r2")])
def test_job_round_trips_through_json(job: Job) -> None:
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", True),
        (b"\x00\x00\x00\x18ftyp", True),
        (b"\x00\x00\x00\x18ftp", False),
        (b"<html><body>", False),
        (b"\x00\x00\x00\x18moov", False),
        (b"", False),
    ],
)
def test_is_mp4(head: bytes, expected: bool) -> None:
    assert is_mp4(head) is expected


@pytest.mark.parametrize(("input_rejected", "error_class"), [(False, Ltx2GenerationFailed), (True, Ltx2InputRejected)])
def test_failure_error(input_rejected: bool, error_class: type[Ltx2Error]) -> None:
    status = JobStatus(JobState.FAILED, raw_status="FAILED", error="NSFW content", input_rejected=input_rejected)

    error = failure_error(Job("r9"), status)

    assert type(error) is error_class
    assert "r9" in str(error)
    assert "NSFW content" in str(error)
    assert isinstance(error, AirflowFailException) is input_rejected


# ==================================================================================================
# Retry policy
# ==================================================================================================

SENT = TransportFailure("ReadTimeout: read timed out", before_sending=False)
NOT_SENT = TransportFailure("ConnectionError: connection refused", before_sending=True)
HTML_200 = reply(200, text="<html>proxy hiccup</html>")

SHOULD_RETRY = [
    # outcome, paid (submit), unpaid (poll)
    pytest.param(reply(429, {"error": "slow"}), False, True, id="429"),  # a submit waits for room instead
    pytest.param(reply(503, text="", retry_after="3"), False, True, id="503-retry-after"),
    pytest.param(reply(500, {"error": "boom"}), False, True, id="500"),
    pytest.param(reply(502, text="<html>502</html>"), True, True, id="502"),
    pytest.param(reply(503, text=""), True, True, id="503"),
    pytest.param(reply(504, text=""), True, True, id="504"),
    pytest.param(reply(400, {"error": "bad"}), False, False, id="400"),
    pytest.param(reply(401, APIM_401), False, False, id="401"),
    pytest.param(reply(402, {"error": "balance"}), False, False, id="402"),
    pytest.param(reply(403, APIM_401), False, False, id="403"),
    pytest.param(reply(404, {"error": "gone"}), False, False, id="404"),
    pytest.param(reply(422, {"detail": []}), False, False, id="422"),
    pytest.param(reply(200, {"status": "QUEUED"}), False, False, id="200-json"),
    pytest.param(HTML_200, False, True, id="200-html"),
    pytest.param(reply(202, text=""), False, False, id="202-empty"),
    pytest.param(NOT_SENT, True, True, id="transport-before-sending"),
    pytest.param(SENT, False, True, id="transport-after-sending"),
]


@pytest.mark.parametrize(("outcome", "paid", "unpaid"), SHOULD_RETRY)
def test_should_retry(outcome: Reply | TransportFailure, paid: bool, unpaid: bool) -> None:
    policy = RetryPolicy()

    assert policy.should_retry(outcome, paid=True) is paid
    assert policy.should_retry(outcome, paid=False) is unpaid


@pytest.fixture
def jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Make ``random.uniform`` return its upper bound, and record the bounds it was asked for."""
    calls: list[tuple[float, float]] = []

    def upper(low: float, high: float) -> float:
        calls.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", upper)
    return calls


def test_delay_backoff_doubles_with_each_attempt_up_to_max_delay(jitter: list[tuple[float, float]]) -> None:
    policy = RetryPolicy(base_delay=1.5, max_delay=20.0)

    delays = [policy.delay(attempt, NOT_SENT) for attempt in range(1, 7)]

    assert delays == [1.5, 3.0, 6.0, 12.0, 20.0, 20.0]
    assert all(low == high / 2 for low, high in jitter), "never a retry at once: at least half the backoff"


def test_delay_is_jittered_between_half_and_all_of_the_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)

    for attempt in (1, 3, 5):
        samples = [policy.delay(attempt, reply(503, text="")) for _ in range(200)]
        assert all(2 ** (attempt - 2) <= sample <= 2 ** (attempt - 1) for sample in samples)
        assert len(set(samples)) > 1


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("30", 30.0),  # longer than the backoff: honoured
        ("1", 4.0),  # shorter than the backoff (attempt 3, upper bound 4): the backoff wins
        ("600", 600.0),  # a throttled answer is honoured in full (the wait's deadline bounds it)
        ("garbage", 4.0),  # unreadable: plain backoff
        (None, 4.0),
    ],
)
def test_delay_honours_retry_after_seconds(
    jitter: list[tuple[float, float]], retry_after: str | None, expected: float
) -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)

    assert policy.delay(3, reply(429, text="", retry_after=retry_after)) == expected


def test_retry_after_of_an_outage_is_capped_at_max_delay(jitter: list[tuple[float, float]]) -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)

    assert policy.delay(3, reply(502, text="", retry_after="600")) == 60.0


def test_delay_honours_retry_after_as_an_http_date(
    jitter: list[tuple[float, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(time, "time", now.timestamp)
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)

    in_25s = format_datetime(now.replace(second=25), usegmt=True)
    in_an_hour = format_datetime(now.replace(hour=13), usegmt=True)

    assert policy.delay(1, reply(503, text="", retry_after=in_25s)) == 25.0
    assert policy.delay(1, reply(503, text="", retry_after=in_an_hour)) == 3600.0  # throttled: honoured in full
    assert policy.delay(1, reply(504, text="", retry_after=in_an_hour)) == 60.0  # an outage: capped


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("2.5", 2.5),
        ("garbage", None),
        ("Thursday", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=0.0) == expected


def test_retry_after_seconds_of_an_http_date() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)

    in_10s = format_datetime(now.replace(second=10), usegmt=True)
    ago_10s = format_datetime(datetime(2025, 6, 1, 11, 59, 50, tzinfo=timezone.utc), usegmt=True)

    assert in_10s == "Sun, 01 Jun 2025 12:00:10 GMT"
    assert retry_after_seconds(in_10s, now=now.timestamp()) == 10.0
    assert retry_after_seconds(ago_10s, now=now.timestamp()) == 0.0


def _run(attempts: Attempts, outcome: Reply | TransportFailure) -> list[float | None]:
    """Drive ``attempts`` with the same outcome every time, as the hook's loop does; return the delays."""
    delays = [attempts.next_delay(outcome)]
    while delays[-1] is not None:
        assert len(delays) < 100, "the retry loop did not end"
        delays.append(attempts.next_delay(outcome))
    return delays


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_paid_attempts_stop_at_max_attempts(jitter: list[tuple[float, float]], max_attempts: int) -> None:
    attempts = Attempts(RetryPolicy(max_attempts=max_attempts), paid=True, action="submit")

    delays = _run(attempts, reply(503, text=""))

    assert len(delays) == max_attempts  # max_attempts sends, so max_attempts - 1 waits
    assert delays[-1] is None
    assert attempts.attempt == max_attempts


@pytest.mark.parametrize("outage", [0.0, 10.0, 300.0])
def test_polls_ride_out_an_outage_up_to_the_budget(monkeypatch: pytest.MonkeyPatch, outage: float) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    attempts = Attempts(RetryPolicy(poll_outage_seconds=outage), paid=False, action="status poll")

    waited = 0.0
    while (delay := attempts.next_delay(reply(503, text=""))) is not None:
        waited += delay
        now[0] += delay

    assert waited <= outage and attempts.attempt > (outage > 0) * 3, "several retries within the budget"


def test_attempts_stop_at_once_on_an_answer_not_worth_retrying(jitter: list[tuple[float, float]]) -> None:
    attempts = Attempts(RetryPolicy(), paid=True, action="submit")

    assert _run(attempts, reply(500, {"error": "boom"})) == [None]
    assert attempts.attempt == 1


def test_attempts_stop_early_when_the_next_delay_would_pass_the_deadline(
    jitter: list[tuple[float, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_000.0)
    policy = RetryPolicy(max_attempts=10, base_delay=1.0)
    attempts = Attempts(policy, paid=False, action="status poll", deadline=1_000.0 + 5.0)

    delays = _run(attempts, reply(503, text=""))

    assert delays == [1.0, 2.0, 4.0, None]  # the 4th wait (8 s) would end past the deadline


def test_attempts_never_wait_past_the_deadline_for_a_retry_after(
    jitter: list[tuple[float, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_000.0)
    attempts = Attempts(RetryPolicy(), paid=False, action="status poll", deadline=1_010.0)

    assert attempts.next_delay(reply(429, text="", retry_after="30")) is None


def test_attempts_result_returns_the_last_reply() -> None:
    attempts = Attempts(RetryPolicy(), paid=True, action="submit")
    last = reply(503, text="")

    assert attempts.result(last) is last


def test_a_paid_transport_failure_after_sending_is_reported_as_possibly_charged() -> None:
    attempts = Attempts(RetryPolicy(), paid=True, action="submit")

    assert attempts.next_delay(SENT) is None
    with pytest.raises(Ltx2SubmitUnconfirmed) as caught:
        attempts.result(SENT)

    assert isinstance(caught.value, AirflowFailException), "an Airflow retry would pay again"
    message = str(caught.value)
    assert "charged" in message
    assert "not resent" in message
    assert "ReadTimeout" in message


@pytest.mark.parametrize(
    ("paid", "failure"), [(False, SENT), (False, NOT_SENT), (True, NOT_SENT)], ids=["poll-sent", "poll", "submit"]
)
def test_other_transport_failures_are_transient(paid: bool, failure: TransportFailure) -> None:
    attempts = Attempts(RetryPolicy(), paid=paid, action="status poll")

    with pytest.raises(Ltx2TransientError, match="Could not reach the LTX-2 gateway"):
        attempts.result(failure)


def test_attempts_describe(jitter: list[tuple[float, float]]) -> None:
    attempts = Attempts(RetryPolicy(max_attempts=4), paid=True, action="submit")
    attempts.next_delay(reply(503, text=""))
    attempts.next_delay(NOT_SENT)

    assert attempts.describe(reply(503, text="")) == "submit: HTTP 503 (attempt 2 of 4)"
    assert attempts.describe(NOT_SENT) == "submit: ConnectionError: connection refused (attempt 2 of 4)"


# ==================================================================================================
# The connection
# ==================================================================================================


@pytest.mark.parametrize("password", [None, ""])
def test_gateway_from_connection_without_a_key_names_the_connection(password: str | None) -> None:
    with pytest.raises(Ltx2AuthError, match="'my_ltx2'") as caught:
        gateway_from_connection("my_ltx2", None, password)

    assert isinstance(caught.value, AirflowFailException)


@pytest.mark.parametrize("password", ["   ", "\n"])
def test_gateway_from_connection_with_a_blank_key_is_an_auth_error(password: str) -> None:
    with pytest.raises(Ltx2AuthError, match="'my_ltx2'"):
        gateway_from_connection("my_ltx2", None, password)


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        (None, DEFAULT_BASE_URL),
        ("", DEFAULT_BASE_URL),
        ("gateway.example.com", "https://gateway.example.com"),
        ("gateway.example.com/", "https://gateway.example.com"),
        ("localhost:8080", "https://localhost:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("  https://gw.example.com/prefix/ ", "https://gw.example.com/prefix"),
    ],
)
def test_gateway_from_connection_base_url(host: str | None, base_url: str) -> None:
    gateway = gateway_from_connection("ltx2_default", host, SECRET)

    assert gateway.base_url == base_url
    assert gateway.key == SECRET


def test_gateway_from_connection_strips_the_key() -> None:
    assert gateway_from_connection("ltx2_default", None, f"  {SECRET}\n").key == SECRET


@pytest.mark.parametrize("host", ["ftp://gateway.example.com", "file:///etc", "ws://gateway.example.com"])
def test_gateway_from_connection_rejects_a_non_http_host(host: str) -> None:
    with pytest.raises(Ltx2ValidationError, match="'my_ltx2'") as caught:
        gateway_from_connection("my_ltx2", host, SECRET)

    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("host", ["https:///v1", "https://"])
def test_gateway_from_connection_rejects_a_url_without_a_host(host: str) -> None:
    with pytest.raises(Ltx2ValidationError):
        gateway_from_connection("my_ltx2", host, SECRET)


def test_gateway_repr_and_str_do_not_show_the_key() -> None:
    gateway = gateway_from_connection("ltx2_default", None, SECRET)

    assert SECRET not in repr(gateway)
    assert SECRET not in str(gateway)
    assert DEFAULT_BASE_URL in repr(gateway)


def test_gateway_redact_replaces_every_occurrence_of_the_key() -> None:
    gateway = Gateway(BASE, SECRET)

    redacted = gateway.redact(f"header {KEY_HEADER}: {SECRET}; echoed {SECRET}!")

    assert redacted == f"header {KEY_HEADER}: ***; echoed ***!"
    assert gateway.redact("nothing secret") == "nothing secret"
    assert Gateway(BASE, "").redact("text") == "text"


def test_errors_are_airflow_exceptions() -> None:
    for error_class in (Ltx2AuthError, Ltx2GenerationFailed, Ltx2InputRejected, Ltx2TransientError):
        assert issubclass(error_class, Ltx2Error)
    assert issubclass(Ltx2Error, AirflowException)
    assert issubclass(Ltx2InputRejected, Ltx2GenerationFailed)
    assert not issubclass(Ltx2TransientError, AirflowFailException)
    assert not issubclass(Ltx2GenerationFailed, AirflowFailException)


@pytest.mark.parametrize(
    ("answer", "reason", "retry_after"),
    [
        (
            reply(429, {"error": {"type": "concurrency_limit_error", "message": "2 running"}}, retry_after="3"),
            "429 concurrency_limit_error",
            3.0,
        ),
        (reply(429, {"error": {"type": "rate_limit_error", "message": "10/min"}}), "429 rate_limit_error", None),
        (reply(429, {"statusCode": 429, "message": "Rate limit is exceeded."}, retry_after="7"), "429", 7.0),
        (reply(503, text="busy", retry_after="12"), "503", 12.0),
    ],
)
def test_a_throttled_submit_is_raised_for_the_task_to_wait_for_room(
    answer: Reply, reason: str, retry_after: float | None
) -> None:
    with pytest.raises(Ltx2Throttled) as raised:
        parse_submission(answer, BASE)

    assert (raised.value.reason, raised.value.retry_after) == (reason, retry_after)
    assert not Attempts(RetryPolicy(), paid=True, action="submit").next_delay(answer), "not resent in the hook's loop"


def test_a_503_without_retry_after_is_an_outage_not_throttling() -> None:
    assert not is_throttled(reply(503, text="down"))
    with pytest.raises(Ltx2TransientError) as raised:
        parse_submission(reply(503, text="down"), BASE)
    assert not isinstance(raised.value, Ltx2Throttled)


def test_ltx_style_error_bodies_read_as_the_gateways_words() -> None:
    answer = reply(429, {"error": {"type": "concurrency_limit_error", "message": "Too many concurrent jobs"}})

    assert gateway_message(answer) == "concurrency_limit_error: Too many concurrent jobs"


@pytest.mark.parametrize(
    "uri", ["s3://bucket/cat.jpg", "gs://bucket/a/b.png", "abfs://container/cat.jpg", "file:///x.png"]
)
def test_object_storage_image_uris_are_accepted_as_given(uri: str) -> None:
    """The task signs them for the gateway; the request keeps the URI (a signed URL is a credential)."""
    assert build_request(uri, PROMPT)["image_url"] == uri


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
        (b"GIF89a", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_image_kind_reads_the_signature(head: bytes, kind: str | None) -> None:
    assert image_kind(head) == kind
