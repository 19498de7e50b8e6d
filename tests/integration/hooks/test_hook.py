"""The hook against the simulator over loopback: both protocols, retries, errors, downloads, the key."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from airflow_provider_ltx2.api.jobs import Job, JobState
from airflow_provider_ltx2.api.retries import RetryPolicy
from airflow_provider_ltx2.delivery import save_video
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2SubmitUnconfirmed,
    Ltx2Throttled,
    Ltx2Timeout,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.lifecycle import wait_in_worker
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.waits import Wait
from tests.conftest import KEY

REQUEST = {"image_url": "https://images.example.com/cat.jpg", "prompt": "the cat turns its head", "duration": 6}
FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.3)


def hook(read_timeout: float = 5.0) -> Ltx2Hook:
    return Ltx2Hook(retry_policy=FAST_RETRIES, read_timeout=read_timeout)


def wait_until_done(ltx2: Ltx2Hook, job: Job, seconds: float = 10.0) -> Wait:
    wait = Wait(job, deadline=time.time() + seconds, poll_interval=0.1)
    wait_in_worker(ltx2, wait)
    return wait


@pytest.mark.parametrize("protocol", ["legacy", "universal"])
def test_submit_poll_and_download_both_protocols(simulator: SimulatorProcess, protocol: str, tmp_path: Path) -> None:
    simulator.configure(protocol=protocol)
    ltx2 = hook()
    job = ltx2.submit(REQUEST)
    assert (job.polling_url is not None) == (protocol == "universal")
    status = wait_in_worker(ltx2, Wait(job, deadline=time.time() + 10, poll_interval=0.1))
    assert status.state is JobState.SUCCEEDED
    assert status.video_url and status.video_url.endswith(f"{job.request_id}.mp4")

    target = tmp_path / "out" / "video.mp4"
    size = save_video(ltx2, status.video_url, f"file://{target}")[0]
    data = target.read_bytes()
    assert size == len(data) > 1000 and data[4:8] == b"ftyp"
    assert list(target.parent.iterdir()) == [target], "no temporary file is left beside the video"
    stats = simulator.stats()
    assert stats["submits"] == 1 and stats["polls"] >= 2 and stats["downloads"] == 1
    assert stats["requests"] == [REQUEST], "the gateway received exactly the validated body"


def test_hostile_prompt_reaches_the_gateway_intact(simulator: SimulatorProcess) -> None:
    prompt = 'He said "stop"\n\tthen \u00e9t\u00e9 \U0001f3ac \\ {braces} ' + "x" * 10_000
    hook().submit({**REQUEST, "prompt": prompt})
    assert simulator.stats()["requests"][0]["prompt"] == prompt


def test_wrong_key_is_an_auth_error_with_the_gateways_message(simulator: SimulatorProcess, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_DEFAULT",
        json.dumps({"conn_type": "ltx2", "host": simulator.base_url, "password": "wrong-key"}),
    )
    with pytest.raises(Ltx2AuthError, match="invalid subscription key") as caught:
        hook().submit(REQUEST)
    assert "wrong-key" not in str(caught.value)
    assert simulator.stats()["submits"] == 1, "a 401 is not retried"


def test_gateway_validation_error_is_reported_not_retried(simulator: SimulatorProcess) -> None:
    with pytest.raises(Ltx2ValidationError, match="fps"):
        hook().submit({**REQUEST, "fps": 60})
    assert simulator.stats()["submits"] == 1


@pytest.mark.parametrize(
    ("fault", "submits"),
    [
        ({"status": 504, "count": 2}, 3),
        ({"status": 503, "count": 2}, 3),
        ({"status": 502, "count": 1, "body": "html"}, 2),
    ],
)
def test_submit_retries_only_where_no_job_was_created(simulator: SimulatorProcess, fault: dict, submits: int) -> None:
    simulator.configure(faults=[{"on": "submit", **fault}])
    job = hook().submit(REQUEST)
    stats = simulator.stats()
    assert job.request_id and stats["submits"] == submits and stats["jobs"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "count": 1},
        {"status": 200, "count": 1, "drop_connection": True},
    ],
)
def test_submit_is_not_repeated_when_the_gateway_may_have_charged(simulator: SimulatorProcess, fault: dict) -> None:
    simulator.configure(faults=[{"on": "submit", **fault}])
    with pytest.raises(Ltx2SubmitUnconfirmed, match="may have accepted"):
        hook().submit(REQUEST)
    assert simulator.stats()["submits"] == 1


def test_submit_read_timeout_is_not_repeated(simulator: SimulatorProcess) -> None:
    simulator.configure(response_delay_seconds=1.0)
    with pytest.raises(Ltx2SubmitUnconfirmed, match="may have accepted"):
        hook(read_timeout=0.3).submit(REQUEST)
    assert simulator.stats()["submits"] == 1


def test_retry_after_is_honoured(simulator: SimulatorProcess) -> None:
    simulator.configure(faults=[{"on": "submit", "status": 502, "count": 1, "retry_after": "1"}])
    started = time.monotonic()
    Ltx2Hook(retry_policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=5)).submit(REQUEST)
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("fault", [{"status": 429, "retry_after": "4"}, {"status": 503, "retry_after": "4"}])
def test_a_throttled_submit_is_handed_to_the_task_at_once(simulator: SimulatorProcess, fault: dict) -> None:
    """The hook does not spend the task's time on it: the task waits for room (worker or triggerer)."""
    simulator.configure(faults=[{"on": "submit", "count": 10, **fault}])
    with pytest.raises(Ltx2Throttled) as raised:
        hook().submit(REQUEST)
    assert raised.value.retry_after == 4.0 and raised.value.reason == str(fault["status"])
    assert simulator.stats()["submits"] == 1 and simulator.stats()["jobs"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502, "count": 3, "body": "html"},
        {"status": 503, "count": 3, "retry_after": "0"},
        {"status": 200, "count": 2, "body": "malformed"},
        {"status": 500, "count": 2, "drop_connection": True},
    ],
)
def test_transient_poll_errors_are_tolerated(simulator: SimulatorProcess, fault: dict) -> None:
    ltx2 = hook()
    job = ltx2.submit(REQUEST)
    simulator.configure(faults=[{"on": "poll", **fault}])
    wait_until_done(ltx2, job)
    assert simulator.stats()["submits"] == 1


