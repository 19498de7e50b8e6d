"""A gateway at its limits: throttled submits wait for room (in the worker, or in the triggerer when
deferrable) until the task's deadline, throttled polls slow down, and one paid job per task whatever
happens. Against the simulator with its concurrency and rate limits switched on."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ltx2.api.connection import Gateway
from airflow_provider_ltx2.api.retries import RetryPolicy
from airflow_provider_ltx2.events import read_capacity_event
from airflow_provider_ltx2.exceptions import Ltx2Throttled, Ltx2Timeout
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.lifecycle import wait_in_worker
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.triggers.ltx2 import Ltx2CapacityTrigger, Ltx2VideoTrigger, capacity_queue
from airflow_provider_ltx2.waits import CAPACITY_FALLBACK_FIRST, CapacityWait, Deadline, Wait
from tests.conftest import KEY, Deferrals, run_deferrable
from tests.fakes import RecordingLog, task_context

REQUEST = {"image_url": "https://images.example.com/cat.jpg", "prompt": "the cat turns its head"}


def operator(**kwargs: Any) -> Ltx2GenerateVideoOperator:
    arguments = {**REQUEST, "task_id": "generate", "poll_interval": 0.2, "timeout": 30, "deferrable": False}
    arguments["check_image"] = False  # a made-up image URL: no network here
    return Ltx2GenerateVideoOperator(**{**arguments, **kwargs})


def fill_the_gateway(simulator: SimulatorProcess, slots: int, job_seconds: float) -> None:
    """Limit the gateway to ``slots`` running jobs and start that many, each lasting ``job_seconds``."""
    simulator.configure(max_concurrent_jobs=slots, queue_seconds=0.0, processing_seconds=job_seconds)
    for _ in range(slots):
        Ltx2Hook().submit(REQUEST)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recording = RecordingLog()
    monkeypatch.setattr(Ltx2GenerateVideoOperator, "log", property(lambda _: recording))
    return recording


# ------------------------------------------------------------------------------------------ in the worker


@pytest.mark.slow
def test_a_full_gateway_is_waited_out_in_the_worker(simulator: SimulatorProcess, log: RecordingLog) -> None:
    fill_the_gateway(simulator, slots=1, job_seconds=2.0)
    started = time.monotonic()

    result = operator().execute(task_context())

    stats = simulator.stats()
    assert result["status"] == "succeeded"
    assert stats["jobs"] == 2 and stats["throttled"]["submit"] >= 1, "the task met the limit and got in after"
    assert time.monotonic() - started >= 1.0, "it got in only once the running job had ended"
    [waiting] = [line for line in log.messages("info") if "waiting for capacity" in line]
    assert "gateway at capacity (429 concurrency_limit_error, Retry-After" in waiting and "deadline" in waiting
    assert any(line.startswith("Got into the LTX-2 gateway after") for line in log.messages("info"))
    assert not log.messages("warning"), "waiting for capacity is expected, not a warning per attempt"


def test_no_room_before_the_deadline_fails_with_nothing_paid(simulator: SimulatorProcess) -> None:
    fill_the_gateway(simulator, slots=1, job_seconds=60.0)

    late = r"no capacity for this task before its deadline .*set by timeout=2s.*nothing"
    with pytest.raises(Ltx2Timeout, match=late):
        operator(timeout=2).execute(task_context())

    assert simulator.stats()["jobs"] == 1, "only the job that filled the gateway"


def test_execution_timeout_shorter_than_timeout_sets_the_deadline(simulator: SimulatorProcess) -> None:
    fill_the_gateway(simulator, slots=1, job_seconds=60.0)
    started = time.monotonic()

    with pytest.raises(Ltx2Timeout, match=r"set by execution_timeout=0:00:02"):
        operator(timeout=600, execution_timeout=timedelta(seconds=2)).execute(task_context())

    assert time.monotonic() - started < 6


# ------------------------------------------------------------------------------------------ deferred


@pytest.mark.slow
def test_a_deferrable_task_waits_for_room_in_the_triggerer(simulator: SimulatorProcess) -> None:
    fill_the_gateway(simulator, slots=1, job_seconds=1.5)
    seen = Deferrals()

    result = run_deferrable(operator(deferrable=True), task_context(), seen)

    assert result["status"] == "succeeded" and simulator.stats()["jobs"] == 2
    assert seen.triggers[0] == "Ltx2CapacityTrigger" and seen.triggers[-1] == "Ltx2VideoTrigger"
    assert all(event["status"] == "capacity" for event in seen.events[:-1])


def test_capacity_trigger_kwargs_are_plain_json_without_secrets(simulator: SimulatorProcess) -> None:
    room = CapacityWait.for_deadline(Deadline.starting_now(60), poll_interval=5)
    room.throttled(Ltx2Throttled("429", reason="429 concurrency_limit_error", retry_after=3), RecordingLog())
    classpath, kwargs = Ltx2CapacityTrigger(room.to_dict(), "ltx2_default").serialize()

    assert classpath == "airflow_provider_ltx2.triggers.ltx2.Ltx2CapacityTrigger"
    assert Ltx2CapacityTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)
    assert KEY not in json.dumps(kwargs) and kwargs["capacity"]["deadline"] == room.deadline


@pytest.mark.slow
def test_deferred_no_room_before_execution_timeout_is_a_timeout_event(simulator: SimulatorProcess) -> None:
    simulator.configure(faults=[{"on": "submit", "status": 429, "count": 1000, "retry_after": "1"}])
    seen = Deferrals()

    with pytest.raises(Ltx2Timeout, match=r"no capacity .*set by execution_timeout"):
        run_deferrable(operator(deferrable=True, execution_timeout=timedelta(seconds=4)), task_context(), seen)

    assert seen.triggers and set(seen.triggers) == {"Ltx2CapacityTrigger"}
    assert simulator.stats()["jobs"] == 0 and simulator.stats()["submits"] >= 2, "tried again, never paid"


def test_a_retry_after_past_the_deadline_fails_at_once(simulator: SimulatorProcess) -> None:
    fill_the_gateway(simulator, slots=1, job_seconds=60.0)  # Retry-After: 60 s
    started = time.monotonic()

    with pytest.raises(Ltx2Timeout, match="no capacity"):
        run_deferrable(operator(deferrable=True, timeout=5), task_context())

    assert time.monotonic() - started < 3, "no point waiting for a slot the gateway says comes too late"


def test_a_task_woken_for_capacity_after_its_deadline_pays_nothing(simulator: SimulatorProcess) -> None:
    """Room came just before the deadline, the task resumed just after: the submit is not sent, though the
    gateway would take it now."""
    fill_the_gateway(simulator, slots=1, job_seconds=1.0)
    op, ctx = operator(deferrable=True, timeout=600), task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    room = {**deferred.value.trigger.serialize()[1]["capacity"], "deadline": time.time() + 1.0}
    room["throttled_at"] = time.time() - 100  # its Retry-After has passed

    async def woken() -> dict[str, Any]:
        waiting = asyncio.ensure_future(anext(aiter(Ltx2CapacityTrigger(room).run())))
        await asyncio.sleep(0.2)
        job_finished(Gateway(simulator.base_url, KEY))
        return dict((await waiting).payload)

    event = asyncio.run(woken())
    assert event["woken_by"] == "finish"
    time.sleep(max(0.0, room["deadline"] - time.time()) + 0.1)
    with pytest.raises(Ltx2Timeout, match="no capacity for this task before its deadline"):
        op.retry_submit(ctx, event)
    assert simulator.stats()["jobs"] == 1, "only the job that filled the gateway: nothing paid after the deadline"
    assert simulator.stats()["submits"] == 2, "and nothing sent: the one 429 that deferred it"


def test_deferred_video_wait_ends_at_execution_timeout(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="never_finish")
    op = operator(deferrable=True, timeout=600, execution_timeout=timedelta(seconds=2))

    with pytest.raises(Ltx2Timeout, match=r"not finished by its deadline .*set by execution_timeout=0:00:02"):
        run_deferrable(op, task_context())


# ------------------------------------------------------------------------------------------ wake one


def job_finished(gateway: Gateway) -> None:
    """A job of ``gateway`` that a trigger polled in this event loop finished."""
    with capacity_queue(gateway).running_jobs(1) as running:
        running.ended(1)


def waiting_rooms(count: int, retry_after: float = 0.0) -> list[dict[str, Any]]:
    """``count`` waits for room, the first one the longest-waiting; their Retry-After has passed."""
    rooms = []
    for index in range(count):
        room = CapacityWait.for_deadline(Deadline.starting_now(60), poll_interval=1)
        room.throttled(Ltx2Throttled("429", retry_after=retry_after), RecordingLog())
        room.since = time.time() - 100 + index  # queue order: index 0 waited longest
        rooms.append(room.to_dict())
    return rooms


@pytest.mark.slow
def test_a_finished_job_wakes_the_longest_waiting_task_only(simulator: SimulatorProcess) -> None:
    gateway = Gateway(simulator.base_url, KEY)

    async def scenario() -> list[tuple[int, str]]:
        rooms = waiting_rooms(3, retry_after=10.0)
        for room in rooms:
            room["throttled_at"] -= 20  # the Retry-After has passed; the head's own timer is ~10 s away
        runs = [asyncio.ensure_future(anext(aiter(Ltx2CapacityTrigger(room).run()))) for room in reversed(rooms)]
        runs.reverse()  # runs[i] waits for rooms[i]; they joined the queue in the opposite order
        await asyncio.sleep(2.0)  # all three are waiting (each looked its connection up first)
        job_finished(gateway)
        done, pending = await asyncio.wait(runs, timeout=3.0)
        for run in pending:
            run.cancel()
        return [(runs.index(run), run.result().payload["woken_by"]) for run in done]

    assert asyncio.run(scenario()) == [(0, "finish")], "one freed slot, one resume: the task that waited longest"


def test_a_wake_never_comes_before_the_gateways_retry_after(simulator: SimulatorProcess) -> None:
    gateway = Gateway(simulator.base_url, KEY)

    async def scenario() -> float:
        [room] = waiting_rooms(1, retry_after=1.5)
        run = asyncio.ensure_future(anext(aiter(Ltx2CapacityTrigger(room).run())))
        await asyncio.sleep(0.1)
        job_finished(gateway)
        event = await asyncio.wait_for(run, timeout=5)
        return time.time() - CapacityWait.from_dict(event.payload["capacity"]).throttled_at  # type: ignore[operator]

    assert asyncio.run(scenario()) >= 1.5


# ------------------------------------------------------------------------------------------ decisions


def test_worker_delay_honours_retry_after_with_jitter_upwards() -> None:
    room = CapacityWait.for_deadline(Deadline.starting_now(600), poll_interval=10)
    room.throttled(Ltx2Throttled("429", retry_after=3.0), RecordingLog())
    delays = {round(room.worker_delay(), 3) for _ in range(50)}

    assert min(delays) >= 3.0 and max(delays) <= 3.6 and len(delays) > 10, "never sooner, spread out"


def test_worker_delay_without_retry_after_backs_off_up_to_one_poll_interval() -> None:
    room = CapacityWait.for_deadline(Deadline.starting_now(600), poll_interval=5)
    delays = []
    for _ in range(8):
        room.throttled(Ltx2Throttled("429"), RecordingLog())
        delays.append(room.worker_delay())

    assert all(1.0 <= delay <= 5.0 for delay in delays), "no hot loop, never idle past a poll interval"
    assert delays[-1] >= 2.5 > delays[0] - 0.01, "it grows from a second to the poll interval"


def test_fallback_timer_grows_and_is_never_shorter_than_retry_after() -> None:
    room = CapacityWait.for_deadline(Deadline.starting_now(3600), poll_interval=5)
    room.throttled(Ltx2Throttled("429", retry_after=40.0), RecordingLog())
    first = room.fallback_delay(head=False)
    room = read_capacity_event({"status": "room", "woken_by": "timer", "room": room.to_dict()})
    second = room.fallback_delay(head=False)

    assert first >= CAPACITY_FALLBACK_FIRST and first >= 39.9, "at least the Retry-After"
    assert second >= 2 * CAPACITY_FALLBACK_FIRST, "a timer wake that found no room doubles the next wait"
    assert 39.9 <= room.fallback_delay(head=True) <= 2 * 40 * 1.2 + 0.1, "the head watches the Retry-After"


def test_progress_is_logged_at_most_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    log = RecordingLog()
    room = CapacityWait.for_deadline(Deadline.starting_now(3600), poll_interval=5)
    for _ in range(40):  # 40 attempts, 5 s apart: 200 s
        room.throttled(Ltx2Throttled("429", reason="429 rate_limit_error", retry_after=5), log)
        now[0] += 5

    lines = log.messages("info")
    assert len(lines) == 4, lines  # the start, then after 60, 120 and 180 s
    assert "Still waiting for capacity at the LTX-2 gateway: 60 s waited, 13 attempts" in lines[1]


# ------------------------------------------------------------------------------------------ polls


@pytest.mark.slow
def test_throttled_polls_slow_down_past_the_outage_budget_and_still_deliver(simulator: SimulatorProcess) -> None:
    """A 429 on a poll is the gateway asking to slow down: it never uses up the budget for outages."""
    simulator.configure(queue_seconds=0.2, processing_seconds=0.3)
    op = operator(poll_interval=0.1)
    op.hook = Ltx2Hook(retry_policy=RetryPolicy(poll_outage_seconds=0.5, base_delay=0.05, max_delay=0.3))
    job = op.hook.submit(op.build_request())
    simulator.configure(faults=[{"on": "poll", "status": 429, "count": 12, "retry_after": "0.2"}])
    started = time.monotonic()

    status = wait_in_worker(op.hook, Wait(job, deadline=time.time() + 30, poll_interval=0.1))

    assert status.video_url and time.monotonic() - started >= 12 * 0.2, "12 throttled polls waited out"
    assert simulator.stats()["jobs"] == 1


@pytest.mark.parametrize("deferred", [False, True])
def test_a_retry_after_past_the_deadline_on_polls_is_waited_out_not_hammered(
    simulator: SimulatorProcess, deferred: bool
) -> None:
    """The gateway asks polls to wait 60 s with 2 s left: the wait ends at its deadline, polling calmly."""
    hook = Ltx2Hook()
    job = hook.submit(REQUEST)
    simulator.configure(faults=[{"on": "poll", "status": 429, "count": 1000, "retry_after": "60"}])
    wait = Wait(job, deadline=time.time() + 2.0, poll_interval=0.5)
    polls_before = simulator.stats()["polls"]

    if deferred:
        trigger = Ltx2VideoTrigger.for_wait(wait, hook, submitted_at=None)
        event = asyncio.run(anext(aiter(trigger.run()))).payload
        assert event["status"] == "timeout"
    else:
        with pytest.raises(Ltx2Timeout):
            wait_in_worker(hook, wait)

    assert simulator.stats()["polls"] - polls_before <= 6, "one poll per poll_interval at most, not a hot loop"
