"""What every deferral promises, whichever trigger takes the wait (video, capacity, batch): no event before the
scheduler can take it, the provider's own error event for a connection gone while the task waited, and one
capacity queue per gateway, which a batch's jobs take part in."""

from __future__ import annotations

import asyncio
import importlib
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ltx2 import metrics, xcom
from airflow_provider_ltx2.api.connection import Gateway
from airflow_provider_ltx2.events import read_batch_event, read_capacity_event, read_video_event
from airflow_provider_ltx2.exceptions import Ltx2ConnectionNotFound, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.triggers import ltx2 as triggers
from airflow_provider_ltx2.triggers.ltx2 import Ltx2BatchTrigger, capacity_queue, resume_guard_seconds
from airflow_provider_ltx2.waits import CapacityWait
from tests.conftest import KEY
from tests.fakes import task_context
from tests.integration.batches.test_batch import batch, rows
from tests.integration.operators.test_throttling import fill_the_gateway, job_finished, operator

GUARD = 2.0  # [ltx2] resume_guard_seconds in these tests: longer than the waits they defer
KINDS = ("video", "capacity", "batch")
TRIGGERS = {"video": "Ltx2VideoTrigger", "capacity": "Ltx2CapacityTrigger", "batch": "Ltx2BatchTrigger"}
RESUMES = {"video": "execute_complete", "capacity": "retry_submit", "batch": "resume_batch"}


def defer(kind: str, simulator: SimulatorProcess, tmp_path: Path) -> tuple[Any, dict[str, Any], TaskDeferred]:
    """A real task deferred to the trigger of ``kind`` with a wait it could end at once (or within ~1 s)."""
    if kind == "capacity":
        fill_the_gateway(simulator, slots=1, job_seconds=0.2)  # Retry-After 1 s: room comes well before GUARD
    else:
        simulator.configure(queue_seconds=0, processing_seconds=0)
    task = batch(rows(simulator, 2), tmp_path, deferrable=True) if kind == "batch" else operator(deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    assert type(deferred.value.trigger).__name__ == TRIGGERS[kind] and deferred.value.method_name == RESUMES[kind]
    return task, context, deferred.value


def rebuilt(trigger: Any, **changed: Any) -> Any:
    """The trigger as a triggerer makes it: from its classpath and stored kwargs (with ``changed``)."""
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**{**kwargs, **changed})


def first_event(trigger: Any) -> tuple[dict[str, Any], float]:
    """The trigger's event and when it came (epoch seconds)."""

    async def first() -> tuple[dict[str, Any], float]:
        async for event in trigger.run():
            return dict(event.payload), time.time()
        raise AssertionError(f"{type(trigger).__name__} ended without an event")

    return asyncio.run(first())


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("AIRFLOW__LTX2__RESUME_GUARD_SECONDS", str(GUARD))
    return GUARD


def test_the_hold_back_is_the_heartbeat_and_a_scheduler_loop_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__LTX2__RESUME_GUARD_SECONDS")
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "4")
    assert resume_guard_seconds() == 4 + 5
    monkeypatch.setenv("AIRFLOW__LTX2__RESUME_GUARD_SECONDS", "1.5")
    assert resume_guard_seconds() == 1.5


