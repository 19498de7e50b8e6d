"""Unit tests of ``api.request``, ``api.calls`` and ``api.media``: the request body, its calls, file signatures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ltx2.api.calls import auth_headers, poll_call, submit_call
from airflow_provider_ltx2.api.jobs import Job
from airflow_provider_ltx2.api.media import image_kind, is_mp4
from airflow_provider_ltx2.api.request import build_request, shorten
from airflow_provider_ltx2.contract import ASPECT_RATIOS, FPS_VALUES, RESOLUTIONS
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2ValidationError
from tests.conftest import BASE, SECRET

IMAGE = "https://example.com/cat.jpg"
PROMPT = "the cat turns its head"


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


def test_shorten_shows_the_start_and_length_of_a_long_text_and_bounds_a_wide_or_deep_value() -> None:
    assert shorten("spin") == "'spin'"
    assert shorten(["a cat", 6]) == "['a cat', 6]"
    assert shorten("x" * 10_000_000) == repr("x" * 80) + "... (10,000,000 characters)"
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert len(shorten(deep)) <= 83
    assert len(shorten(list(range(1_000_000)))) <= 83


@pytest.mark.parametrize("value", ["+-6", "--6", "-+6"])
def test_build_request_rejects_doubled_signs_with_a_validation_error(value: str) -> None:
    with pytest.raises(Ltx2ValidationError, match="duration="):
        build_request(IMAGE, PROMPT, duration=value)


@pytest.mark.parametrize(
    "uri", ["s3://bucket/cat.jpg", "gs://bucket/a/b.png", "abfs://container/cat.jpg", "file:///x.png"]
)
def test_object_storage_image_uris_are_accepted_as_given(uri: str) -> None:
    """The task signs them for the gateway; the request keeps the URI (a signed URL is a credential)."""
    assert build_request(uri, PROMPT)["image_url"] == uri


# ==================================================================================================
# submit_call, poll_call, auth_headers
# ==================================================================================================


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


# ==================================================================================================
# File signatures
# ==================================================================================================


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
