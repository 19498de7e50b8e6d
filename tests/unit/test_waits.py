"""Unit tests of ``airflow_provider_ltx2.waits``: what one poll's answer means for a wait, and deadlines.

``after_poll`` is the one decision the worker's loop, the trigger's loop and the sensor's poke share: its
table below covers every kind of answer (still going, done, failed, unknown, throttled, transient, fatal)
before and at the deadline.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_ltx2.api.jobs import JobState, JobStatus
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2Throttled,
    Ltx2Timeout,
    Ltx2TransientError,
)
from airflow_provider_ltx2.waits import (
    MAX_UNKNOWN_POLLS,
    Deadline,
    JobPace,
    Next,
    Wait,
    after_poll,
    started_at,
    utc_clock,
)
from tests.conftest import (
    CLOCK_START,
    FAILED,
    LEGACY_JOB,
    QUEUED,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    UNIVERSAL_JOB,
    unknown_status,
)

DEADLINE = CLOCK_START + 600.0
BEFORE = CLOCK_START + 100.0  # well before the deadline
NEAR = DEADLINE - 4.0  # less than one poll interval before it
AT = DEADLINE  # at the deadline
WAIT = Wait(LEGACY_JOB, deadline=DEADLINE, poll_interval=10.0, started=CLOCK_START)
RUNNING_WAIT = replace(WAIT, last_status="running")
WARMING = unknown_status("WARMING_UP")
SHOWN_WARMING = "'WARMING_UP'"  # how an unknown status word is shown
ALMOST_GIVEN_UP = replace(WAIT, unknown_polls=MAX_UNKNOWN_POLLS - 1, last_status=SHOWN_WARMING)
THROTTLED = Ltx2Throttled("429 concurrency_limit_error")
OUTAGE = Ltx2TransientError("HTTP 502 for 300s")
KEY_REFUSED = Ltx2AuthError("HTTP 401")
UNKNOWN_ID = Ltx2GenerationFailed("HTTP 404: unknown to the gateway")


# (case, wait before, answer, now) -> (next, delay, unknown polls after, last status after, news, error class)
TABLE = [
    ("queued, first answer", WAIT, QUEUED, BEFORE, Next.POLL, 10.0, 0, "queued", "is queued after 100s", None),
    ("running, no change", RUNNING_WAIT, RUNNING, BEFORE, Next.POLL, 10.0, 0, "running", None, None),
    ("running, near the deadline", RUNNING_WAIT, RUNNING, NEAR, Next.POLL, 4.0, 0, "running", None, None),
    ("running, at the deadline", RUNNING_WAIT, RUNNING, AT, Next.TIMED_OUT, 0.0, 0, "running", None, Ltx2Timeout),
    ("succeeded", RUNNING_WAIT, SUCCEEDED, BEFORE, Next.FINISHED, 0.0, 0, "succeeded", "is succeeded", None),
    ("succeeded at the deadline", RUNNING_WAIT, SUCCEEDED, AT, Next.FINISHED, 0.0, 0, "succeeded", "succeeded", None),
    ("failed", RUNNING_WAIT, FAILED, BEFORE, Next.FINISHED, 0.0, 0, "failed", "is failed", None),
    ("input rejected", WAIT, REJECTED, BEFORE, Next.FINISHED, 0.0, 0, "failed", "is failed", None),
    ("unknown word", RUNNING_WAIT, WARMING, BEFORE, Next.POLL, 10.0, 1, SHOWN_WARMING, SHOWN_WARMING, None),
    ("unknown too often", ALMOST_GIVEN_UP, WARMING, BEFORE, Next.GAVE_UP, 0.0, 30, SHOWN_WARMING, None, Ltx2Error),
    ("known resets unknown", ALMOST_GIVEN_UP, RUNNING, BEFORE, Next.POLL, 10.0, 0, "running", "is running", None),
    ("throttled poll", RUNNING_WAIT, THROTTLED, BEFORE, Next.POLL, 10.0, 0, "running", None, None),
    ("throttled at the deadline", RUNNING_WAIT, THROTTLED, AT, Next.TIMED_OUT, 0.0, 0, "running", None, Ltx2Timeout),
    ("outage past the policy", RUNNING_WAIT, OUTAGE, BEFORE, Next.GAVE_UP, 0.0, 0, "running", None, Ltx2TransientError),
    ("outage at the deadline", RUNNING_WAIT, OUTAGE, AT, Next.TIMED_OUT, 0.0, 0, "running", None, Ltx2Timeout),
    ("key refused", RUNNING_WAIT, KEY_REFUSED, BEFORE, Next.GAVE_UP, 0.0, 0, "running", None, Ltx2AuthError),
    ("unknown id", RUNNING_WAIT, UNKNOWN_ID, AT, Next.GAVE_UP, 0.0, 0, "running", None, Ltx2GenerationFailed),
]  # fmt: skip


@pytest.mark.parametrize(
    ("wait", "answer", "now", "next_", "delay", "unknown_polls", "last_status", "news", "error_class"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_after_poll(
    wait: Wait,
    answer: object,
    now: float,
    next_: Next,
    delay: float,
    unknown_polls: int,
    last_status: str,
    news: str | None,
    error_class: type[Exception] | None,
) -> None:
    step = after_poll(wait, answer, now)  # type: ignore[arg-type]

    assert step.next is next_
    assert step.delay == pytest.approx(delay)
    assert now + step.delay <= wait.deadline or step.next is not Next.POLL, "never sleeps past the deadline"
    assert (step.wait.unknown_polls, step.wait.last_status) == (unknown_polls, last_status)
    assert step.wait.job == wait.job and step.wait.deadline == wait.deadline
    if news is None:
        assert step.news is None
    else:
        assert step.news is not None and news in step.news and LEGACY_JOB.request_id in step.news
    if error_class is None:
        assert step.error is None
    else:
        assert isinstance(step.error, error_class)
    if next_ is Next.FINISHED:
        assert step.finished_status() is answer
    else:
        with pytest.raises(Ltx2Error):
            step.finished_status()


def test_after_poll_leaves_the_wait_it_was_given_unchanged() -> None:
    after_poll(RUNNING_WAIT, unknown_status(), BEFORE)

    assert RUNNING_WAIT.unknown_polls == 0 and RUNNING_WAIT.last_status == "running"


def test_a_run_of_unknown_statuses_gives_up_after_the_limit_and_names_the_request() -> None:
    wait, steps = WAIT, []
    for _ in range(MAX_UNKNOWN_POLLS):
        step = after_poll(wait, unknown_status(), BEFORE)
        steps.append(step.next)
        wait = step.wait

    assert steps == [Next.POLL] * (MAX_UNKNOWN_POLLS - 1) + [Next.GAVE_UP]
    assert f"unknown status 'WARMING_UP' {MAX_UNKNOWN_POLLS} times" in str(step.error)
    assert LEGACY_JOB.request_id in str(step.error)


def news_of(polls: list[tuple[float, JobStatus]]) -> list[str | None]:
    """The news of a run of polls (seconds after the start, answer), each step carrying the wait on."""
    wait, news = WAIT, []
    for seconds, answer in polls:
        step = after_poll(wait, answer, CLOCK_START + seconds)
        wait = step.wait
        news.append(step.news)
    return news


def test_status_news_only_when_the_status_changes() -> None:
    news = news_of([(0, QUEUED), (10, QUEUED), (20, RUNNING), (30, RUNNING), (45, SUCCEEDED)])

    assert news == [
        "LTX-2 request ltx2-v-7a3b is queued after 0s",
        None,
        "LTX-2 request ltx2-v-7a3b is running after 20s",
        None,
        "LTX-2 request ltx2-v-7a3b is succeeded after 45s",
    ]


def test_each_new_unknown_status_word_is_news() -> None:
    answers = [unknown_status("WARMING_UP"), unknown_status("WARMING_UP"), unknown_status("RENDERING"), RUNNING]
    news = news_of([(0, answer) for answer in answers])

    assert news == [
        "LTX-2 request ltx2-v-7a3b is 'WARMING_UP' after 0s",
        None,
        "LTX-2 request ltx2-v-7a3b is 'RENDERING' after 0s",
        "LTX-2 request ltx2-v-7a3b is running after 0s",
    ]


def test_a_gateway_that_only_says_unknown_words_is_given_up_within_minutes_not_at_the_timeout() -> None:
    """An unknown status counts as "running" for a bounded number of polls: at the default interval, a
    wait on a gateway that never says a known word again ends after a few minutes, long before the
    default timeout, having polled more than once."""
    timeout = 30 * 60.0  # the tasks' default
    wait = Wait(LEGACY_JOB, deadline=CLOCK_START + timeout, started=CLOCK_START)  # the default poll interval
    now, polls = CLOCK_START, 0
    step = after_poll(wait, WARMING, now)
    while step.next is Next.POLL:
        polls += 1
        now += step.delay
        step = after_poll(step.wait, WARMING, now)

    assert step.next is Next.GAVE_UP and isinstance(step.error, Ltx2Error)
    assert polls >= 1, "one unknown word is not the end of a wait"
    assert now - CLOCK_START <= 5 * 60 < timeout


def test_timeout_message_names_the_request_deadline_and_last_status() -> None:
    wait = Wait(UNIVERSAL_JOB, deadline=CLOCK_START + 90.0, started=CLOCK_START)
    step = after_poll(wait, RUNNING, CLOCK_START + 90.0)

    message = str(step.error)

    assert step.next is Next.TIMED_OUT
    assert UNIVERSAL_JOB.request_id in message
    assert "2025-06-15T15:08:10+00:00" in message  # CLOCK_START + 90 s, in UTC
    assert "last status running" in message


def test_timeout_message_before_any_poll() -> None:
    assert "last status none" in WAIT.timeout_message()


@pytest.mark.parametrize(
    ("timeout", "execution_timeout", "seconds", "limit"),
    [
        (600.0, None, 600.0, "timeout=600s"),
        (600.0, timedelta(seconds=30), 30.0, "execution_timeout=0:00:30"),
        (60.0, timedelta(minutes=5), 60.0, "timeout=60s"),
    ],
)
def test_the_deadline_is_the_earlier_limit(
    clock: list[float], timeout: float, execution_timeout: timedelta | None, seconds: float, limit: str
) -> None:
    deadline = Deadline.starting_now(timeout, execution_timeout)

    assert deadline.at == CLOCK_START + seconds
    assert deadline.limit == limit
    assert f"set by {limit}" in deadline.describe()


# ------------------------------------------------------------------------------------ pacing a batch's polls


def finish_after(pace: JobPace, request_id: str, submitted: float, duration: float) -> float:
    """Poll a job of ``duration`` s whenever ``pace`` says it is due; the time the poll that saw it done came."""
    pace.submitted(request_id, submitted)
    while True:
        [due] = [pace.due[request_id]]
        done = due >= submitted + duration
        pace.polled(request_id, due, finished=done)
        if done:
            return due


def test_the_pace_learns_when_a_batchs_jobs_end_and_polls_right_after() -> None:
    pace = JobPace(poll_interval=2.0)
    lags = [finish_after(pace, f"job-{n}", 100.0 * n, 10.01) - (100.0 * n + 10.01) for n in range(8)]
    assert lags[0] == pytest.approx(1.99), "the first job is polled every interval"
    assert lags[-1] < 0.1 and all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(lags))


def test_the_pace_costs_at_most_one_poll_more_per_job() -> None:
    learned = JobPace(poll_interval=2.0)
    polls = []
    for n, duration in enumerate((10.0, 10.0, 30.0, 4.0, 10.0)):
        learned.submitted(f"job-{n}", 0.0)
        count = 0
        while True:
            due = learned.due[f"job-{n}"]
            count += 1
            learned.polled(f"job-{n}", due, finished=due >= duration)
            if due >= duration:
                break
        polls.append(count)
    fixed = [math.ceil(duration / 2.0) for duration in (10.0, 10.0, 30.0, 4.0, 10.0)]
    assert all(count <= plain + 1 for count, plain in zip(polls, fixed, strict=True)), (polls, fixed)


def test_a_job_the_pace_did_not_see_submitted_is_due_at_once() -> None:
    pace = JobPace(poll_interval=5.0)
    assert pace.due_now(["reattached"], now=50.0) == ["reattached"]
    pace.polled("reattached", 50.0, finished=False)
    assert pace.due_now(["reattached"], now=54.0) == [] and pace.next_due() == 55.0


def test_a_wait_taken_up_after_the_submit_counts_the_jobs_age_from_the_submit() -> None:
    """A batch's first poll, or a trigger, takes up a job submitted earlier: its log says how old the job is,
    not how long this wait has run ("succeeded after 0s" for a job of 42 s)."""
    submitted_at = utc_clock(CLOCK_START - 42.0)
    wait = Wait(LEGACY_JOB, deadline=DEADLINE, poll_interval=10.0, started=started_at(submitted_at))

    step = after_poll(wait, JobStatus(JobState.SUCCEEDED, video_url="https://cdn.example/v.mp4"), CLOCK_START)

    assert step.news is not None and step.news.endswith("is succeeded after 42s"), step.news


@pytest.mark.parametrize(
    "submitted_at", [None, "", "soon", "2026-13-40T00:00:00+00:00", 12, "2999-01-01T00:00:00+00:00"]
)
def test_a_submit_time_that_cannot_be_read_or_lies_ahead_counts_from_now(submitted_at: Any) -> None:
    """A sensor may be handed any text as ``submitted_at``: the wait's age then starts now, never in the future."""
    before = time.time()
    assert before <= started_at(submitted_at) <= time.time()
