"""The fakes the tests and the benchmark share (``tests/fakes.py``) behave as the Airflow they stand in for."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest

from tests import fakes
from tests.fakes import FakeStateStore, FakeTaskInstance

# (ids of their own: a set's repr changes from one process to the next, and pytest-xdist workers must agree)
NOT_JSON = [
    pytest.param((1, 2), id="tuple"),
    pytest.param({"ids": {"a", "b"}}, id="set in a dict"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(datetime.datetime(2026, 1, 1), id="datetime"),
    pytest.param({1: "a key that is no string"}, id="int key"),
]
JSON = ["text", 3, 2.5, True, [1, "a", None], {"in_flight": [{"request_id": "r-1"}], "cursor": 2}]


@pytest.mark.parametrize("value", JSON, ids=repr)
def test_the_state_store_keeps_json_values_as_airflow_gives_them_back(value: Any) -> None:
    store = FakeStateStore()
    store.set("key", value)
    assert store.get("key") == value


@pytest.mark.parametrize("value", NOT_JSON)
def test_the_state_store_refuses_what_airflow_refuses(value: Any) -> None:
    """Airflow 3.3's accessor sends the value in a message whose field is pydantic's ``JsonValue``."""
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        FakeStateStore().set("key", value)


def test_the_state_store_refuses_none_as_airflow_does() -> None:
    with pytest.raises(ValueError, match="Cannot set value as None"):
        FakeStateStore().set("key", None)


@pytest.mark.parametrize("value", [*(pytest.param(value, id=repr(value)) for value in JSON), *NOT_JSON])
def test_the_state_store_accepts_exactly_what_airflows_message_accepts(value: Any) -> None:
    comms = pytest.importorskip("airflow.sdk.execution_time.comms", reason="the task state store is Airflow 3.3+")
    message = getattr(comms, "SetTaskStateStore", None)
    if message is None:
        pytest.skip("no task state store in this Airflow")
    try:
        message(ti_id=uuid.uuid4(), key="key", value=value, expires_at=None)
    except ValueError:
        airflow_accepts = False
    else:
        airflow_accepts = True
    try:
        FakeStateStore().set("key", value)
    except ValueError:
        fake_accepts = False
    else:
        fake_accepts = True
    assert fake_accepts == airflow_accepts


@pytest.mark.parametrize("value", [*(pytest.param(value, id=repr(value)) for value in JSON), *NOT_JSON])
def test_the_check_for_an_older_pydantic_agrees_with_pydantics_json_value(value: Any) -> None:
    pydantic = pytest.importorskip("pydantic")
    if not hasattr(pydantic, "JsonValue"):
        pytest.skip("pydantic before 2.5: the check is all there is")
    verdicts = []
    for check in (pydantic.TypeAdapter(pydantic.JsonValue).validate_python, fakes._check_json):
        try:
            check(value)
        except ValueError:
            verdicts.append("refused")
        else:
            verdicts.append("accepted")
    assert verdicts[0] == verdicts[1]


def test_a_value_changed_after_it_was_written_or_read_leaves_the_store_as_it_was() -> None:
    store, progress = FakeStateStore(), {"paid": 1, "in_flight": ["r-1"]}
    store.set("batch", progress)
    progress["in_flight"].append("r-2")
    store.get("batch")["in_flight"].append("r-3")
    assert store.get("batch") == {"paid": 1, "in_flight": ["r-1"]}


def test_a_task_instance_reads_only_its_own_xcoms() -> None:
    ti = FakeTaskInstance(task_id="generate", map_index=3)
    ti.xcom_push("request_id", "r-1")
    assert ti.xcom_pull(task_ids="generate", key="request_id", map_indexes=3) == "r-1"
    with pytest.raises(AssertionError, match="its own XComs"):
        ti.xcom_pull(task_ids="other", key="request_id", map_indexes=3)
