"""A local stand-in for the Pixazo LTX-2 gateway (docs/gateway-contract.md), to test the provider end to end.

It speaks both polling protocols, serves a real MP4 from a "CDN" path, and can be told (through the
``/_sim/`` control endpoints) to be slow, to fail, or to misbehave the way a real gateway does: 429s with
``Retry-After``, HTML 502 pages, truncated JSON, dropped connections. Job state is derived from wall-clock
time since submit, so a restarted simulator (``--state-file``) resumes its jobs on schedule.

With ``render`` on (``--render``, and the ``render`` extra installed), a finished job's MP4 is rendered to
honour its request (see :mod:`.render`): in one background thread, started when a poll first sees the job
processing, written to a temporary directory, and the job reports done only once its file is there.

Gateway limits (see :mod:`.limits`), off unless set by ``--max-concurrent-jobs`` / ``--rate-limit-per-minute``
or the config fields ``max_concurrent_jobs`` / ``rate_limit_per_minute``: a submit while that many jobs
are queued or processing, or any submit or poll beyond that many a minute, is answered 429 with
``Retry-After`` and ``{"error": {"type": "concurrency_limit_error" | "rate_limit_error", "message"}}``.
A refused call creates no job and does not count in the rate window. Checks run in the gateway's order:
scripted faults (the proxy in front), the key (401), the rate limit, the request's validation (400),
then the concurrency limit. Every reply carries an ``x-request-id`` header, as the real one's do.

``--tls-cert`` / ``--tls-key`` serve https; the links in replies then say https too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import ssl
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from aiohttp import web

from airflow_provider_ltx2.contract import (
    ASPECT_RATIOS,
    DURATION_RANGE,
    FPS_VALUES,
    KEY_HEADER,
    REQUEST_FIELDS,
    RESOLUTIONS,
    RESULT_PATH,
    STATUS_PATH,
    SUBMIT_PATH,
)
from airflow_provider_ltx2.simulator import DEFAULT_KEY, limits
from airflow_provider_ltx2.simulator import render as clips

MODEL_ID = "ltx-2-video-api-581"

PROTOCOLS = ("legacy", "universal")
OUTCOMES = ("succeed", "fail", "error", "never_finish", "unknown_status")
FAULT_TARGETS = ("submit", "poll", "download", "any")
FAULT_BODIES = ("json", "html", "malformed", "empty")
RENDER_MODES = ("auto", "sample", "always")
RENDER_EXTRA_MISSING = "render 'always' needs PyAV and numpy: pip install 'airflow-provider-ltx2[render]'"

FAIL_MESSAGE = "Content generation failed: simulated failure"
ERROR_MESSAGE = "Internal system error (not charged)"
UNKNOWN_STATUS = "WIBBLING"
MISSING_KEY_MESSAGE = (
    "Access denied due to missing subscription key. "
    "Make sure to include subscription key when making requests to an API."
)
INVALID_KEY_MESSAGE = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
)

SAMPLE_MP4 = Path(__file__).with_name("sample.mp4")
SAMPLE_JPG = Path(__file__).with_name("sample.jpg")
CHUNK_BYTES = 1 << 20
MAX_RECORDED_REQUESTS = 100
MAX_BOX32 = 0xFFFFFFFF


def prompt_outcome(prompt: Any) -> str | None:
    """The outcome a prompt asks for with a ``[sim:fail]``-style marker, so one job of a batch can fail."""
    if isinstance(prompt, str):
        return next((outcome for outcome in OUTCOMES if f"[sim:{outcome}]" in prompt), None)
    return None


# ---------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Fault:
    """One scripted misbehaviour, answered to the next ``count`` matching requests instead of the handler.

    With ``probability`` (0 to 1) each matching request is answered by it only with that chance (a request
    it passes over goes on to the next fault, then the real handler); ``count`` then bounds how many it answers.
    """

    on: str = "any"
    status: int = 503
    count: int = 1
    retry_after: str | None = None
    body: str = "json"
    drop_connection: bool = False
    probability: float | None = None


@dataclass
class SimConfig:
    """Everything ``POST /_sim/config`` can change; ``/_sim/reset`` restores the start-up copy."""

    protocol: str = "legacy"
    queue_seconds: float = 1.0
    processing_seconds: float = 2.0
    # None: every job processes ``processing_seconds``; else each job's time is drawn uniformly from
    # [processing_seconds, processing_seconds_max] at its submit (and kept with the job).
    processing_seconds_max: float | None = None
    outcome: str = "succeed"
    video_padding_bytes: int = 0
    response_delay_seconds: float = 0.0
    render: str = "sample"
    max_concurrent_jobs: int | None = None  # None or 0: unlimited
    rate_limit_per_minute: int | None = None  # None or 0: unlimited
    faults: list[Fault] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    return str(value)


def _padding(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or 0 < value < 8:
        raise ValueError("video_padding_bytes must be 0 or an integer >= 8 (an MP4 box needs an 8-byte header)")
    return value


def limit_setting(name: str, value: Any) -> int | None:
    """Validate a gateway limit: None or 0 (unlimited) or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be a non-negative integer or null (0 or null: unlimited)")
    return value


