"""Everything this provider knows about the gateway's HTTP API, as pure functions.

The request checks, status normalisation, video URL extraction, error mapping and the retry policy live
here once (the contract's plain constants, paths and tables, in ``contract``); the sync path (operator,
sensor) and the async path (trigger) both use them, so the two can never disagree about what a reply
means.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_ltx2.contract import (
    ASPECT_RATIOS,
    DURATION_RANGE,
    FPS_VALUES,
    KEY_HEADER,
    PRICE_PER_VIDEO_USD,
    REQUEST_FIELDS,
    RESOLUTIONS,
    RESULT_PATH,
    STATUS_PATH,
    SUBMIT_PATH,
)
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2SubmitUnconfirmed,
    Ltx2Throttled,
    Ltx2TlsError,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.get_provider_info import DEFAULT_BASE_URL

# --------------------------------------------------------------------------------------------------
# The request: validated before anything is sent, because every accepted submit costs money.
# --------------------------------------------------------------------------------------------------


def build_request(
    image_url: Any,
    prompt: Any,
    duration: Any = None,
    resolution: Any = None,
    aspect_ratio: Any = None,
    fps: Any = None,
    generate_audio: Any = None,
) -> dict[str, Any]:
    """Return the JSON body to submit, or raise ``Ltx2ValidationError`` naming the first bad field.

    Optional fields left as ``None`` are not sent, so the service's own default applies. Values that
    come out of Jinja templates as strings ("6", "true") are converted to the type the API expects.
    """
    body: dict[str, Any] = {
        "image_url": _check_image_url(image_url),
        "prompt": _check_prompt(prompt),
    }
    optional = {
        "duration": (duration, _check_duration),
        "resolution": (resolution, _choice_check("resolution", RESOLUTIONS)),
        "aspect_ratio": (aspect_ratio, _choice_check("aspect_ratio", ASPECT_RATIOS)),
        "fps": (fps, _check_fps),
        "generate_audio": (generate_audio, _check_generate_audio),
    }
    for name, (value, check) in optional.items():
        if value is not None:
            body[name] = check(value)
    return body


def _invalid(field: str, value: Any, accepted: str) -> Ltx2ValidationError:
    shown = repr(value)
    if len(shown) > 200:
        shown = shown[:200] + "...'"
    return Ltx2ValidationError(f"Invalid LTX-2 request field {field}={shown}: accepted values are {accepted}.")


# Object stores whose URIs ``image_url`` may name (the task signs a URL for the gateway; see storage.py).
IMAGE_STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "file")


def _check_image_url(value: Any) -> str:
    accepted = "a public http(s) URL of a JPEG or PNG image, or an object-storage URI (s3://, gs://, abfs://...)"
    url = value.strip() if isinstance(value, str) else ""
    if not url or any(char.isspace() or not char.isprintable() for char in url):
        raise _invalid("image_url", value, accepted)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise _invalid("image_url", value, accepted) from None
    if parts.scheme in IMAGE_STORE_SCHEMES and (parts.netloc or parts.path.strip("/")):
        return url
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("image_url", value, accepted)
    return url


def _check_prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid("prompt", value, "a non-empty text describing motion, camera and scene")
    return value


def _as_int(value: Any) -> int | None:
    """Return ``value`` as an int if it is one (or a string of one, as templates render); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value.strip())
    return None


def _check_duration(value: Any) -> int:
    seconds = _as_int(value)
    low, high = DURATION_RANGE
    if seconds is None or not low <= seconds <= high:
        raise _invalid("duration", value, f"a whole number of seconds from {low} to {high}")
    return seconds


def _check_fps(value: Any) -> int:
    fps = _as_int(value)
    if fps not in FPS_VALUES:
        raise _invalid("fps", value, ", ".join(map(str, FPS_VALUES)))
    return fps