@pytest.mark.parametrize("setting", ["-1", "soon", "nan", "86400"])
def test_a_hold_back_setting_that_could_never_work_is_refused_naming_it(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__LTX2__RESUME_GUARD_SECONDS", setting)
    with pytest.raises(Ltx2ValidationError, match=r"\[ltx2\] resume_guard_seconds=.*accepted values are seconds"):
        resume_guard_seconds()


def test_a_hold_back_far_in_the_future_is_capped(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's clock hours ahead of the triggerer's (or a stored not_before gone wrong) delays no event for hours."""
    monkeypatch.setattr(triggers, "MAX_RESUME_GUARD_SECONDS", 1.0)
    _, _, deferred = defer("video", simulator, tmp_path)
    started = time.time()

    event, came_at = first_event(rebuilt(deferred.trigger, not_before=time.time() + 3 * 3600))

    assert event["status"] == "succeeded" and came_at - started < 3


@pytest.mark.parametrize("kind", KINDS)
def test_every_trigger_holds_an_early_event_back_until_the_scheduler_can_take_it(
    kind: str, simulator: SimulatorProcess, tmp_path: Path, guard: float
) -> None:
    """Airflow 3.3's scheduler fails a task whose trigger fires before it heard that the deferring process ended
    (apache/airflow#67287): a job done at once, a retry reattaching to a finished job, room freed at once."""
    task, context, deferred = defer(kind, simulator, tmp_path)
    deferred_at = time.time()
    not_before = deferred.trigger.serialize()[1]["not_before"]
    assert not_before == pytest.approx(deferred_at + guard, abs=0.5)

    event, came_at = first_event(rebuilt(deferred.trigger))

    assert came_at >= not_before, f"the {kind} trigger's event came {not_before - came_at:.2f} s too early"
    assert event["status"] != "error", event
    ended = [job["ended"] for job in simulator.stats()["job_times"]]
    assert ended and min(ended) < deferred_at + guard - 0.5, "the wait itself was over well before the hold-back"
    # The event resumes the task as usual: it ends, or goes on to its next wait.
    try:
        getattr(task, deferred.method_name)(context, event=event)
    except TaskDeferred as next_wait:
        assert next_wait.trigger.serialize()[1]["not_before"] >= time.time() + guard - 0.5


def test_a_batch_trigger_held_back_brings_every_job_that_ended_meanwhile(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    """One resume per hold-back, not per job: a job ending during the hold-back goes with the first."""
    simulator.configure(queue_seconds=0, processing_seconds=0)
    _, _, deferred = defer("batch", simulator, tmp_path)
    kwargs = deferred.trigger.serialize()[1]
    simulator.configure(processing_seconds=1.0)
    later = Ltx2Hook().submit({"image_url": f"{simulator.base_url}/files/sample.jpg", "prompt": "a later job"})
    kwargs["batch"]["in_flight"].append(
        {"row": "later", "request_id": later.request_id, "polling_url": later.polling_url, "submitted_at": None}
        | {"fingerprint": "f"}
    )
    trigger = rebuilt(deferred.trigger, batch=kwargs["batch"], not_before=time.time() + 2.0, poll_interval=0.1)

    event, _ = first_event(trigger)

    in_flight = {flight["request_id"] for flight in kwargs["batch"]["in_flight"]}
    assert set(event["ended"]) == in_flight and len(in_flight) == 3, "the two instant jobs and the later one"


def test_a_trigger_deferred_by_an_earlier_version_has_no_hold_back(simulator: SimulatorProcess, tmp_path: Path) -> None:
    _, _, deferred = defer("video", simulator, tmp_path)
    started = time.time()

    event, came_at = first_event(rebuilt(deferred.trigger, not_before=None))

    assert event["status"] == "succeeded" and came_at - started < 1.5


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_deleted_while_deferred_fails_the_task_through_its_own_failure_handling(
    kind: str, simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, context, deferred = defer(kind, simulator, tmp_path)
    monkeypatch.delenv("AIRFLOW_CONN_LTX2_DEFAULT")  # deleted while the task waited in the triggerer
    counted: list[str] = []
    monkeypatch.setattr(metrics, "failure", counted.append)

    event, _ = first_event(rebuilt(deferred.trigger))

    assert event["status"] == "error" and event["error_class"] == "Ltx2ConnectionNotFound", event
    assert "'ltx2_default' is not defined" in event["message"] and KEY not in repr(event)
    read = {"video": read_video_event, "capacity": read_capacity_event, "batch": read_batch_event}[kind]
    with pytest.raises(Ltx2ConnectionNotFound):
        read(event)
    with pytest.raises(Ltx2ConnectionNotFound, match="nothing was sent to the gateway"):
        getattr(task, deferred.method_name)(context, event=event)
    assert counted == ["Ltx2ConnectionNotFound"], "the failure metric, by kind"
    assert "is not defined" in context["ti"].xcom[xcom.FAILURE], "the UI's failure message"


def test_a_missing_connection_is_the_providers_error_in_the_worker_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_LTX2_DEFAULT", raising=False)
    context = task_context()

    with pytest.raises(Ltx2ConnectionNotFound, match="'ltx2_default' is not defined"):
        operator().execute(context)

    assert "is not defined" in context["ti"].xcom[xcom.FAILURE]


# ------------------------------------------------------------------------------------------ one capacity queue


def batch_trigger(simulator: SimulatorProcess, tmp_path: Path, jobs: int, **kwargs: Any) -> Ltx2BatchTrigger:
    """The trigger of a deferred batch with ``jobs`` jobs in flight (each lasting what the simulator says)."""
    task = batch(rows(simulator, jobs), tmp_path, deferrable=True, max_concurrent_jobs=jobs)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(task_context())
    return rebuilt(deferred.value.trigger, **kwargs)


def test_a_batchs_finished_job_wakes_a_task_waiting_for_capacity_on_the_same_gateway(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.configure(queue_seconds=0, processing_seconds=1.0)
    trigger = batch_trigger(simulator, tmp_path, jobs=1, poll_interval=0.2)
    now = time.time()
    room = CapacityWait(deadline=now + 60, poll_interval=30, since=now - 1, throttled_at=now - 5)

    async def scenario() -> tuple[str | None, float, int]:
        queue = capacity_queue(Gateway(simulator.base_url, KEY))
        polling = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.sleep(0.3)
        running = queue.running  # the batch's job counts against the gateway while it runs
        started = time.time()
        woken_by = await queue.wait(room)  # alone, its fallback timer would be 30 s or more
        await polling
        return woken_by, time.time() - started, running

    woken_by, waited, running = asyncio.run(scenario())

    assert running == 1
    assert woken_by == "finish" and waited < 5, "woken by the batch's finished job, not by its own timer"


def test_a_batch_waiting_for_capacity_is_woken_by_a_job_finishing_on_the_same_gateway(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    fill_the_gateway(simulator, slots=1, job_seconds=30.0)  # the batch's first submit meets a 429
    task = batch(rows(simulator, 1), tmp_path, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(task_context())
    kwargs = deferred.value.trigger.serialize()[1]
    assert kwargs["capacity"] is not None and not kwargs["batch"]["in_flight"], "waiting for capacity, nothing running"
    trigger = rebuilt(deferred.value.trigger, capacity={**kwargs["capacity"], "throttled_at": time.time() - 60})

    async def scenario() -> tuple[dict[str, Any], float]:
        waiting = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.sleep(0.5)
        started = time.time()
        job_finished(Gateway(simulator.base_url, KEY))  # another task's job on the gateway, in this triggerer
        event = await asyncio.wait_for(waiting, timeout=10)
        return dict(event.payload), time.time() - started

    event, waited = asyncio.run(scenario())

    assert event["status"] == "batch" and event["woken_by"] == "finish" and waited < 2, event
