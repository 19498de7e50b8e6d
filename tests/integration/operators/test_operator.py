"""The operator and the sensor, run in-process against the simulator (the HTTP is real, the context small)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ltx2 import links
from airflow_provider_ltx2.exceptions import (
    Ltx2GenerationFailed,
    Ltx2InputRejected,
    Ltx2Timeout,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.lifecycle import STATE_KEY, wait_in_worker
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.sensors.ltx2 import Ltx2VideoSensor
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger
from airflow_provider_ltx2.waits import Wait
from tests.conftest import KEY
from tests.fakes import FakeStateStore, task_context

GOOD = {"image_url": "https://images.example.com/cat.jpg", "prompt": "the cat turns its head"}
RESULT_KEYS = {
    *("request_id", "status", "video_url", "output_uri", "bytes", "request", "submitted_at", "completed_at"),
    "reused",
}


def context(store: FakeStateStore | None = None) -> dict[str, Any]:
    return task_context(store)


def operator(**kwargs: Any) -> Ltx2GenerateVideoOperator:
    # check_image=False: the image is a made-up URL (no network here); the check has tests of its own.
    arguments = {**GOOD, "task_id": "generate", "poll_interval": 0.1, "timeout": 20, "deferrable": False}
    arguments["check_image"] = False
    return Ltx2GenerateVideoOperator(**{**arguments, **kwargs})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_url", "ftp://images.example.com/cat.jpg"),
        ("image_url", ""),
        ("prompt", "   "),
        ("duration", 1),
        ("duration", 11),
        ("duration", "6.5"),
        ("resolution", "4k"),
        ("aspect_ratio", "4:3"),
        ("fps", 60),
        ("generate_audio", "maybe"),
    ],
)
def test_bad_input_fails_before_any_request(simulator: SimulatorProcess, field: str, value: Any) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        operator(**{field: value}).execute(context())
    assert field in str(caught.value) and repr(value) in str(caught.value)
    assert simulator.stats()["submits"] == 0 and simulator.stats()["polls"] == 0


@pytest.mark.parametrize("argument", [{"poll_interval": 0}, {"timeout": -1}])
def test_bad_waiting_arguments_fail_at_parse_time(argument: dict[str, Any]) -> None:
    with pytest.raises(Ltx2ValidationError, match=next(iter(argument))):
        operator(**argument)


@pytest.mark.parametrize("protocol", ["legacy", "universal"])
def test_generates_and_saves_the_video(simulator: SimulatorProcess, tmp_path: Path, protocol: str) -> None:
    simulator.configure(protocol=protocol)
    ctx = context()
    target = tmp_path / "v.mp4"
    result = operator(duration="6", fps=24, output_uri=f"file://{target}").execute(ctx)

    assert set(result) == RESULT_KEYS and result["status"] == "succeeded"
    assert result["request"] == {**GOOD, "duration": 6, "fps": 24}
    assert result["output_uri"] == f"file://{target}" and result["bytes"] == target.stat().st_size
    assert target.read_bytes()[4:8] == b"ftyp"
    assert ctx["ti"].xcom["request_id"] == result["request_id"]
    assert ctx["ti"].xcom["video_url"] == result["video_url"]
    assert ctx["task_state_store"].values == {}, "the state is cleared on success"
    assert KEY not in json.dumps(result) + json.dumps(ctx["ti"].xcom)
    assert simulator.stats()["submits"] == 1


@pytest.mark.parametrize("asked_of_the_task", [True, False], ids=["airflow-3", "airflow-2"])
def test_the_video_link_is_empty_until_the_video_exists(
    simulator: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, asked_of_the_task: bool
) -> None:
    """Airflow 3 asks the task that ran, which knows whether it made a video (an XCom lookup of one never made
    logs an error); Airflow 2's webserver reads the XCom."""
    ctx = context()

    def get_value(*, key: str, ti_key: Any) -> Any:
        assert not asked_of_the_task, "the link looked up an XCom"
        return ctx["ti"].xcom.get(key)

    monkeypatch.setattr(links, "LINKS_ASKED_OF_THE_TASK", asked_of_the_task)
    monkeypatch.setattr(links.XCom, "get_value", get_value)
    link, ti_key = links.Ltx2VideoLink(), object()

    refused = operator(resolution="4k")
    with pytest.raises(Ltx2ValidationError):
        refused.execute(ctx)
    assert link.get_link(refused, ti_key=ti_key) == ""
    handed_off = operator(wait_for_completion=False)
    handed_off.execute(ctx)
    assert link.get_link(handed_off, ti_key=ti_key) == ""
    made = operator()
    result = made.execute(ctx)
    assert link.get_link(made, ti_key=ti_key) == result["video_url"] != ""


def test_without_waiting_returns_the_submission(simulator: SimulatorProcess) -> None:
    result = operator(wait_for_completion=False).execute(context())
    assert result["status"] == "submitted" and result["request_id"]
    assert simulator.stats()["polls"] == 0


