"""``@task.ltx2_video`` in-process against the simulator: its error paths, and a resume that must not call
the function again (the request it returned is read back)."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.decorators.ltx2 import ltx2_video_task, request_fields
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import Deferrals, run_deferrable
from tests.fakes import task_context

PROMPT = "the cat turns its head"


def decorated(function: Any, **arguments: Any) -> Any:
    """The operator ``@task.ltx2_video(**arguments)`` makes of ``function`` in a DAG."""
    with DAG("decorator_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        return ltx2_video_task(function, task_id="animate", poll_interval=0.1, timeout=30, **arguments)().operator


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("https://example.com/cat.jpg", r"returned 'https://example.com/cat.jpg': accepted values are a dict"),
        (None, "returned None"),
        ({"image_url": "https://example.com/cat.jpg", "prompt": PROMPT, "seed": 7}, r"unknown fields \['seed'\]"),
    ],
)
def test_a_function_that_returns_no_request_fails_naming_what_it_returned(returned: Any, message: str) -> None:
    with pytest.raises(Ltx2ValidationError, match=message):
        request_fields(returned)


def test_a_bad_field_from_the_function_fails_before_any_request(simulator: SimulatorProcess) -> None:
    op = decorated(lambda: {"image_url": f"{simulator.base_url}/files/sample.jpg", "prompt": PROMPT, "fps": 60})

    with pytest.raises(Ltx2ValidationError, match=r"fps=60"):
        op.execute(task_context())

    assert simulator.stats()["submits"] == 0


def test_a_missing_image_fails_before_any_request(simulator: SimulatorProcess) -> None:
    op = decorated(lambda: {"image_url": f"{simulator.base_url}/files/missing.jpg", "prompt": PROMPT})

    with pytest.raises(Ltx2ValidationError, match=r"image_url=.*missing\.jpg.*not found"):
        op.execute(task_context())

    assert simulator.stats()["submits"] == 0


def test_the_function_runs_once_across_a_wait_for_room_and_a_deferral(simulator: SimulatorProcess) -> None:
    calls: list[int] = []

    def animate() -> dict[str, Any]:
        calls.append(1)
        return {"image_url": f"{simulator.base_url}/files/sample.jpg", "prompt": PROMPT, "duration": 6}

    simulator.configure(faults=[{"on": "submit", "status": 429, "count": 1, "retry_after": "1"}])
    seen = Deferrals()

    result = run_deferrable(decorated(animate, deferrable=True), task_context(), seen)

    assert result["status"] == "succeeded" and result["request"]["duration"] == 6
    assert seen.triggers == ["Ltx2CapacityTrigger", "Ltx2VideoTrigger"]
    assert len(calls) == 1, "the resumed task read its request back instead of calling the function again"
    assert simulator.stats()["jobs"] == 1