def render_mode(value: Any) -> str:
    """Validate a ``render`` mode; ``always`` is refused when the ``render`` extra is not installed."""
    mode = _choice("render", value, RENDER_MODES)
    if mode == "always" and not clips.available():
        raise ValueError(RENDER_EXTRA_MISSING)
    return mode


def parse_fault(raw: Any) -> Fault:
    """Validate one fault object from ``/_sim/config``; raises ValueError with a readable reason."""
    if not isinstance(raw, dict):
        raise ValueError("each fault must be a JSON object")
    unknown = sorted(set(raw) - {f.name for f in fields(Fault)})
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    fault = Fault(**raw)
    _choice("fault.on", fault.on, FAULT_TARGETS)
    _choice("fault.body", fault.body, FAULT_BODIES)
    if isinstance(fault.status, bool) or not isinstance(fault.status, int) or not 200 <= fault.status <= 599:
        raise ValueError("fault.status must be an integer from 200 to 599")
    if isinstance(fault.count, bool) or not isinstance(fault.count, int) or fault.count < 1:
        raise ValueError("fault.count must be a positive integer")
    if not isinstance(fault.drop_connection, bool):
        raise ValueError("fault.drop_connection must be a boolean")
    if isinstance(fault.retry_after, int) and not isinstance(fault.retry_after, bool):
        fault.retry_after = str(fault.retry_after)
    if fault.retry_after is not None and not isinstance(fault.retry_after, str):
        raise ValueError("fault.retry_after must be a string (seconds or an HTTP date)")
    if fault.probability is not None:
        probability = fault.probability
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise ValueError("fault.probability must be a number from 0 to 1, or null (every matching request)")
        fault.probability = float(probability)
    return fault


def check_processing_range(config: SimConfig) -> SimConfig:
    """Refuse a ``processing_seconds_max`` below ``processing_seconds`` (an empty range)."""
    top = config.processing_seconds_max
    if top is not None and top < config.processing_seconds:
        raise ValueError(
            f"processing_seconds_max ({top:g}) must be >= processing_seconds ({config.processing_seconds:g}), "
            "or null (every job takes processing_seconds)"
        )
    return config


def apply_config(config: SimConfig, raw: Any) -> SimConfig:
    """Return ``config`` with the fields in ``raw`` changed; ``faults``, when given, replaces the list."""
    if not isinstance(raw, dict):
        raise ValueError("config must be a JSON object")
    unknown = sorted(set(raw) - {f.name for f in fields(SimConfig)})
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "protocol":
            changes[name] = _choice(name, value, PROTOCOLS)
        elif name == "outcome":
            changes[name] = _choice(name, value, OUTCOMES)
        elif name == "video_padding_bytes":
            changes[name] = _padding(value)
        elif name == "render":
            changes[name] = render_mode(value)
        elif name in ("max_concurrent_jobs", "rate_limit_per_minute"):
            changes[name] = limit_setting(name, value)
        elif name == "faults":
            if not isinstance(value, list):
                raise ValueError("faults must be a list")
            changes[name] = [parse_fault(item) for item in value]
        elif name == "processing_seconds_max":
            changes[name] = None if value is None else _number(name, value)
        else:
            changes[name] = _number(name, value)
    return check_processing_range(replace(config, **changes))