def test_failed_generation_carries_the_gateways_error(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="fail")
    ltx2 = hook()
    status = wait_in_worker(ltx2, Wait(ltx2.submit(REQUEST), deadline=time.time() + 10, poll_interval=0.1))
    assert status.state is JobState.FAILED and "simulated failure" in (status.error or "")


def test_deadline_ends_the_wait(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="never_finish")
    ltx2 = hook()
    started = time.monotonic()
    with pytest.raises(Ltx2Timeout, match="deadline"):
        wait_in_worker(ltx2, Wait(ltx2.submit(REQUEST), deadline=time.time() + 1.0, poll_interval=0.2))
    assert time.monotonic() - started < 3


def test_unknown_request_is_a_generation_failure(simulator: SimulatorProcess) -> None:
    with pytest.raises(Ltx2GenerationFailed, match="404"):
        hook().get_status(Job("ltx2-v-does-not-exist"))


def test_connection_refused_is_transient(simulator: SimulatorProcess, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_DEFAULT", json.dumps({"conn_type": "ltx2", "host": "http://127.0.0.1:9", "password": KEY})
    )
    with pytest.raises(Ltx2TransientError, match="Could not reach"):
        hook().submit(REQUEST)


def test_test_connection_tells_a_good_key_from_a_bad_one(simulator: SimulatorProcess, monkeypatch) -> None:
    ok, message = Ltx2Hook().test_connection()
    assert ok and simulator.base_url in message
    assert simulator.stats()["submits"] == 0, "checking the key costs nothing"
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_DEFAULT", json.dumps({"conn_type": "ltx2", "host": simulator.base_url, "password": "bad"})
    )
    ok, message = Ltx2Hook().test_connection()
    assert not ok and "subscription key" in message


