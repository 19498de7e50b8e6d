"""The fault matrix: each way the gateway can misbehave, on the submit side and on the poll side, through
both ways a task waits:

- ``worker``: ``Ltx2GenerateVideoOperator(deferrable=False).execute(context)``, polling in the task;
- ``deferred``: the deferrable operator submits and defers, its trigger (round-tripped through
  ``serialize()`` as the triggerer does) runs to its one event, then ``execute_complete`` reads it.

Every row checks the outcome (a success after retries, or the specific exception with the gateway's own
words), that at most one paid job was created at the simulator, and that the wall time stays below the
task's deadline plus a bound. The table of results is printed when the module finishes.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_ltx2 import waits
from airflow_provider_ltx2.api.retries import RetryPolicy
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2SubmitUnconfirmed,
    Ltx2Timeout,
    Ltx2TransientError,
)
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import KEY, WORKER_TABLES, Deferrals, run_deferrable
from tests.fakes import task_context

pytestmark = pytest.mark.slow  # 70 rows of real retries, client timeouts and deadlines

# Small numbers so the whole matrix runs in well under a minute; the shape of every decision is the same.
# A short poll outage budget: 10 faults in a row always outlast it (the 9 waits alone take >= 4.5 s), 3 never do.
RETRIES = RetryPolicy(max_attempts=4, poll_outage_seconds=1.5, base_delay=0.05, max_delay=2.0)
CLIENT_TIMEOUT = 0.3  # seconds the client waits for an answer (60 in production)
TIMEOUT = 8.0  # the task's own deadline, in seconds
BOUND = 4.0  # how far past the deadline a task may still be busy
POLL_INTERVAL = 0.1
QUICK_JOBS = {"queue_seconds": 0.1, "processing_seconds": 0.2}
REQUEST = {"image_url": "https://images.example.com/cat.jpg", "prompt": "the cat turns its head"}
PATHS = ("worker", "deferred")


def burst(on: str, status: int, count: int = 2, **more: Any) -> dict[str, Any]:
    return {"faults": [{"on": on, "status": status, "count": count, **more}]}


@dataclass(frozen=True, eq=False)
class Row:
    """One fault. ``before`` configures the simulator before the submit, ``after`` right after it."""

    name: str
    side: str
    expected: type[Exception] | None  # None: the video is delivered
    message: str = ""  # a regex the error's text must match: the gateway's own words where it sent any
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    special: str = ""  # refused | gone | slow_for_a_while | bad_key
    jobs: tuple[int, ...] = (1,)  # paid jobs the gateway may have created
    min_seconds: float = 0.0  # e.g. Retry-After honoured
    timeout: float = TIMEOUT


ROWS = [
    # ---------------------------------------------------------------------------------------- submit
    Row("429 x2, Retry-After 0.4", "submit", None, before=burst("submit", 429, retry_after="0.4"), min_seconds=0.8),
    Row(
        "500",
        "submit",
        Ltx2SubmitUnconfirmed,
        r"HTTP 500 .*simulated fault.*may have accepted",
        burst("submit", 500, 1),
        jobs=(0,),
    ),
    Row("502 x2", "submit", None, before=burst("submit", 502)),
    Row("503 x2", "submit", None, before=burst("submit", 503)),
    Row("504 x2", "submit", None, before=burst("submit", 504)),
    Row(
        "503 x10 (outlasts the retries)",
        "submit",
        Ltx2TransientError,
        r"HTTP 503 .*Service Unavailable: simulated fault",
        burst("submit", 503, 10),
        jobs=(0,),
    ),
    Row("502 HTML page", "submit", None, before=burst("submit", 502, 1, body="html")),
    Row(
        "200 HTML page",
        "submit",
        Ltx2SubmitUnconfirmed,
        "may have accepted",
        burst("submit", 200, 1, body="html"),
        jobs=(0,),
    ),
    Row(
        "200 malformed JSON",
        "submit",
        Ltx2SubmitUnconfirmed,
        "may have accepted",
        burst("submit", 200, 1, body="malformed"),
        jobs=(0,),
    ),
    Row(
        "connection refused",
        "submit",
        Ltx2TransientError,
        r"Could not reach the LTX-2 gateway",
        special="refused",
        jobs=(0,),
    ),
    Row(
        "connection dropped after sending",
        "submit",
        Ltx2SubmitUnconfirmed,
        r"connection broke after the submit",
        burst("submit", 200, 1, drop_connection=True),
        jobs=(0,),
    ),
    Row(
        "answer slower than the client timeout",
        "submit",
        Ltx2SubmitUnconfirmed,
        r"Timeout.*may have accepted",
        {"response_delay_seconds": 0.6},
        jobs=(0, 1),
    ),
    Row(
        "401 invalid key", "submit", Ltx2AuthError, r"HTTP 401 .*invalid subscription key", special="bad_key", jobs=(0,)
    ),
    Row("402 no balance", "submit", Ltx2AuthError, r"HTTP 402 .*Top up", burst("submit", 402, 1), jobs=(0,)),
    # ---------------------------------------------------------------------------------------- poll
    Row("429 x2, Retry-After 0.4", "poll", None, after=burst("poll", 429, retry_after="0.4"), min_seconds=0.8),
    Row("500 x2", "poll", None, after=burst("poll", 500)),
    Row("502 x2", "poll", None, after=burst("poll", 502)),
    Row("503 x2", "poll", None, after=burst("poll", 503)),
    Row("504 x2", "poll", None, after=burst("poll", 504)),
    Row("502 HTML page x2", "poll", None, after=burst("poll", 502, body="html")),
    Row("200 HTML page x2", "poll", None, after=burst("poll", 200, body="html")),
    Row("200 malformed JSON x2", "poll", None, after=burst("poll", 200, body="malformed")),
    Row("connection dropped x2", "poll", None, after=burst("poll", 200, drop_connection=True)),
    Row(
        "503 x10 (outlasts the retries)",
        "poll",
        Ltx2TransientError,
        r"HTTP 503 .*Service Unavailable: simulated fault",
        after=burst("poll", 503, 10),
    ),
    Row(
        "connection refused (gateway gone)",
        "poll",
        Ltx2TransientError,
        r"Could not reach the LTX-2 gateway",
        special="gone",
    ),
    Row("slow answers for ~0.4s, then normal", "poll", None, special="slow_for_a_while"),
    Row(
        "answers slower than the client timeout",
        "poll",
        Ltx2TransientError,
        r"Could not reach.*Timeout",
        after={"response_delay_seconds": 0.6},
    ),
    Row(
        "FAILED",
        "poll",
        Ltx2GenerationFailed,
        r"\(FAILED\): Content generation failed: simulated failure",
        {"outcome": "fail"},
    ),
    Row(
        "ERROR",
        "poll",
        Ltx2GenerationFailed,
        r"\(FAILED\): Internal system error \(not charged\)",
        {"outcome": "error"},
    ),
    Row(
        "FAILED (universal queue)",
        "poll",
        Ltx2GenerationFailed,
        r"\(FAILED\): Content generation failed",
        {"outcome": "fail", "protocol": "universal"},
    ),
    Row(
        "ERROR (universal queue)",
        "poll",
        Ltx2GenerationFailed,
        r"\(ERROR\): Internal system error",
        {"outcome": "error", "protocol": "universal"},
    ),
    Row(
        "unknown status string", "poll", Ltx2Error, r"unknown status 'WIBBLING' 3 times", {"outcome": "unknown_status"}
    ),
    Row(
        "404 on poll",
        "poll",
        Ltx2GenerationFailed,
        r"HTTP 404 .*Not Found: simulated fault.*unknown to the gateway",
        after=burst("poll", 404, 1),
    ),
    Row(
        "401 on poll (key revoked)",
        "poll",
        Ltx2AuthError,
        r"HTTP 401 .*Check the subscription key",
        after=burst("poll", 401, 1),
    ),
    Row(
        "job never ends",
        "poll",
        Ltx2Timeout,
        r"not finished by its deadline",
        {"outcome": "never_finish"},
        timeout=1.0,
        min_seconds=1.0,
    ),
]


@dataclass
class Result:
    row: Row
    path: str
    outcome: str = ""
    submits: int = 0
    jobs: int = 0
    seconds: float = 0.0
    verdict: str = "?"


RESULTS: list[Result] = []


# ------------------------------------------------------------------------------------------------ the fakes


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


def run_worker(op: Ltx2GenerateVideoOperator, context: dict[str, Any]) -> tuple[Any, str]:
    return op.execute(context), "returned"


def run_deferred(op: Ltx2GenerateVideoOperator, context: dict[str, Any]) -> tuple[Any, str]:
    seen = Deferrals()
    try:
        value = run_deferrable(op, context, seen)
    finally:
        if seen.events:
            context["event"] = seen.events[-1]["status"]
    assert seen.triggers, "the deferrable operator did not defer"
    return value, f"event {seen.events[-1]['status']}"


RUNNERS: dict[str, Callable[[Ltx2GenerateVideoOperator, dict[str, Any]], tuple[Any, str]]] = {
    "worker": run_worker,
    "deferred": run_deferred,
}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def print_the_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    lines = [f"{'side':<6} {'fault':<40} {'path':<8} {'outcome':<44} {'submits':>7} {'jobs':>4} {'secs':>5}  verdict"]
    for result in sorted(RESULTS, key=lambda r: (ROWS.index(r.row), PATHS.index(r.path))):
        row = result.row
        lines.append(
            f"{row.side:<6} {row.name[:40]:<40} {result.path:<8} {result.outcome[:44]:<44} "
            f"{result.submits:>7} {result.jobs:>4} {result.seconds:>5.1f}  {result.verdict}"
        )
    title = "fault matrix (submits: requests that reached the gateway; jobs: paid)"
    if hasattr(request.config, "workeroutput"):  # a pytest-xdist worker: the controller prints it at the end
        request.config.workeroutput.setdefault(WORKER_TABLES, []).append((title, lines))
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_sep("-", title)
        for line in lines:
            reporter.write_line(line)


@pytest.fixture
def fast_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown statuses given up on after 3 polls (30 in production)."""
    monkeypatch.setattr(waits, "MAX_UNKNOWN_POLLS", 3)