# ---------------------------------------------------------------------------------------------------------
# Submit validation: the contract's tables come from the provider's api module, the checks are our own.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _url_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host or value != value.strip():
        return "must be an http(s) URL with a host"
    return None


def validate_submit(body: dict[str, Any]) -> tuple[str, str] | None:
    """Return ``(field, reason)`` for the first problem in a submit body, or None when it is valid."""
    for name in body:
        if name not in REQUEST_FIELDS:
            return name, "is not a known field"
    for name in ("image_url", "prompt"):
        if name not in body:
            return name, "is required"
    problem = _url_problem(body["image_url"])
    if problem:
        return "image_url", problem
    prompt = body["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt", "must be a non-empty string"
    low, high = DURATION_RANGE
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "duration": (lambda v: _is_int(v) and low <= v <= high, f"must be an integer from {low} to {high}"),
        "resolution": (lambda v: v in RESOLUTIONS, f"must be one of {', '.join(RESOLUTIONS)}"),
        "aspect_ratio": (lambda v: v in ASPECT_RATIOS, f"must be one of {', '.join(ASPECT_RATIOS)}"),
        "fps": (lambda v: _is_int(v) and v in FPS_VALUES, f"must be one of {', '.join(map(str, FPS_VALUES))}"),
        "generate_audio": (lambda v: isinstance(v, bool), "must be a boolean"),
    }
    for name, (ok, reason) in checks.items():
        if name in body and not ok(body[name]):
            return name, reason
    return None


# ---------------------------------------------------------------------------------------------------------
# Jobs


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    stamp = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass
class Job:
    """A submitted request. Its state is a pure function of wall-clock time, fixed at submit."""

    request_id: str
    protocol: str
    created: float
    params: dict[str, Any]
    outcome: str
    queue_seconds: float
    processing_seconds: float
    padding_bytes: int
    render: bool = False  # serve a clip rendered for this job rather than the sample

    @property
    def started(self) -> float:
        return self.created + self.queue_seconds

    @property
    def finished(self) -> float:
        return self.started + self.processing_seconds

    def phase(self, now: float) -> str:
        """'queued', 'processing', or (once due) the outcome: succeed/fail/error/unknown_status."""
        if now < self.started:
            return "queued"
        if self.outcome == "unknown_status":
            return self.outcome
        if self.outcome == "never_finish" or now < self.finished:
            return "processing"
        return self.outcome


UNIVERSAL_STATUS = {
    "queued": "QUEUED",
    "processing": "PROCESSING",
    "succeed": "COMPLETED",
    "fail": "FAILED",
    "error": "ERROR",
    "unknown_status": UNKNOWN_STATUS,
}
TERMINAL = ("succeed", "fail", "error")


def free_box_header(size: int) -> bytes:
    """Header of a top-level MP4 ``free`` box of ``size`` bytes in total (64-bit largesize when needed)."""
    if size <= MAX_BOX32:
        return struct.pack(">I4s", size, b"free")
    return struct.pack(">I4sQ", 1, b"free", size)


# ---------------------------------------------------------------------------------------------------------
# The simulator


