"""A deferrable generation whose execution_timeout (60 s) is shorter than its timeout (15 min): the
trigger's absolute deadline is the earlier, so the task fails when execution_timeout passes, deferred."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

with DAG(
    dag_id="e2e_ltx2_execution_timeout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url=os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg"),
        prompt="A lantern sways in the wind on a night pier",
        deferrable=True,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "1")),
        timeout=15 * 60,
        execution_timeout=timedelta(seconds=60),
    )