def row_id(row: Row) -> str:
    return f"{row.side}-{re.sub(r'[^a-z0-9]+', '-', row.name.lower()).strip('-')}"


def cases() -> list[Any]:
    return [pytest.param(row, path, id=f"{row_id(row)}-{path}") for row in ROWS for path in PATHS]


# ------------------------------------------------------------------------------------------------ the test


class Scenario:
    """Sets the gateway up for one row: before the submit, and (through a wrapped submit) right after it."""

    def __init__(self, row: Row, simulator: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
        self.row = row
        self.gateway = simulator  # the simulator whose counters tell what was paid for
        self.private: SimulatorProcess | None = None
        self.stats_at_submit: dict[str, Any] = {}
        self.timers: list[threading.Timer] = []
        simulator.configure(**QUICK_JOBS, **row.before)
        if row.special == "refused":
            host = f"http://127.0.0.1:{closed_port()}"
            monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", simulator.connection().replace(simulator.base_url, host))
        if row.special == "bad_key":
            monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", simulator.connection().replace(KEY, "not-the-key"))
        if row.special == "gone":  # a gateway of its own, stopped right after it accepted the job
            self.private = self.gateway = SimulatorProcess(key=KEY).start()
            self.private.configure(**QUICK_JOBS)
            monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", self.private.connection())
        original_submit = Ltx2Hook.submit

        def submit_then_misbehave(hook: Ltx2Hook, body: dict[str, Any], **kwargs: Any) -> Any:
            job = original_submit(hook, body, **kwargs)
            self.after_submit()
            return job

        monkeypatch.setattr(Ltx2Hook, "submit", submit_then_misbehave)

    def after_submit(self) -> None:
        if self.row.after:
            self.gateway.configure(**self.row.after)
        if self.row.special == "slow_for_a_while":
            gateway = self.gateway
            gateway.configure(response_delay_seconds=0.6)
            self.timers.append(threading.Timer(0.4, lambda: gateway.configure(response_delay_seconds=0)))
            self.timers[-1].start()
        if self.private is not None:
            self.stats_at_submit = self.private.stats()
            self.private.stop()

    def finish(self) -> dict[str, Any]:
        """Clean up; return the gateway's counters."""
        for timer in self.timers:
            timer.join()
        if self.private is not None:
            self.private.stop()
        if self.row.name.startswith("answer slower"):
            time.sleep(0.6)  # the gateway finishes the slow submit the client gave up on
        return self.stats_at_submit or self.gateway.stats()


def check(row: Row, result: Result, value: Any, error: Exception | None) -> None:
    result.verdict = "FAIL"
    if row.expected is None:
        assert error is None, f"expected a video, got {error!r}"
        assert value["status"] == "succeeded" and value["video_url"]
    else:
        assert isinstance(error, row.expected), f"expected {row.expected.__name__}, got {error!r}"
        assert re.search(row.message, str(error), re.DOTALL), f"{str(error)!r} does not match {row.message!r}"
        assert KEY not in str(error)
    assert result.jobs in row.jobs and result.jobs <= 1, f"{result.jobs} paid jobs"
    assert result.seconds < row.timeout + BOUND, f"took {result.seconds:.1f}s, the deadline is {row.timeout}s"
    assert result.seconds >= row.min_seconds, f"took {result.seconds:.1f}s: the gateway's Retry-After was not honoured"
    result.verdict = "ok"


@pytest.mark.parametrize(("row", "path"), cases())
def test_fault(
    row: Row, path: str, simulator: SimulatorProcess, fast_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = Result(row, path)
    RESULTS.append(result)
    scenario = Scenario(row, simulator, monkeypatch)
    op = Ltx2GenerateVideoOperator(
        task_id="generate",
        **REQUEST,
        deferrable=path == "deferred",
        poll_interval=POLL_INTERVAL,
        timeout=row.timeout,
        check_image=False,  # a made-up image URL: no network here
    )
    op.hook = Ltx2Hook(retry_policy=RETRIES, read_timeout=CLIENT_TIMEOUT)  # the trigger gets RETRIES in its kwargs
    context = task_context()
    value, error = None, None
    started = time.monotonic()
    try:
        value, how = RUNNERS[path](op, context)
        result.outcome = f"success ({how})"
    except Exception as caught:
        error = caught
        result.outcome = type(caught).__name__ + (f" (event {context['event']})" if "event" in context else "")
    finally:
        result.seconds = time.monotonic() - started
        stats = scenario.finish()
    result.submits, result.jobs = int(stats["submits"]), int(stats["jobs"])
    check(row, result, value, error)