class Simulator:
    """Holds jobs, counters and config for one app; handlers below are its HTTP face."""

    def __init__(self, config: SimConfig, key: str, state_file: Path | None = None) -> None:
        self.startup = replace(config, faults=[])
        self.config = replace(config, faults=list(config.faults))
        self.key = key
        self.state_file = state_file
        self.jobs: dict[str, Job] = {}
        self.sample = SAMPLE_MP4.read_bytes()
        self.zeros = bytes(CHUNK_BYTES)
        self.renders: dict[str, asyncio.Future[Path | None]] = {}
        self.rendered_at: dict[str, float] = {}  # when each clip in ``renders`` was written
        self.render_dir: Path | None = None
        self.render_pool: ThreadPoolExecutor | None = None
        self.stopping = threading.Event()
        self.random = random.Random()  # job lengths and fault chances, not secrets
        self.reset_counters()
        self.load_state()

    def reset_counters(self) -> None:
        """Zero the counters and the limits' state (the rate window); jobs are not touched."""
        self.counts = {"submits": 0, "polls": 0, "downloads": 0, "keys_seen_ok": 0, "keys_seen_bad": 0}
        self.throttled = {"submit": 0, "poll": 0}  # 429s answered by the limits, not by scripted faults
        self.rate_window = limits.RateWindow()
        self.recorded: deque[Any] = deque(maxlen=MAX_RECORDED_REQUESTS)

    def reset(self) -> None:
        self.config = replace(self.startup, faults=[])
        self.jobs.clear()
        self.drop_renders()
        self.reset_counters()
        self.save_state()

    def stats(self) -> dict[str, Any]:
        now = time.time()
        job_times = [
            {"request_id": job.request_id, "started": job.created, "ended": self.ended(job, now)}
            for job in self.jobs.values()
        ]
        return {
            **self.counts,
            "jobs": len(self.jobs),
            "job_times": job_times,
            "throttled": dict(self.throttled),
            "requests": list(self.recorded),
        }

    # state file -------------------------------------------------------------------------------------

    def load_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text())
            jobs = [Job(**item) for item in data["jobs"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            print(f"ltx2-simulator: ignoring unreadable state file {self.state_file}: {exc}", file=sys.stderr)
            return
        self.jobs = {job.request_id: job for job in jobs}

    def save_state(self) -> None:
        """Write jobs atomically, so a simulator killed mid-write never leaves half a file behind."""
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"jobs": [asdict(job) for job in self.jobs.values()]}))
        os.replace(tmp, self.state_file)

    # jobs -------------------------------------------------------------------------------------------

    def create_job(self, params: dict[str, Any]) -> Job:
        cfg = self.config
        prefix = "ltx2-v-" if cfg.protocol == "legacy" else f"{MODEL_ID}_"
        job = Job(
            request_id=prefix + uuid.uuid4().hex,
            protocol=cfg.protocol,
            created=time.time(),
            params=params,
            outcome=prompt_outcome(params.get("prompt")) or cfg.outcome,
            queue_seconds=cfg.queue_seconds,
            processing_seconds=self.draw_processing_seconds(),
            padding_bytes=cfg.video_padding_bytes,
            render=cfg.render == "always" or (cfg.render == "auto" and clips.available()),
        )
        self.jobs[job.request_id] = job
        self.save_state()
        return job

    def draw_processing_seconds(self) -> float:
        """A new job's processing time: ``processing_seconds``, or uniform up to ``processing_seconds_max``."""
        low, high = self.config.processing_seconds, self.config.processing_seconds_max
        if high is None or high <= low:
            return low
        return self.random.uniform(low, high)

    def queue_position(self, job: Job, now: float) -> int:
        ahead = sum(1 for j in self.jobs.values() if j.created < job.created and j.phase(now) == "queued")
        return ahead + 1

    def phase(self, job: Job, now: float) -> str:
        """The job's phase as the API shows it: a rendered job stays processing until its clip is written.

        Its rendering starts on the first look that finds it processing (or done), so it overlaps the
        processing time and a job nobody polls costs nothing.
        """
        phase = job.phase(now)
        if job.render and job.outcome == "succeed" and phase in ("processing", "succeed"):
            rendering = self.start_render(job)
            if phase == "succeed" and not rendering.done():
                return "processing"
        return phase

    def ended(self, job: Job, now: float) -> float | None:
        """When ``job`` freed its slot (stopped being queued or processing), or None while it holds it.

        That is the end of its processing time; a rendered job's clip may take longer, and the API shows
        it processing until the clip is written. A ``never_finish`` job holds its slot for ever.
        """
        if job.outcome == "never_finish" or now < job.finished:
            return None
        if job.render and job.outcome == "succeed":
            rendered = self.rendered_at.get(job.request_id)
            return None if rendered is None else max(job.finished, rendered)
        return job.finished

    def slots_busy_until(self, now: float) -> list[float | None]:
        """When each job holding a slot at ``now`` is due to free it: None never, ``now`` while rendering.

        Each job is looked at as a poll would (which starts a due render), so one nobody polls frees its
        slot too.
        """
        busy: list[float | None] = []
        for job in self.jobs.values():
            self.phase(job, now)
            if self.ended(job, now) is None:
                busy.append(None if job.outcome == "never_finish" else max(job.finished, now))
        return busy

    def concurrency_refusal(self, now: float) -> web.Response | None:
        """The 429 for a submit while every slot of the key is busy, or None when one is free."""
        cap = self.config.max_concurrent_jobs
        if not cap:
            return None
        busy = self.slots_busy_until(now)
        wait = limits.concurrency_wait(busy, cap, now)
        if wait is None:
            return None
        self.throttled["submit"] += 1
        message = f"Too many concurrent generations: {len(busy)} running, {cap} allowed per key."
        return limit_response(limits.CONCURRENCY_ERROR, wait, message)

    def video_size(self, job: Job) -> int:
        """What a download of the finished ``job`` serves: its clip (or the sample), then the padding."""
        clip = self.clip(job)
        return (clip.stat().st_size if clip else len(self.sample)) + job.padding_bytes

    # rendered clips ---------------------------------------------------------------------------------

    def start_render(self, job: Job) -> asyncio.Future[Path | None]:
        """The (shared) rendering of ``job``'s clip, started on the one render thread if not yet."""
        rendering = self.renders.get(job.request_id)
        if rendering is None:
            if self.render_pool is None:
                self.render_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltx2-render")
                self.render_dir = Path(tempfile.mkdtemp(prefix="ltx2-simulator-"))
            assert self.render_dir is not None
            spec = clips.RenderSpec.from_params(job.params)
            path = self.render_dir / f"{job.request_id}.mp4"
            loop = asyncio.get_running_loop()
            rendering = loop.run_in_executor(self.render_pool, self.render_clip, spec, job.params["image_url"], path)
            rendering.add_done_callback(functools.partial(self.rendered, job.request_id))
            self.renders[job.request_id] = rendering
        return rendering

    def rendered(self, request_id: str, rendering: asyncio.Future[Path | None]) -> None:
        """Note when a clip was written (or given up), unless a reset forgot it meanwhile."""
        if self.renders.get(request_id) is rendering:
            self.rendered_at[request_id] = time.time()

    def render_clip(self, spec: clips.RenderSpec, image_url: str, path: Path) -> Path | None:
        """Runs on the render thread: the clip's path, or None (serve the sample) if it cannot be made."""
        try:
            clips.render(spec, image_url, path, self.stopping.is_set)
        except clips.RenderCancelled:
            return None
        except Exception as error:  # a broken clip must not break the job: say so and serve the sample
            print(f"ltx2-simulator: cannot render {path.stem}, serving the sample: {error!r}", file=sys.stderr)
            return None
        return path

    def clip(self, job: Job) -> Path | None:
        """The finished clip of ``job``, or None when it is served the sample."""
        rendering = self.renders.get(job.request_id)
        if rendering is None or not rendering.done() or rendering.cancelled():
            return None
        return rendering.result()

    def drop_renders(self) -> None:
        """Forget every clip and delete its file (a clip still rendering goes once it is written)."""
        for rendering in self.renders.values():
            rendering.add_done_callback(_delete_clip)
        self.renders.clear()
        self.rendered_at.clear()

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop a render in progress (it checks between frames) and remove the clips' directory."""
        self.stopping.set()
        if self.render_pool is not None:
            await asyncio.to_thread(self.render_pool.shutdown, wait=True, cancel_futures=True)
        if self.render_dir is not None:
            shutil.rmtree(self.render_dir, ignore_errors=True)

    # the gate every API call passes -----------------------------------------------------------------

    def take_fault(self, kind: str) -> Fault | None:
        for fault in self.config.faults:
            if fault.on in (kind, "any") and fault.count > 0:
                if fault.probability is not None and self.random.random() >= fault.probability:
                    continue  # passed over this time: the next fault, or the real handler
                fault.count -= 1
                if fault.count == 0:
                    self.config.faults.remove(fault)
                return fault
        return None

    async def gate(self, request: web.Request, kind: str, check_key: bool) -> web.StreamResponse | None:
        """Count the call, apply the slow-answer delay and any scripted fault, check the key, then the rate.

        Returns the response to send instead of the real handler's, or None to go on. Faults come before
        the key check because in the real system they come from the proxy in front of the service; only
        calls with the right key reach the rate limit.
        """
        self.counts[{"submit": "submits", "poll": "polls", "download": "downloads"}[kind]] += 1
        supplied = request.headers.get(KEY_HEADER)
        if check_key:
            self.counts["keys_seen_ok" if supplied == self.key else "keys_seen_bad"] += 1
        if self.config.response_delay_seconds > 0:
            await asyncio.sleep(self.config.response_delay_seconds)
        fault = self.take_fault(kind)
        if fault is not None:
            return fault_response(request, fault)
        if not check_key:
            return None
        if supplied != self.key:
            message = MISSING_KEY_MESSAGE if not supplied else INVALID_KEY_MESSAGE
            return web.json_response({"statusCode": 401, "message": message}, status=401)
        rate = self.config.rate_limit_per_minute
        wait = self.rate_window.admit(rate, time.monotonic())
        if wait is None:
            return None
        self.throttled[kind] += 1
        return limit_response(limits.RATE_ERROR, wait, f"Rate limit exceeded: {rate} requests a minute per key.")