def test_deferrable_hands_only_safe_kwargs_to_the_trigger(simulator: SimulatorProcess) -> None:
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True, timeout=600).execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, Ltx2VideoTrigger) and deferred.value.timeout is None
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_ltx2.triggers.ltx2.Ltx2VideoTrigger"
    assert KEY not in json.dumps(kwargs)
    assert set(kwargs) == {
        *("request_id", "deadline", "polling_url", "ltx2_conn_id", "poll_interval", "submitted_at"),
        *("deadline_limit", "retry_policy", "read_timeout", "not_before"),
    }
    assert kwargs["retry_policy"] == operator().hook.retry_policy.to_dict(), "the hook's retries go to the trigger"
    assert kwargs["request_id"] == ctx["ti"].xcom["request_id"]
    assert ctx["task_state_store"].values[STATE_KEY]["request_id"] == kwargs["request_id"]


def test_a_retry_reattaches_to_the_request_already_paid_for(simulator: SimulatorProcess) -> None:
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(context(store))  # first try: submitted, then the worker died
    first_id = store.values[STATE_KEY]["request_id"]

    result = operator().execute(context(store))  # second try
    assert result["request_id"] == first_id
    assert simulator.stats()["submits"] == 1
    assert store.values == {}


def test_a_retry_after_a_failed_generation_submits_again(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="fail")
    store = FakeStateStore()
    with pytest.raises(Ltx2GenerationFailed, match="simulated failure"):
        operator().execute(context(store))
    simulator.configure(outcome="succeed")
    assert operator().execute(context(store))["status"] == "succeeded"
    assert simulator.stats()["submits"] == 2


def test_changed_parameters_are_not_reattached(simulator: SimulatorProcess) -> None:
    store = FakeStateStore()
    operator(wait_for_completion=False).execute(context(store))
    operator(prompt="something else").execute(context(store))
    assert simulator.stats()["submits"] == 2


def test_timeout_raises_ltx2_timeout(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="never_finish")
    with pytest.raises(Ltx2Timeout):
        operator(timeout=1).execute(context())


def test_execute_complete_reads_every_event_kind(simulator: SimulatorProcess, tmp_path: Path) -> None:
    op = operator(output_uri=f"file://{tmp_path}/v.mp4")
    job = op.hook.submit(op.build_request())
    video_url = wait_in_worker(op.hook, Wait(job, deadline=time.time() + 10, poll_interval=0.1)).video_url
    ok = {"status": "succeeded", **job.to_dict(), "video_url": video_url, "completed_at": "t", "submitted_at": "s"}
    result = op.execute_complete(context(), ok)
    assert result["bytes"] == (tmp_path / "v.mp4").stat().st_size and result["submitted_at"] == "s"

    with pytest.raises(Ltx2InputRejected):
        op.execute_complete(context(), {"status": "failed", **job.to_dict(), "input_rejected": True})
    with pytest.raises(Ltx2Timeout):
        op.execute_complete(context(), {"status": "timeout", **job.to_dict(), "message": "late"})
    with pytest.raises(Exception, match="Unknown status 'cancelled'"):
        op.execute_complete(context(), {"status": "cancelled", **job.to_dict()})


def test_each_task_holds_what_its_lineage_reports(simulator: SimulatorProcess) -> None:
    """``generation_facts``, as a task learns them: OpenLineage reads them after the task ran, not XCom."""
    simulator.configure(outcome="fail")
    failed = operator()
    with pytest.raises(Ltx2GenerationFailed):
        failed.execute(context())
    facts = failed.generation_facts
    assert facts.request == failed.build_request() and facts.result is None
    assert facts.request_id and facts.gateway_url == simulator.base_url

    # resumed in a new process after the trigger's failure event: the request is read back from XCom
    resumed, ctx = operator(), context()
    ctx["ti"].xcom_push(key="request", value=facts.request)
    with pytest.raises(Ltx2GenerationFailed):
        resumed.execute_complete(ctx, {"status": "failed", "request_id": facts.request_id, "message": "no"})
    assert (resumed.generation_facts.request, resumed.generation_facts.request_id) == (facts.request, facts.request_id)

    simulator.configure(outcome="succeed")
    submission = operator(wait_for_completion=False).execute(context())
    sensor = Ltx2VideoSensor(task_id="wait", request_id=submission["request_id"], poll_interval=0.1, timeout=20)
    result = sensor.execute(context())
    assert sensor.generation_facts.result == result and sensor.generation_facts.request is None
    assert (sensor.generation_facts.request_id, sensor.generation_facts.gateway_url) == (
        submission["request_id"],
        simulator.base_url,
    )


def test_sensor_pokes_until_done_and_downloads(simulator: SimulatorProcess, tmp_path: Path) -> None:
    submission = operator(wait_for_completion=False).execute(context())
    sensor = Ltx2VideoSensor(
        task_id="wait", request_id=submission, poll_interval=0.1, timeout=20, output_uri=f"file://{tmp_path}/s.mp4"
    )
    ctx = context()
    result = sensor.execute(ctx)
    assert set(result) == RESULT_KEYS and result["request"] == submission["request"]
    assert (tmp_path / "s.mp4").read_bytes()[4:8] == b"ftyp"
    assert ctx["ti"].xcom["video_url"] == result["video_url"]


def test_sensor_defers_with_the_same_trigger(simulator: SimulatorProcess) -> None:
    simulator.configure(protocol="universal")
    submission = operator(wait_for_completion=False).execute(context())
    sensor = Ltx2VideoSensor(task_id="wait", request_id=submission["request_id"], deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["request_id"] == submission["request_id"] and kwargs["polling_url"] is None
    with pytest.raises(Ltx2ValidationError, match="request_id"):
        Ltx2VideoSensor(task_id="bad", request_id=" ").execute(context())