def test_test_connection_checks_the_spend_extras(simulator: SimulatorProcess, monkeypatch) -> None:
    connection = json.loads(simulator.connection())
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", json.dumps({**connection, "extra": {"daily_budget_usd": "5"}}))
    ok, message = Ltx2Hook().test_connection()
    assert not ok and "daily_budget_usd=5 without spend_ledger_uri" in message
    extra = {"daily_budget_usd": "5", "spend_ledger_uri": "s3://books/ltx2-spend"}
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", json.dumps({**connection, "extra": extra}))
    ok, message = Ltx2Hook().test_connection()
    assert ok and "Spend ledger: s3://books/ltx2-spend." in message


def test_download_of_something_else_than_an_mp4_leaves_nothing(simulator: SimulatorProcess, tmp_path: Path) -> None:
    ltx2 = hook()
    status = wait_in_worker(ltx2, Wait(ltx2.submit(REQUEST), deadline=time.time() + 10, poll_interval=0.1))
    simulator.configure(faults=[{"on": "download", "status": 200, "body": "html"}])
    target = tmp_path / "video.mp4"
    with pytest.raises(Ltx2Error, match="not an MP4"):
        save_video(ltx2, str(status.video_url), f"file://{target}")
    assert list(tmp_path.iterdir()) == []


def test_failed_download_keeps_an_earlier_file(simulator: SimulatorProcess, tmp_path: Path) -> None:
    ltx2 = hook()
    status = wait_in_worker(ltx2, Wait(ltx2.submit(REQUEST), deadline=time.time() + 10, poll_interval=0.1))
    target = tmp_path / "video.mp4"
    target.write_bytes(b"earlier run")
    simulator.configure(faults=[{"on": "download", "status": 503}])
    with pytest.raises(Ltx2Error):
        save_video(ltx2, str(status.video_url), f"file://{target}")
    assert target.read_bytes() == b"earlier run" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("protocol", ["legacy", "universal"])
def test_async_status_matches_the_sync_one(simulator: SimulatorProcess, protocol: str) -> None:
    simulator.configure(protocol=protocol, queue_seconds=0, processing_seconds=0)
    ltx2 = hook()
    job = ltx2.submit(REQUEST)
    time.sleep(0.1)

    async def poll() -> object:
        async with ltx2.aconnect():
            return await ltx2.aget_status(job)

    assert asyncio.run(poll()) == ltx2.get_status(job)


def test_sessions_of_one_event_loop_share_one_connection_pool_closed_with_its_last_user(
    simulator: SimulatorProcess,
) -> None:
    one, two = hook(), hook()

    async def open_two() -> None:
        async with one.aconnect(), two.aconnect():
            first, second = one._connected.session, two._connected.session
            assert first is not second and first.connector is second.connector
            pool = first.connector
            assert pool is not None and not pool.closed
        assert pool.closed

    asyncio.run(open_two())


def test_async_calls_outside_aconnect_are_refused() -> None:
    with pytest.raises(RuntimeError, match="aconnect"):
        asyncio.run(Ltx2Hook().aget_status(Job("x")))


def test_a_download_clears_what_a_killed_try_left_behind(simulator: SimulatorProcess, tmp_path: Path) -> None:
    """A try killed mid-download (SIGKILL) cannot delete its partial file: the retry's download does."""
    ltx2 = hook()
    status = wait_in_worker(ltx2, Wait(ltx2.submit(REQUEST), deadline=time.time() + 10, poll_interval=0.1))
    target = tmp_path / "video.mp4"
    (tmp_path / ".video.mp4.0123456789ab.part").write_bytes(b"the killed try's first megabyte")
    (tmp_path / ".other.mp4.0123456789ab.part").write_bytes(b"another video's download: not ours")

    save_video(ltx2, str(status.video_url), f"file://{target}")[0]

    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.mp4.0123456789ab.part", "video.mp4"]


def test_triggers_of_one_event_loop_share_a_connection_lookup(
    simulator: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mapped batch starts hundreds of triggers at once: one lookup serves them for a short while."""

    async def two_lookups() -> tuple[str, str]:
        first = await Ltx2Hook().agateway()
        monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", simulator.connection().replace(KEY, "rotated-key"))
        return first.key, (await Ltx2Hook().agateway()).key

    assert asyncio.run(two_lookups()) == (KEY, KEY), "the second trigger reused the first one's lookup"
    assert asyncio.run(Ltx2Hook().agateway()).key == "rotated-key", "another loop (triggerer) looks it up anew"