def _delete_clip(rendering: asyncio.Future[Path | None]) -> None:
    if not rendering.cancelled() and rendering.exception() is None:
        clip = rendering.result()
        if clip is not None:
            clip.unlink(missing_ok=True)


def limit_response(error_type: str, retry_after: int, message: str) -> web.Response:
    """A 429 from a gateway limit, in the shape of Lightricks' API."""
    body = {"error": {"type": error_type, "message": f"{message} Retry after {retry_after} s."}}
    return web.json_response(body, status=429, headers={"Retry-After": str(retry_after)})


def fault_response(request: web.Request, fault: Fault) -> web.StreamResponse:
    """Build the scripted bad answer; for ``drop_connection`` close the socket and answer nothing."""
    if fault.drop_connection:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=fault.status)  # aiohttp's write then fails quietly: nothing is sent
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    try:
        reason = HTTPStatus(fault.status).phrase
    except ValueError:
        reason = "Error"
    if fault.body == "empty" or fault.status in (204, 304):
        return web.Response(status=fault.status, headers=headers)
    if fault.body == "html":
        html = f"<html><body><h1>{fault.status} {reason}</h1></body></html>"
        return web.Response(status=fault.status, headers=headers, text=html, content_type="text/html")
    if fault.body == "malformed":
        return web.Response(status=fault.status, headers=headers, text='{"error": ', content_type="application/json")
    body = {"error": reason, "message": "simulated fault"}
    return web.json_response(body, status=fault.status, headers=headers)


