"""What differs between the Airflow versions the provider supports (2.11 and 3.x).

Run on 3.3 by ``scripts/test.sh`` and on 2.11 by ``scripts/test-airflow2.sh``; every test here holds on both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from packaging.version import Version

from airflow_provider_ltx2.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR, get_provider_info
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import SPEND_EXTRAS, airflow_env
from tests.fakes import FakeTaskInstance, RecordingLog

GOOD = {"image_url": "https://images.example.com/cat.jpg", "prompt": "the cat turns its head"}
# The connection form as Airflow holds it after loading the provider (snake_case keys on every version).
EXPECTED_FORM = {
    "hidden_fields": ["schema", "login", "port", "extra"],
    "relabeling": {"password": "Subscription key", "host": "Gateway base URL"},
    "placeholders": {"password": "Ocp-Apim-Subscription-Key value", "host": "https://gateway.pixazo.ai"},
}


@pytest.fixture
def operator_log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    log = RecordingLog()
    monkeypatch.setattr(Ltx2GenerateVideoOperator, "log", property(lambda _: log))
    return log


def airflow_2_context() -> dict[str, Any]:
    """A task context as Airflow < 3.3 builds it: no ``task_state_store``."""
    return {"ti": FakeTaskInstance()}


def operator(**kwargs: Any) -> Ltx2GenerateVideoOperator:
    arguments = {**GOOD, "task_id": "generate", "poll_interval": 0.1, "timeout": 20, "deferrable": False}
    arguments["check_image"] = False  # a made-up image URL: no network here
    return Ltx2GenerateVideoOperator(**{**arguments, **kwargs})


def airflow_gives_a_task_state_store() -> bool:
    """Whether this Airflow puts ``task_state_store`` in the task context (declared in its Context type)."""
    try:
        from airflow.sdk.definitions.context import Context
    except ImportError:  # Airflow 2: no Task SDK
        return False
    return "task_state_store" in getattr(Context, "__annotations__", {})


def test_the_task_state_store_exists_from_airflow_3_3_on() -> None:
    """The premise of the limitation below: Airflow 2.11 (and 3.0-3.2) has no task state store."""
    from_3_3_on = Version(airflow.__version__).release[:2] >= (3, 3)
    assert airflow_gives_a_task_state_store() == from_3_3_on, f"Airflow {airflow.__version__}"


def test_without_a_task_state_store_every_try_submits_again(
    simulator: SimulatorProcess, operator_log: RecordingLog
) -> None:
    """Documented limitation on Airflow < 3.3: a retry cannot find the request an earlier try paid for."""
    first = airflow_2_context()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(first)  # first try: submitted and deferred, then the try failed

    result = operator().execute(airflow_2_context())  # the retry: submits (and pays) again, then finishes

    assert result["status"] == "succeeded"
    assert result["request_id"] != first["ti"].xcom["request_id"]
    assert simulator.stats()["submits"] == 2
    assert sum(m.startswith("Submitted LTX-2 request") for m in operator_log.messages("info")) == 2
    assert not any(m.startswith("Reattaching to LTX-2 request") for m in operator_log.messages())


def test_without_a_task_state_store_the_operator_says_it_cannot_reattach(
    simulator: SimulatorProcess, operator_log: RecordingLog
) -> None:
    operator(wait_for_completion=False).execute(airflow_2_context())
    warnings = operator_log.messages("warning")
    assert any("Reattaching" in message and "unavailable" in message for message in warnings), warnings


def test_connection_form_for_airflow_2_matches_the_provider_info() -> None:
    """Airflow 2.11 calls the hook's classmethod, 3.2+ reads ``get_provider_info``: both describe one form."""
    [connection_type] = get_provider_info()["connection-types"]
    assert connection_type["ui-field-behaviour"] == UI_FIELD_BEHAVIOUR
    assert Ltx2Hook.get_ui_field_behaviour() == EXPECTED_FORM


def test_connection_form_is_valid_for_airflow_2() -> None:
    """The schema Airflow 2.11 validates the classmethod's answer against (it drops an invalid form)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema_file = Path(airflow.__file__).parent / "customized_form_field_behaviours.schema.json"
    if not schema_file.exists():
        pytest.skip(f"Airflow {airflow.__version__} ships no customized_form_field_behaviours.schema.json")
    jsonschema.validate(Ltx2Hook.get_ui_field_behaviour(), json.loads(schema_file.read_text()))


@pytest.mark.dags
@pytest.mark.slow
def test_airflow_loads_the_connection_form_and_the_extra_link(airflow_home: Path) -> None:
    """What Airflow's providers manager ends up with, on whichever Airflow runs the tests."""
    script = (
        "import json\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "manager = ProvidersManager()\n"
        "print(json.dumps({'form': manager.field_behaviours.get('ltx2'),"
        " 'links': sorted(manager.extra_links_class_names),"
        " 'fields': sorted(name for name in manager.connection_form_widgets if name.startswith('extra__ltx2__'))}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=airflow_env(airflow_home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["form"] == EXPECTED_FORM, done.stderr[-3000:]
    assert loaded["fields"] == sorted(f"extra__ltx2__{name}" for name in CONN_FIELDS), "every extra a labelled field"
    assert set(SPEND_EXTRAS) <= set(CONN_FIELDS)
    assert {"airflow_provider_ltx2.links.Ltx2VideoLink", "airflow_provider_ltx2.links.Ltx2BatchLink"} <= set(
        loaded["links"]
    )


def test_every_extra_link_of_the_provider_is_registered() -> None:
    """Airflow 2.11 drops a link its providers manager does not know (with an error in the log)."""
    from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator, Ltx2GenerateVideoOperator
    from airflow_provider_ltx2.sensors.ltx2 import Ltx2VideoSensor

    used = {
        f"{type(link).__module__}.{type(link).__qualname__}"
        for task in (Ltx2GenerateVideoOperator, Ltx2GenerateVideoBatchOperator, Ltx2VideoSensor)
        for link in task.operator_extra_links
    }
    assert used == {"airflow_provider_ltx2.links.Ltx2VideoLink", "airflow_provider_ltx2.links.Ltx2BatchLink"}
    assert used <= set(get_provider_info()["extra-links"])
