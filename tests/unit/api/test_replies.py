"""Unit tests of ``api.replies``: errors for replies, the gateway's message, Retry-After and throttling."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_ltx2.api.jobs import parse_submission
from airflow_provider_ltx2.api.replies import Reply, error_for_reply, gateway_message, is_throttled, retry_after_seconds
from airflow_provider_ltx2.api.retries import Attempts, RetryPolicy
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2Throttled,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from tests.conftest import APIM_401, BASE, reply

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


def test_ltx_style_error_bodies_read_as_the_gateways_words() -> None:
    answer = reply(429, {"error": {"type": "concurrency_limit_error", "message": "Too many concurrent jobs"}})

    assert gateway_message(answer) == "concurrency_limit_error: Too many concurrent jobs"


def test_errors_are_airflow_exceptions() -> None:
    for error_class in (Ltx2AuthError, Ltx2GenerationFailed, Ltx2InputRejected, Ltx2TransientError):
        assert issubclass(error_class, Ltx2Error)
    assert issubclass(Ltx2Error, AirflowException)
    assert issubclass(Ltx2InputRejected, Ltx2GenerationFailed)
    assert not issubclass(Ltx2TransientError, AirflowFailException)
    assert not issubclass(Ltx2GenerationFailed, AirflowFailException)


# ==================================================================================================
# Retry-After
# ==================================================================================================


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


# ==================================================================================================
# Throttling
# ==================================================================================================


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