# ---------------------------------------------------------------------------------------------------------
# Handlers

SIM = web.AppKey("simulator", Simulator)


def _base_url(request: web.Request) -> str:
    """The server's own URL as the client reached it, so returned links work through any host alias."""
    return f"{request.scheme}://{request.host}"


def _video_url(request: web.Request, job: Job) -> str:
    return f"{_base_url(request)}/files/{job.request_id}.mp4"


def _bad_request(name: str, reason: str) -> web.Response:
    body = {"error": f"Invalid {name}: {reason}", "message": f"Request validation failed: {name} {reason}."}
    return web.json_response(body, status=400)


def _not_found() -> web.Response:
    return web.json_response({"error": "Request not found"}, status=404)


def _decode(raw: bytes) -> tuple[bool, Any]:
    try:
        return True, json.loads(raw)
    except ValueError:
        return False, raw.decode("utf-8", errors="replace")


async def submit(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    ok, body = _decode(await request.read())
    sim.recorded.append(body)
    early = await sim.gate(request, "submit", check_key=True)
    if early is not None:
        return early
    if not ok or not isinstance(body, dict):
        return web.json_response(
            {"error": "Request body must be a JSON object", "message": "Invalid request body."}, status=400
        )
    problem = validate_submit(body)
    if problem is not None:
        return _bad_request(*problem)
    refusal = sim.concurrency_refusal(time.time())
    if refusal is not None:
        return refusal
    job = sim.create_job(body)
    if job.protocol == "legacy":
        message = "Video generation request queued successfully."
        return web.json_response({"status": "IN_QUEUE", "request_id": job.request_id, "message": message})
    polling_url = f"{_base_url(request)}/v2/requests/status/{job.request_id}"
    reply = {"request_id": job.request_id, "status": "QUEUED", "polling_url": polling_url}
    return web.json_response(reply, status=202)


async def legacy_result(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    ok, body = _decode(await request.read())
    early = await sim.gate(request, "poll", check_key=True)
    if early is not None:
        return early
    request_id = body.get("request_id") if ok and isinstance(body, dict) else None
    if not isinstance(request_id, str) or not request_id:
        return _bad_request("request_id", "must be a non-empty string")
    job = sim.jobs.get(request_id)
    if job is None or job.protocol != "legacy":
        return _not_found()
    now = time.time()
    phase = sim.phase(job, now)
    reply: dict[str, Any]
    if phase == "queued":
        reply = {"status": "IN_QUEUE", "queue_position": sim.queue_position(job, now)}
    elif phase == "processing":
        log = {"message": "Generating video...", "level": "INFO", "source": "user", "timestamp": _iso(now)}
        reply = {"status": "IN_PROGRESS", "logs": [log]}
    elif phase == "succeed":
        video = {
            "url": _video_url(request, job),
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": sim.video_size(job),
        }
        reply = {"video": video}
    elif phase == "unknown_status":
        reply = {"status": UNKNOWN_STATUS}
    else:
        reply = {"status": "FAILED", "error": FAIL_MESSAGE if phase == "fail" else ERROR_MESSAGE}
    return web.json_response(reply)


async def universal_status(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    early = await sim.gate(request, "poll", check_key=True)
    if early is not None:
        return early
    job = sim.jobs.get(request.match_info["request_id"])
    if job is None or job.protocol != "universal":
        return _not_found()
    phase = sim.phase(job, time.time())
    updated = {"queued": job.created, "processing": job.started, "unknown_status": job.started}
    output = None
    if phase == "succeed":
        output = {"media_url": [_video_url(request, job)], "media_type": "application/octet-stream"}
    reply = {
        "request_id": job.request_id,
        "status": UNIVERSAL_STATUS[phase],
        "model_id": MODEL_ID,
        "error": {"fail": FAIL_MESSAGE, "error": ERROR_MESSAGE}.get(phase),
        "output": output,
        "created_at": _iso(job.created),
        "updated_at": _iso(updated.get(phase, job.finished)),
        "completed_at": _iso(job.finished) if phase in TERMINAL else None,
    }
    return web.json_response(reply)


async def download(request: web.Request) -> web.StreamResponse:
    """The public "CDN": no key; streams the clip (or sample), then any zero padding, never held in memory.

    A rendered job's clip is awaited if it is still being made (e.g. fetched before any poll said done).
    """
    filename = request.match_info["filename"]
    if filename == SAMPLE_JPG.name:
        return web.FileResponse(SAMPLE_JPG, headers={"Content-Type": "image/jpeg"})
    sim = request.app[SIM]
    early = await sim.gate(request, "download", check_key=False)
    if early is not None:
        return early
    job = sim.jobs.get(filename.removesuffix(".mp4")) if filename.endswith(".mp4") else None
    if job is None or job.phase(time.time()) != "succeed":
        return web.json_response({"error": "Not found"}, status=404)
    # shield: a client hanging up must not cancel the rendering that polls and other downloads share
    clip = await asyncio.shield(sim.start_render(job)) if job.render else None
    with contextlib.ExitStack() as stack:
        file: BinaryIO | None = None
        if clip is not None:
            try:  # opened before its size is taken, so nothing can shorten the body once it is announced
                file = stack.enter_context(clip.open("rb"))
            except FileNotFoundError:  # a reset forgot the job while it was rendering
                return web.json_response({"error": "Not found"}, status=404)
        response = web.StreamResponse()
        response.content_type = "video/mp4"
        video_bytes = os.fstat(file.fileno()).st_size if file is not None else len(sim.sample)
        response.content_length = video_bytes + job.padding_bytes
        await response.prepare(request)
        if request.method != "HEAD":
            # A client that hangs up mid-file is normal (timeouts, cancelled tasks): stop quietly.
            with contextlib.suppress(ConnectionError):
                await _write_video(response, file or sim.sample, job.padding_bytes, sim.zeros)
    return response


async def _write_video(response: web.StreamResponse, video: bytes | BinaryIO, padding: int, zeros: bytes) -> None:
    """Write the video, then a ``free`` box of ``padding`` bytes streamed from one reused zero buffer."""
    if isinstance(video, bytes):
        for offset in range(0, len(video), CHUNK_BYTES):
            await response.write(video[offset : offset + CHUNK_BYTES])
    else:
        while chunk := await asyncio.to_thread(video.read, CHUNK_BYTES):
            await response.write(chunk)
    if padding:
        header = free_box_header(padding)
        await response.write(header)
        remaining = padding - len(header)
        view = memoryview(zeros)
        while remaining > 0:
            step = min(remaining, len(view))
            await response.write(view[:step])
            remaining -= step
    await response.write_eof()


async def sim_stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIM].stats())


async def sim_reset(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    sim.reset()
    return web.json_response(sim.config.to_json())


async def sim_get_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIM].config.to_json())


