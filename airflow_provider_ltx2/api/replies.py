"""What an HTTP answer of the gateway means: its error, whether it was throttled, whether to try again.

``Reply`` and ``TransportFailure`` are the library-neutral view of an exchange that both the requests and
the aiohttp paths build, so the two can never disagree about what an answer means.
"""

from __future__ import annotations

import json
import time
from dataclasses import InitVar, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_ltx2.api.redaction import Redactor, hide_signed_urls
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2Throttled,
    Ltx2TransientError,
    Ltx2ValidationError,
)

_UNREAD: Any = object()  # ``Reply``'s body, not decoded yet


@dataclass(frozen=True)
class Reply:
    """An HTTP answer from the gateway, as both the requests and the aiohttp paths see it."""

    status: int
    text: str
    retry_after: str | None = None
    decoded: InitVar[Any] = _UNREAD  # the body, when the caller decoded it already (``received``)
    # Decoded once, on arrival: the retry decision, the status reading and the error message all look at it
    # (eagerly rather than through cached_property, whose lock costs a poll as much as the decoding).
    body: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self, decoded: Any) -> None:
        object.__setattr__(self, "body", decoded_json(self.text) if decoded is _UNREAD else decoded)

    @classmethod
    def received(cls, status: int, raw: str, retry_after: str | None, redactor: Redactor) -> Reply:
        """An answer as it arrives, with the key and the call's signed URL hidden after decoding (whatever the
        gateway's escaping): a JSON body's strings are redacted and it is written back in one plain form; any
        other body (an HTML error page) is searched for every escaped form."""
        body = decoded_json(raw)
        if body is None:
            return cls(status, redactor.text(raw), retry_after, None)
        body = redactor.value(body)
        return cls(status, json.dumps(body, ensure_ascii=False), retry_after, body)

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON (an HTML error page, a truncated body)."""
        return self.body

    def excerpt(self, size: int = 300) -> str:
        """The start of the body for a message, with any signed URL's signature hidden."""
        return repr(hide_signed_urls(self.text)[:size])


@dataclass(frozen=True)
class TransportFailure:
    """No HTTP answer at all. ``before_sending`` is True only when the request surely never left;
    ``untrusted`` when the gateway's TLS certificate was refused, which no retry can mend."""

    description: str
    before_sending: bool
    untrusted: bool = False


def decoded_json(text: str) -> Any:
    """``text`` decoded as JSON, or None when it is not JSON (or nested deeper than Python decodes)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def gateway_message(reply: Reply) -> str:
    """The gateway's own words about an error, whatever shape it used ({error}, {message}, {detail}); any signed
    URL it echoed is hidden (the key and the caller's own signed URL were hidden as the reply arrived)."""
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # Lightricks' {"error": {"type", "message"}}
        body = {**body, **body["error"], "error": body["error"].get("type")}
    if isinstance(body, dict):
        parts = []
        for field in ("error", "message", "detail", "error_type"):
            value = body.get(field)
            if value and str(value) not in parts:
                parts.append(value if isinstance(value, str) else json.dumps(value))
        if parts:
            return hide_signed_urls(": ".join(parts))
    text = " ".join(hide_signed_urls(reply.text).split())
    return text[:300] if text else "(empty body)"


def error_for_reply(reply: Reply, action: str) -> Ltx2Error:
    """Map an unsuccessful reply to the typed error a DAG author can act on."""
    message = f"LTX-2 gateway answered HTTP {reply.status} to {action}: {gateway_message(reply).rstrip('.')}"
    if reply.status in (401, 403):
        return Ltx2AuthError(f"{message}. Check the subscription key in the LTX-2 connection.")
    if reply.status == 402:
        return Ltx2AuthError(f"{message}. Top up the account balance.")
    if reply.status in (400, 422):
        return Ltx2ValidationError(message)
    if reply.status == 404:
        return Ltx2GenerationFailed(f"{message}. The request is unknown to the gateway or has expired.")
    if is_throttled(reply):
        return Ltx2Throttled(message, reason=throttle_reason(reply), retry_after=retry_after_seconds(reply.retry_after))
    if is_transient(reply):
        return Ltx2TransientError(message)
    return Ltx2Error(message)


# Answers that come from the gateway itself (throttling, a backend it could not reach), before any job.
NO_JOB_CREATED = (429, 502, 503, 504)
UNCONFIRMED = (
    "The gateway may have accepted (and charged for) it, so it is not resent automatically, nor retried "
    "by Airflow: check the account's requests before running the task again."
)


def is_transient(reply: Reply) -> bool:
    """Errors that usually go away: throttling, an overloaded or restarting gateway."""
    return reply.status == 429 or reply.status in (500, 502, 503, 504)


def is_throttled(reply: Reply) -> bool:
    """The gateway is full or asks to slow down (429, or 503 with ``Retry-After``): nothing was created.

    Unlike an outage, this is the gateway working as designed: a submit waits for capacity until the task's
    deadline, and a poll slows down, instead of either counting against a retry budget.
    """
    return reply.status == 429 or (reply.status == 503 and bool(reply.retry_after))


def throttle_reason(reply: Reply) -> str:
    """``429 concurrency_limit_error``: the status and, when the body names one, the limit that was hit."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return f"{reply.status} {kind}" if isinstance(kind, str) and kind else str(reply.status)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: it may be a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
