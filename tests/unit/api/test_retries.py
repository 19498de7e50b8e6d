"""Unit tests of ``api.retries``: which outcomes are retried, the backoff, and when attempts stop."""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ltx2.api.jobs import parse_status
from airflow_provider_ltx2.api.replies import Reply, TransportFailure
from airflow_provider_ltx2.api.retries import Attempts, RetryPolicy
from airflow_provider_ltx2.exceptions import Ltx2SubmitUnconfirmed, Ltx2TransientError
from tests.conftest import APIM_401, reply

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
# Status polls: the outage budget
# ==================================================================================================


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
