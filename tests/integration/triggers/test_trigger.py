"""The trigger: serialisation, and its run against the simulator the way the triggerer runs it."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_provider_ltx2 import events, waits
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.triggers.ltx2 import Ltx2CapacityTrigger, Ltx2VideoTrigger
from tests.conftest import KEY

REQUEST = {"image_url": "https://images.example.com/cat.jpg", "prompt": "waves roll in"}


def run(trigger: Ltx2VideoTrigger) -> list[dict[str, Any]]:
    """All events the trigger yields (it must yield exactly one, then return)."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def submit_trigger(deadline_in: float = 20.0, **kwargs: Any) -> Ltx2VideoTrigger:
    job = Ltx2Hook().submit(REQUEST)
    return Ltx2VideoTrigger(
        request_id=job.request_id,
        polling_url=job.polling_url,
        deadline=time.time() + deadline_in,
        poll_interval=0.1,
        submitted_at="2026-01-01T00:00:00+00:00",
        **kwargs,
    )


def test_serialize_round_trips_and_holds_no_secret() -> None:
    trigger = Ltx2VideoTrigger(
        request_id="ltx2-v-1", deadline=1_900_000_000.5, polling_url="https://gw/v2/requests/status/x"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_ltx2.triggers.ltx2.Ltx2VideoTrigger"
    json.dumps(kwargs)  # stored as plain JSON in the trigger table
    assert Ltx2VideoTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs["deadline"] == 1_900_000_000.5, "the deadline is absolute: a restarted triggerer keeps it"


@pytest.mark.parametrize("protocol", ["legacy", "universal"])
def test_success_event(simulator: SimulatorProcess, protocol: str) -> None:
    simulator.configure(protocol=protocol)
    trigger = submit_trigger()
    [event] = run(trigger)
    assert event["status"] == "succeeded" and event["request_id"] == trigger.request_id
    assert event["video_url"].endswith(".mp4") and event["submitted_at"] == "2026-01-01T00:00:00+00:00"
    assert KEY not in json.dumps(event)
    delivered = events.read_video_event(event)
    assert delivered.video_url == event["video_url"]


@pytest.mark.parametrize(("outcome", "raw"), [("fail", "FAILED"), ("error", "ERROR")])
def test_failure_event(simulator: SimulatorProcess, outcome: str, raw: str) -> None:
    simulator.configure(outcome=outcome, protocol="universal")
    [event] = run(submit_trigger())
    assert event["status"] == "failed" and event["raw_status"] == raw and event["message"]


def test_timeout_event_at_the_absolute_deadline(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="never_finish")
    trigger = submit_trigger(deadline_in=1.0)
    started = time.monotonic()
    [event] = run(trigger)
    assert event["status"] == "timeout" and time.monotonic() - started < 2.5


def test_restarted_trigger_keeps_the_original_deadline(simulator: SimulatorProcess) -> None:
    simulator.configure(outcome="never_finish")
    trigger = submit_trigger(deadline_in=0.8)
    time.sleep(1.0)  # the triggerer was down past the deadline
    _, kwargs = trigger.serialize()
    started = time.monotonic()
    [event] = run(Ltx2VideoTrigger(**kwargs))
    assert event["status"] == "timeout" and time.monotonic() - started < 0.5


def test_auth_error_event_names_the_class_and_hides_the_key(simulator: SimulatorProcess, monkeypatch) -> None:
    trigger = submit_trigger()
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_DEFAULT",
        json.dumps({"conn_type": "ltx2", "host": simulator.base_url, "password": "revoked-key"}),
    )
    [event] = run(trigger)
    assert event["status"] == "error" and event["error_class"] == "Ltx2AuthError"
    assert "revoked-key" not in json.dumps(event)


def test_transient_errors_while_polling_are_tolerated(simulator: SimulatorProcess) -> None:
    trigger = submit_trigger()
    simulator.configure(faults=[{"on": "poll", "status": 502, "count": 2, "body": "html"}])
    [event] = run(trigger)
    assert event["status"] == "succeeded"


def test_unknown_status_is_tolerated_for_a_bounded_number_of_polls(simulator: SimulatorProcess, monkeypatch) -> None:
    monkeypatch.setattr(waits, "MAX_UNKNOWN_POLLS", 3)
    simulator.configure(outcome="unknown_status", queue_seconds=0)
    [event] = run(submit_trigger())
    assert event["status"] == "error" and "WIBBLING" in event["message"]
    assert simulator.stats()["polls"] == 3


def test_unknown_request_is_an_error_event(simulator: SimulatorProcess) -> None:
    [event] = run(Ltx2VideoTrigger(request_id="ltx2-v-missing", deadline=time.time() + 5, poll_interval=0.1))
    assert event["status"] == "error" and "404" in event["message"]


# Kwargs exactly as version 0.2 serialised them: deferred tasks in flight during an upgrade are stored in the
# metadata DB by classpath and these kwargs, and a triggerer running the new version must rebuild them.
STORED_BY_0_2 = {
    "airflow_provider_ltx2.triggers.ltx2.Ltx2VideoTrigger": {
        "request_id": "ltx-2-video-api-581_019d",
        "deadline": 1_750_000_600.0,
        "polling_url": "https://gateway.pixazo.ai/v2/requests/status/ltx-2-video-api-581_019d",
        "ltx2_conn_id": "ltx2_default",
        "poll_interval": 10.0,
        "submitted_at": "2025-06-15T15:00:00+00:00",
        "deadline_limit": "execution_timeout=0:10:00",
        "retry_policy": {"max_attempts": 5, "poll_outage_seconds": 300.0, "base_delay": 1.0, "max_delay": 60.0},
        "read_timeout": 60.0,
    },
    "airflow_provider_ltx2.triggers.ltx2.Ltx2CapacityTrigger": {
        "room": {
            "deadline": 1_750_000_600.0,
            "limit": "timeout=600s",
            "poll_interval": 10.0,
            "since": 1_750_000_010.0,
            "attempts": 3,
            "throttled_at": 1_750_000_030.0,
            "retry_after": 5.0,
            "reason": "429 concurrency_limit_error",
            "logged_at": 1_750_000_010.0,
            "fallback_wakes": 1,
        },
        "ltx2_conn_id": "ltx2_default",
    },
}


@pytest.mark.parametrize("classpath", sorted(STORED_BY_0_2))
def test_a_trigger_stored_by_0_2_is_rebuilt_from_its_classpath_and_kwargs(classpath: str) -> None:
    module_name, class_name = classpath.rsplit(".", 1)
    trigger_class = getattr(importlib.import_module(module_name), class_name)  # as the triggerer imports it

    trigger = trigger_class(**STORED_BY_0_2[classpath])

    # The same kwargs back (0.2's ``room`` under its 0.4 name, ``capacity``), and no hold-back of its event (0.2
    # deferred without one: see resume_guard_seconds).
    stored = dict(STORED_BY_0_2[classpath])
    if "room" in stored:
        stored["capacity"] = stored.pop("room")
    assert trigger.serialize() == (classpath, {**stored, "not_before": None})


def test_a_capacity_trigger_stored_without_its_wait_fails_naming_the_kwarg() -> None:
    """Kwargs with neither ``capacity`` nor 0.3's ``room`` (a hand-edited or truncated row) fail clearly, not with
    a ``TypeError`` deep in the triggerer."""
    with pytest.raises(Ltx2ValidationError, match=r"needs its capacity wait \(kwarg capacity\)"):
        Ltx2CapacityTrigger(ltx2_conn_id="ltx2_default", not_before=None)
