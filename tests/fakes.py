"""Stand-ins for the parts of Airflow a task touches, shared by the tests and the benchmark (``bench/``).

No pytest here and no fixture: ``bench`` imports this module as a plain one (``from tests.fakes import ...``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any


def _check_json(value: Any, where: str = "value") -> None:
    """What pydantic's ``JsonValue`` accepts, for a pydantic without it (before 2.5): raises ``ValueError``."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where}: {type(value).__name__} {value!r} is not a valid JSON value")


try:  # the type of the value in Airflow 3.3's SetTaskStateStore message (pydantic is Airflow's dependency)
    from pydantic import JsonValue, TypeAdapter

    _validate_json: Any = TypeAdapter(JsonValue).validate_python  # raises ValidationError, a ValueError
except ImportError:
    _validate_json = _check_json


class FakeTaskInstance:
    """Just enough of a task instance for the provider's tasks: their own XComs in a dict, and the names a
    task or trigger may log. A task reads only its own XComs (``xcom.read_own``): any other read fails."""

    dag_id = "ltx2_test"
    run_id = "manual__2026-01-01T00:00:00+00:00"
    try_number = 1

    def __init__(self, xcom: dict[str, Any] | None = None, *, task_id: str = "generate", map_index: int = -1) -> None:
        self.task_id = task_id
        self.map_index = map_index
        self.xcom: dict[str, Any] = dict(xcom or {})

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index), "a task reads only its own XComs"
        return self.xcom.get(key)


class FakeStateStore:
    """``context["task_state_store"]`` of one task instance (Airflow 3.3+), which survives the task's retries.

    Every value goes through JSON as it does through Airflow's metadata DB: ``set`` refuses ``None`` and any
    value that is not JSON (a tuple, a set, bytes, a datetime, a dict with keys other than strings) with the
    errors Airflow's ``TaskStateStoreAccessor`` raises, and keeps a copy; ``get`` returns a fresh copy, so
    neither a later change to the value written nor one to the value read reaches the store.
    ``values`` holds what is stored (plain JSON values), for tests to inspect.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")  # as Airflow's accessor says it
        # Airflow builds SetTaskStateStore(value=...) here, whose validation refuses a value that is not JSON
        # (json.dumps alone would take a tuple for a list)
        _validate_json(value)
        self.values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def clear(self) -> None:
        self.values.clear()


class RecordingLog:
    """Stands in for a task's logger (stdlib on 2.11, structlog on 3.x): keeps (level, message)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        def record(message: str, *args: Any, **kwargs: Any) -> None:
            self.records.append((level, message % args if args else message))

        return record

    def messages(self, level: str | None = None) -> list[str]:
        return [message for logged, message in self.records if level in (None, logged)]


def task_context(store: FakeStateStore | None = None, **more: Any) -> dict[str, Any]:
    """The part of a task context the provider touches: ``ti`` and ``task_state_store`` (``more`` adds to or
    replaces them, e.g. ``ti=FakeTaskInstance(task_id=...)`` or ``outlet_events=...``)."""
    return {"ti": FakeTaskInstance(), "task_state_store": FakeStateStore() if store is None else store, **more}


# A finished generation as a task holds it: the request as validated and the result dict (lineage is built from them).
FINISHED_REQUEST = {"image_url": "s3://stills/cats/cat.jpg", "prompt": "the cat turns its head", "duration": 6}
FINISHED_RESULT = {
    "request_id": "ltx2-v-1",
    "status": "succeeded",
    "video_url": "https://cdn.example.com/v/1.mp4?X-Amz-Signature=abc",
    "output_uri": "s3://videos/2026/1.mp4",
    "bytes": 1234,
    "request": FINISHED_REQUEST,
    "submitted_at": "2026-01-01T00:00:00+00:00",
    "completed_at": "2026-01-01T00:01:00+00:00",
}