def _choice_check(field: str, choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip() not in choices:
            raise _invalid(field, value, ", ".join(repr(choice) for choice in choices))
        return value.strip()

    return check


def _check_generate_audio(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid("generate_audio", value, "true or false")


# --------------------------------------------------------------------------------------------------
# Replies: the small, library-neutral view of an HTTP answer both paths build.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer from the gateway, as both the requests and the aiohttp paths see it."""

    status: int
    text: str
    retry_after: str | None = None

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON (an HTML error page, a truncated body)."""
        return self._decoded

    @cached_property
    def _decoded(self) -> Any:
        # Decoded once: the retry decision, the status reading and the error message all look at it.
        try:
            return json.loads(self.text)
        except ValueError:
            return None


@dataclass(frozen=True)
class TransportFailure:
    """No HTTP answer at all. ``before_sending`` is True only when the request surely never left;
    ``untrusted`` when the gateway's TLS certificate was refused, which no retry can mend."""

    description: str
    before_sending: bool
    untrusted: bool = False


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


def gateway_message(reply: Reply) -> str:
    """The gateway's own words about an error, whatever shape it used ({error}, {message}, {detail})."""
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
            return ": ".join(parts)
    text = " ".join(reply.text.split())
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


# --------------------------------------------------------------------------------------------------
# Submit and poll.
# --------------------------------------------------------------------------------------------------


def auth_headers(key: str) -> dict[str, str]:
    return {KEY_HEADER: key, "Content-Type": "application/json", "Cache-Control": "no-cache"}


def on_gateway(url: str, base_url: str) -> bool:
    """Whether ``url`` is plainly under ``base_url``; anything clever (user info, backslashes) is not."""
    return url.startswith(base_url.rstrip("/") + "/") and not any(char in url for char in "@\\\r\n\t ")


def parse_submission(reply: Reply, base_url: str) -> Job:
    """Turn the submit reply into a ``Job``; either protocol of the gateway is accepted.

    A ``polling_url`` that is not under the configured gateway's base URL is ignored (the key is sent with
    every poll and must not travel anywhere else); the status path is rebuilt on the gateway instead.
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
            f"{reply.text[:300]!r}. {UNCONFIRMED}"
        )
    polling_url = body.get("polling_url")
    if isinstance(polling_url, str) and polling_url:
        if not on_gateway(polling_url, base_url):
            polling_url = base_url.rstrip("/") + STATUS_PATH.format(request_id=quote(request_id, safe=""))
        return Job(request_id, polling_url)
    return Job(request_id)


@dataclass(frozen=True)
class Call:
    """One HTTP call to the gateway, before either client library sends it."""

    method: str
    url: str
    json_body: dict[str, Any] | None


def submit_call(base_url: str, body: dict[str, Any]) -> Call:
    return Call("POST", base_url.rstrip("/") + SUBMIT_PATH, body)


def poll_call(base_url: str, job: Job) -> Call:
    """The universal status GET when the submit reply gave a polling URL, else the legacy result POST."""
    if job.polling_url:
        return Call("GET", job.polling_url, None)
    return Call("POST", base_url.rstrip("/") + RESULT_PATH, {"request_id": job.request_id})


def image_kind(head: bytes) -> str | None:
    """``"jpeg"`` or ``"png"`` by the file's first bytes (its signature); None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def is_mp4(head: bytes) -> bool:
    """An MP4 (ISO base media file) starts with a box whose type, at offset 4, is ``ftyp``."""
    return len(head) >= 8 and head[4:8] == b"ftyp"


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


def find_video_url(body: Any) -> str | None:
    """The video URL in a result body, checking the places docs/gateway-contract.md lists in order; first wins."""
    if not isinstance(body, dict):
        return None
    candidates = [
        ("output", "media_url"),
        ("video", "url"),
        ("result", "video", "url"),
        ("payload", "video", "url"),
        ("result", "video_url"),
        ("video_url",),
        ("output_url",),
        ("url",),
    ]
    for path in candidates:
        value: Any = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
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
        raise Ltx2TransientError(f"LTX-2 gateway sent a status reply that is not JSON: {reply.text[:200]!r}")
    raw = body.get("status")
    video_url = find_video_url(body)
    state = normalise_state(raw)
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
            f"LTX-2 gateway reported the generation as {raw or 'done'} but sent no video URL: {reply.text[:300]!r}"
        )
    return JobStatus(state, raw_status=raw, video_url=video_url)


def failure_error(job: Job, status: JobStatus) -> Ltx2GenerationFailed:
    """The exception for a generation the gateway reported as failed."""
    error_class = Ltx2InputRejected if status.input_rejected else Ltx2GenerationFailed
    return error_class(
        f"LTX-2 generation {job.request_id} failed ({status.raw_status or 'no status'}): "
        f"{status.error or 'no reason given'}"
    )


# --------------------------------------------------------------------------------------------------
# Retries: one policy for both paths.
# --------------------------------------------------------------------------------------------------


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

    Unlike an outage, this is the gateway working as designed: a submit waits for room until the task's
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


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

    ``paid`` calls (the submit) are retried at most ``max_attempts`` times, and only when the gateway
    surely created no job: a 502/503/504 from the gateway, or a connection that never opened. A read
    timeout or a 500 after the body was sent may already have started a paid generation, so it is
    reported, not repeated. A throttled submit (``is_throttled``) is not retried here: it raises
    ``Ltx2Throttled`` and the task waits for room until its own deadline (``waiting.RoomWait``).
    Status polls cost nothing: they ride out a gateway outage of up to ``poll_outage_seconds`` (never
    past the wait's deadline), so a restart does not fail a long wait; throttled polls wait as long as
    the gateway asks and never count against that budget.

    The fields are plain numbers so the policy travels in a trigger's kwargs (``to_dict``/``from_dict``).
    """

    max_attempts: int = 5
    poll_outage_seconds: float = 300.0
    base_delay: float = 1.0
    max_delay: float = 60.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        return cls(**data) if data else cls()

    def should_retry(self, outcome: Reply | TransportFailure, paid: bool) -> bool:
        if isinstance(outcome, TransportFailure):
            return not outcome.untrusted and (outcome.before_sending or not paid)
        if paid:
            return outcome.status in NO_JOB_CREATED and not is_throttled(outcome)
        # A poll answered with an HTML page or a torn body is a proxy hiccup, not an answer
        # (a bare 202 is an answer: "still queued").
        return is_transient(outcome) or (outcome.status in (200, 201) and outcome.json() is None)

    def delay(self, attempt: int, outcome: Reply | TransportFailure) -> float:
        """Seconds to wait before attempt ``attempt + 1``: half the backoff, plus up to half again at random.

        A throttled answer's ``Retry-After`` is honoured in full: the gateway said when there is room.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        backoff = random.uniform(ceiling / 2, ceiling)
        if isinstance(outcome, Reply):
            asked = retry_after_seconds(outcome.retry_after)
            if asked is not None:
                return max(asked, backoff) if is_throttled(outcome) else min(self.max_delay, max(asked, backoff))
        return backoff


class Attempts:
    """Drives one call's retry loop, so the sync and async paths share every decision.

    Usage: ``outcome = send(); delay = attempts.next_delay(outcome)``; when it returns None the loop
    ends and ``attempts.result(outcome)`` gives the reply (or raises for a transport failure).
    """

    def __init__(self, policy: RetryPolicy, *, paid: bool, action: str, deadline: float | None = None):
        self.policy = policy
        self.paid = paid
        self.action = action
        self.deadline = deadline
        self.attempt = 0
        self.started = time.time()
        self.outage_started: float | None = None  # first failure that was not throttling

    def next_delay(self, outcome: Reply | TransportFailure) -> float | None:
        self.attempt += 1
        if not self.policy.should_retry(outcome, self.paid):
            return None
        if self.paid and self.attempt >= self.policy.max_attempts:
            return None
        delay = self.policy.delay(self.attempt, outcome)
        now = time.time()
        retry_at = now + delay
        if not (isinstance(outcome, Reply) and is_throttled(outcome)):  # throttling is not an outage
            if self.outage_started is None:
                self.outage_started = self.started if self.attempt == 1 else now
            if not self.paid and retry_at - self.outage_started > self.policy.poll_outage_seconds:
                return None
        if self.deadline is not None and retry_at >= self.deadline:
            return None
        return delay

    def describe(self, outcome: Reply | TransportFailure) -> str:
        what = f"HTTP {outcome.status}" if isinstance(outcome, Reply) else outcome.description
        budget = f"of {self.policy.max_attempts}" if self.paid else f"for {time.time() - self.started:.0f}s"
        return f"{self.action}: {what} (attempt {self.attempt} {budget})"

    def result(self, outcome: Reply | TransportFailure) -> Reply:
        if isinstance(outcome, Reply):
            return outcome
        if outcome.untrusted:
            raise Ltx2TlsError(outcome.description)
        if self.paid and not outcome.before_sending:
            raise Ltx2SubmitUnconfirmed(
                f"LTX-2 gateway connection broke after the {self.action} was sent ({outcome.description}). "
                f"{UNCONFIRMED}"
            )
        raise Ltx2TransientError(f"Could not reach the LTX-2 gateway for the {self.action}: {outcome.description}")


# --------------------------------------------------------------------------------------------------
# Where to send calls, and with which key.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """How calls travel: TLS verification, a client certificate and proxies, the same on both paths.

    The connection extras ``verify`` (true, false or a CA bundle path), ``cert`` (a PEM path, or
    ``[cert, key]``) and ``proxies`` (``{"http": url, "https": url}``) mean what they mean for
    providers-http's ``HttpHook``; left unset, the standard variables apply (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``), for requests in the
    worker as for aiohttp in the triggerer, which honours none of them unless told.
    """

    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    proxies: tuple[tuple[str, str], ...] = ()

    def ca_file(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The CA bundle to trust: the ``verify`` path, else the environment's, else None (the default store)."""
        if isinstance(self.verify, str):
            return self.verify
        if self.verify is False:  # no bundle from the environment turns the check back on
            return None
        env = os.environ if environ is None else environ
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            if env.get(name):
                return env[name]
        return None

    def proxy_for(self, url: str) -> str | None:
        """The proxy for ``url``: the extras' for its scheme, else the environment's unless ``NO_PROXY``
        exempts the host (as requests decides); None: a direct connection."""
        import urllib.request  # here, not at DAG-parse time: it costs milliseconds to import

        parts = urlsplit(url)
        explicit = dict(self.proxies).get(parts.scheme)
        if explicit:
            return explicit
        if urllib.request.proxy_bypass(parts.hostname or ""):
            return None
        return urllib.request.getproxies().get(parts.scheme)


def network_from_extra(conn_id: str, extra: Mapping[str, Any]) -> Network:
    """Read ``verify``, ``cert`` and ``proxies`` from a connection's extras (the form's fields are strings)."""

    def value(name: str) -> Any:
        found = extra.get(name, extra.get(f"extra__ltx2__{name}"))
        return None if found in (None, "") else found

    def invalid(name: str, found: Any, accepted: str) -> Ltx2ValidationError:
        return Ltx2ValidationError(f"Connection {conn_id!r} has {name}={found!r}: accepted values are {accepted}.")

    verify: bool | str = True
    if (found := value("verify")) is not None:
        text = str(found).strip()
        if isinstance(found, bool) or text.lower() in ("true", "false"):
            verify = found if isinstance(found, bool) else text.lower() == "true"
        elif isinstance(found, str) and text:
            verify = text
        else:
            raise invalid("verify", found, "true, false or the path of a CA bundle")
    cert: str | tuple[str, str] | None = None
    if (found := value("cert")) is not None:
        parts = found if isinstance(found, list) else str(found).split(",")
        parts = [str(part).strip() for part in parts]
        if len(parts) not in (1, 2) or not all(parts):
            raise invalid("cert", found, "the path of a PEM certificate, or [certificate path, key path]")
        cert = parts[0] if len(parts) == 1 else (parts[0], parts[1])
    proxies: dict[str, str] = {}
    if (found := value("proxies")) is not None:
        if isinstance(found, str) and found.strip().startswith("{"):
            try:
                found = json.loads(found)
            except ValueError:
                raise invalid("proxies", found, 'a JSON object such as {"https": "http://proxy:3128"}') from None
        if isinstance(found, str):  # one proxy for both schemes
            found = {"http": found.strip(), "https": found.strip()}
        if not isinstance(found, dict) or not all(
            scheme in ("http", "https") and isinstance(url, str) and urlsplit(url).hostname
            for scheme, url in found.items()
        ):
            raise invalid("proxies", found, '{"http": proxy URL, "https": proxy URL}, or one proxy URL for both')
        proxies = dict(found)
    return Network(verify=verify, cert=cert, proxies=tuple(sorted(proxies.items())))


def tls_refusal(base_url: str, detail: str) -> str:
    """What to say when the gateway's certificate was not trusted: nothing was sent, and how to fix it."""
    return (
        f"The TLS certificate of the LTX-2 gateway {base_url} was not trusted ({detail}); nothing was sent. "
        "Set the connection extra `verify` to the CA bundle that signed it (or REQUESTS_CA_BUNDLE)."
    )


@dataclass(frozen=True)
class Gateway:
    """The gateway's base URL, the subscription key (kept out of ``repr``) and how to reach it."""

    base_url: str
    key: str = field(repr=False)
    network: Network = field(default_factory=Network, compare=False)

    def redact(self, text: str, *hidden: str) -> str:
        """``text`` with the key (and any ``hidden`` credential) replaced, for anything the gateway echoed."""
        for secret in (self.key, *hidden):
            if secret:
                text = text.replace(secret, "***")
        return text


def gateway_from_connection(
    conn_id: str, host: str | None, password: str | None, extra: Mapping[str, Any] | None = None
) -> Gateway:
    """Read the connection: the key in ``password``, an optional base URL in ``host``, network extras."""
    if not password or not password.strip():
        raise Ltx2AuthError(
            f"Connection {conn_id!r} has no subscription key: put the key in its password field "
            "('Subscription key' in the UI)."
        )
    base_url = (host or DEFAULT_BASE_URL).strip()
    if "://" not in base_url:
        base_url = f"https://{base_url}"
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise Ltx2ValidationError(
            f"Connection {conn_id!r} has host={host!r}: accepted values are an http(s) base URL such as "
            f"{DEFAULT_BASE_URL!r}."
        )
    return Gateway(
        base_url=base_url.rstrip("/"), key=password.strip(), network=network_from_extra(conn_id, extra or {})
    )


__all__ = [  # the contract's constants, re-exported: callers import the gateway's knowledge from here
    "ASPECT_RATIOS",
    "DURATION_RANGE",
    "FPS_VALUES",
    "KEY_HEADER",
    "PRICE_PER_VIDEO_USD",
    "REQUEST_FIELDS",
    "RESOLUTIONS",
    "RESULT_PATH",
    "STATUS_PATH",
    "SUBMIT_PATH",
]
