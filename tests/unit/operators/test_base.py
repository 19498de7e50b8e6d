"""Unit tests of ``airflow_provider_ltx2.operators``: one base for both operators, the 0.3 path, what a DAG file
pays for at parse time."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.operators import ltx2 as path_before_0_4
from airflow_provider_ltx2.operators.base import Ltx2BaseOperator
from airflow_provider_ltx2.operators.batch import Ltx2GenerateVideoBatchOperator
from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

ROWS = [{"image_url": "https://images.example/a.png", "prompt": "a slow pan"}]


def video(**kwargs: Any) -> Ltx2GenerateVideoOperator:
    return Ltx2GenerateVideoOperator(task_id="video", image_url="https://images.example/a.png", prompt="p", **kwargs)


def batch(**kwargs: Any) -> Ltx2GenerateVideoBatchOperator:
    return Ltx2GenerateVideoBatchOperator(task_id="batch", requests=ROWS, output_prefix="file:///tmp/out/", **kwargs)


def test_dag_files_of_0_3_import_both_operators_from_their_old_path() -> None:
    assert path_before_0_4.Ltx2GenerateVideoOperator is Ltx2GenerateVideoOperator
    assert path_before_0_4.Ltx2GenerateVideoBatchOperator is Ltx2GenerateVideoBatchOperator


@pytest.mark.parametrize("make", [video, batch], ids=["video", "batch"])
def test_both_operators_take_the_shared_arguments_the_same_way(make: Any) -> None:
    """The connection, the request settings, waiting and the image arguments mean the same on both."""
    task = make(
        ltx2_conn_id="ltx2_other",
        duration=6,
        fps="{{ params.fps }}",
        poll_interval=5.0,
        image_conn_id="images",
        image_url_expires_in=600,
        check_image=False,
        reuse_existing=False,
    )

    assert isinstance(task, Ltx2BaseOperator)
    assert task.hook.ltx2_conn_id == "ltx2_other"
    assert task.request_settings() == {
        "duration": 6,
        "resolution": None,
        "aspect_ratio": None,
        "fps": "{{ params.fps }}",
        "generate_audio": None,
    }
    assert (task.poll_interval, task.image_conn_id, task.image_url_expires_in) == (5.0, "images", 600)
    assert (task.check_image, task.reuse_existing) == (False, False)


def test_each_operator_keeps_its_own_timeout_default() -> None:
    assert video().timeout == defaults.TIMEOUT
    assert batch().timeout == defaults.BATCH_TIMEOUT


@pytest.mark.parametrize("make", [video, batch], ids=["video", "batch"])
@pytest.mark.parametrize(
    ("argument", "value"), [("poll_interval", 0), ("poll_interval", "10"), ("timeout", -1.0), ("timeout", True)]
)
def test_a_waiting_argument_that_could_never_work_fails_at_parse_time_naming_it(
    make: Any, argument: str, value: Any
) -> None:
    with pytest.raises(Ltx2ValidationError, match=rf"^{argument}={value!r}: accepted values are seconds > 0\."):
        make(**{argument: value})


def test_a_batchs_dry_run_is_kept_under_its_own_name() -> None:
    assert batch(dry_run=True).dry_run is True
    assert batch().dry_run is False


def test_a_dag_file_importing_the_operator_and_the_sensor_loads_no_task_time_module() -> None:
    """DAG-parse cost: the hook, the waits, the triggers, object storage and the batch are imported when a task
    runs, not each time a DAG file that uses the operator and the sensor is parsed."""
    code = (
        "import json, sys\n"
        "import airflow_provider_ltx2.operators.video, airflow_provider_ltx2.sensors.ltx2\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow_provider_ltx2'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))

    parse_time = {
        "airflow_provider_ltx2",
        "airflow_provider_ltx2.contract",
        "airflow_provider_ltx2.defaults",
        "airflow_provider_ltx2.exceptions",
        "airflow_provider_ltx2.get_provider_info",  # loaded by Airflow itself, with its configuration
        "airflow_provider_ltx2.links",
        "airflow_provider_ltx2.operators",
        "airflow_provider_ltx2.operators.base",
        "airflow_provider_ltx2.operators.video",
        "airflow_provider_ltx2.sensors",
        "airflow_provider_ltx2.sensors.ltx2",
        "airflow_provider_ltx2.tasks",
        "airflow_provider_ltx2.xcom",
    }
    assert loaded - parse_time == set()
