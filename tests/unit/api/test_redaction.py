"""Unit tests of ``api.redaction``: the key and signed URLs hidden in whatever escaping carries them."""

from __future__ import annotations

import html
import json
from urllib.parse import quote

import pytest

from airflow_provider_ltx2.api.redaction import Redactor, hide_signed_urls
from airflow_provider_ltx2.api.replies import Reply

KEY = "sk-5f0c/é&<key>"
SIGNED = (
    "https://media.s3.amazonaws.com/private/cat.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20261207&X-Amz-Signature=0123abcd"
)
SIGNATURE = "0123abcd"


def go_escaped(text: str) -> str:
    """Go's encoding/json: ``&``, ``<`` and ``>`` as ``\\u0026``, ``\\u003c``, ``\\u003e``."""
    return json.dumps(text)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


ESCAPINGS = {
    "plain": lambda text: text,
    "json ascii": lambda text: json.dumps(text)[1:-1],
    "json utf-8": lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    "php": lambda text: json.dumps(text)[1:-1].replace("/", "\\/"),
    "go": go_escaped,
    "go + php": lambda text: go_escaped(text).replace("/", "\\/"),
    "upper-case hex": lambda text: json.dumps(text)[1:-1].replace("\\u00e9", "\\u00E9"),
    "html": html.escape,
    "percent": lambda text: quote(text, safe=""),
}


@pytest.mark.parametrize("escape", ESCAPINGS.values(), ids=ESCAPINGS.keys())
def test_a_known_secret_is_hidden_in_a_non_json_body_whatever_its_escaping(escape) -> None:
    redactor = Redactor((KEY, SIGNED))
    body = f"<html>bad request: key={escape(KEY)} image={escape(SIGNED)}</html>"

    hidden = redactor.text(body)

    assert SIGNATURE not in hidden and "5f0c" not in hidden, hidden
    assert "***" in hidden


JSON_ESCAPINGS = ("json ascii", "json utf-8", "php", "go", "go + php", "upper-case hex")


@pytest.mark.parametrize("escape", JSON_ESCAPINGS)
def test_a_json_reply_is_redacted_after_decoding(escape: str) -> None:
    """The body as a Go or PHP gateway writes it: the decoded strings hold the secrets as they are."""
    written = ESCAPINGS[escape]
    echo = json.dumps({"k": KEY})  # JSON inside a JSON string, escaped twice
    raw = f'{{"error": "bad image", "url": "{written(SIGNED)}", "key": "{written(KEY)}", "echo": "{written(echo)}"}}'

    text = Reply.received(400, raw, None, Redactor((KEY, SIGNED))).text

    assert SIGNATURE not in text and "5f0c" not in text, text
    assert json.loads(text)["error"] == "bad image"


def test_a_key_used_as_an_object_key_is_hidden() -> None:
    text = Reply.received(400, json.dumps({KEY: "echoed"}), None, Redactor((KEY,))).text

    assert "5f0c" not in text


@pytest.mark.parametrize(
    "url",
    [
        SIGNED,
        "https://storage.googleapis.com/b/o.png?X-Goog-Algorithm=GOOG4&X-Goog-Signature=0123abcd",
        "https://acct.blob.core.windows.net/c/o.png?sv=2024-01-01&se=2026-12-08&sp=r&sig=0123abcd",
        "https://d1.cloudfront.net/o.png?Expires=1&Signature=0123abcd&Key-Pair-Id=K2",
        "https://cdn.example.com/o.png?token=0123abcd",
    ],
    ids=["s3", "gcs", "azure", "cloudfront", "token"],
)
@pytest.mark.parametrize("escape", ["plain", "json ascii", "php", "go", "html"])
def test_an_unknown_signed_url_loses_its_query_in_any_message(url: str, escape: str) -> None:
    """A poll cannot know the signed URL its submit used: the signature parameters give it away."""
    message = f"model error: could not fetch {ESCAPINGS[escape](url)} (403)"

    hidden = hide_signed_urls(message)

    assert SIGNATURE not in hidden, hidden
    assert "?***" in hidden and hidden.endswith(" (403)")


@pytest.mark.parametrize(
    "text",
    [
        "https://pub-1.r2.dev/videos/out.mp4",
        "see https://example.com/page?response=1&page=2 for details",
        "no URL here, sig=1",
    ],
)
def test_a_url_without_a_signature_is_left_alone(text: str) -> None:
    assert hide_signed_urls(text) == text


def test_the_video_url_in_a_decoded_reply_is_kept_for_the_download() -> None:
    """An unknown signed URL is hidden in messages, not in the body's values: the task downloads from it."""
    video = "https://cdn.example.com/out.mp4?X-Amz-Signature=0123abcd"

    assert Redactor(("key",)).value({"video": {"url": video}}) == {"video": {"url": video}}


def test_a_body_nested_too_deep_for_python_is_redacted_as_text() -> None:
    raw = "[" * 100_000 + json.dumps(KEY) + "]" * 100_000

    assert "5f0c" not in Reply.received(400, raw, None, Redactor((KEY,))).text
