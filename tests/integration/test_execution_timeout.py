"""``execution_timeout`` while deferred, under ``airflow dags test``: Airflow does not enforce it for a
deferred task, so the trigger carries the earlier of ``timeout`` and ``execution_timeout`` as its absolute
deadline; the task fails when ``execution_timeout`` passes, saying which limit ended it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.integration.test_dags import airflow

DAG_FILE = """
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

with DAG("ltx2_execution_timeout", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url="{image_url}",
        prompt="A kite climbs over a windy beach",
        deferrable={deferrable},
        poll_interval=1,
        timeout=600,
        execution_timeout=timedelta(seconds=8),
    )
"""


@pytest.mark.dags
@pytest.mark.slow
def test_execution_timeout_ends_a_deferred_wait(
    simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path
) -> None:
    simulator.configure(outcome="never_finish")
    dags = tmp_path / "dags"
    dags.mkdir()
    image_url = f"{simulator.base_url}/files/sample.jpg"
    (dags / "ltx2_execution_timeout.py").write_text(DAG_FILE.format(image_url=image_url, deferrable=True))
    started = time.monotonic()

    done = airflow(
        airflow_home,
        "dags",
        "test",
        "ltx2_execution_timeout",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW_CONN_LTX2_DEFAULT=simulator.connection(),
    )

    output = done.stdout + done.stderr
    assert "failed" in output.lower() and simulator.stats()["jobs"] == 1, output[-4000:]
    assert "Ltx2Timeout" in output and "set by execution_timeout=0:00:08" in output, output[-4000:]
    assert time.monotonic() - started < 120, "it ended at the 8 s execution_timeout, not the 600 s timeout"