async def sim_set_config(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    ok, body = _decode(await request.read())
    try:
        if not ok:
            raise ValueError("config must be a JSON object")
        sim.config = apply_config(sim.config, body)
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(sim.config.to_json())


async def _add_request_id(_request: web.Request, response: web.StreamResponse) -> None:
    """Give every reply its own ``x-request-id``, as the real gateway's replies carry one."""
    response.headers.setdefault("x-request-id", uuid.uuid4().hex)


def create_app(
    config: SimConfig | None = None, key: str = DEFAULT_KEY, state_file: Path | None = None
) -> web.Application:
    """Build the aiohttp app; usable in-process (e.g. with aiohttp's test server) as well as by ``serve``."""
    app = web.Application()
    app[SIM] = Simulator(config or SimConfig(), key, state_file)
    app.on_cleanup.append(app[SIM].close)
    app.on_response_prepare.append(_add_request_id)
    app.router.add_post(SUBMIT_PATH, submit)
    app.router.add_post(RESULT_PATH, legacy_result)
    app.router.add_get(STATUS_PATH, universal_status)
    app.router.add_get("/files/{filename}", download)
    app.router.add_get("/_sim/stats", sim_stats)
    app.router.add_post("/_sim/reset", sim_reset)
    app.router.add_get("/_sim/config", sim_get_config)
    app.router.add_post("/_sim/config", sim_set_config)
    return app


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of https from PEM files (``cert`` may hold the whole chain); OSError if unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(
    host: str = "127.0.0.1",
    port: int = 8089,
    config: SimConfig | None = None,
    key: str = DEFAULT_KEY,
    state_file: Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run until SIGINT/SIGTERM; prints the listening line (with the real port) once it accepts.

    With ``ssl_context`` it serves https only.
    """
    runner = web.AppRunner(create_app(config, key, state_file), access_log=None)
    await runner.setup()
    try:
        # backlog: thousands of pollers may connect at once
        site = web.TCPSite(runner, host, port, backlog=4096, ssl_context=ssl_context)
        await site.start()
        real_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if ssl_context is not None else "http"
        print(f"ltx2-simulator listening on {scheme}://{shown}:{real_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Unix main thread
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
