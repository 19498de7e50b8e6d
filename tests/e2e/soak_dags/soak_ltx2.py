"""The soak's DAGs (``scripts/soak.sh``), installed only in the soak's deployment.

How many generations each run makes comes with the run (its ``conf``), so one parse serves every size:

- ``soak_ltx2_mapped``: ``conf["count"]`` mapped deferrable generations, each downloading its video;
- ``soak_ltx2_sensors``: ``conf["count"]`` mapped submits (``wait_for_completion=False``), then as many
  deferrable ``Ltx2VideoSensor`` tasks waiting for them and downloading the videos;
- ``soak_ltx2_batch``: one deferrable ``Ltx2GenerateVideoBatchOperator`` over the JSONL file
  ``conf["rows_uri"]``, at most ``LTX2_SOAK_BATCH_CONCURRENCY`` jobs in flight.

Every task may be retried (a killed worker's try is retried and reattaches to the request it paid for).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator, Ltx2GenerateVideoOperator
from airflow_provider_ltx2.sensors.ltx2 import Ltx2VideoSensor

IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
POLL_INTERVAL = float(os.environ.get("LTX2_SOAK_POLL_INTERVAL", "2"))
BATCH_CONCURRENCY = int(os.environ.get("LTX2_SOAK_BATCH_CONCURRENCY", "4"))
TIMEOUT = 8 * 3600  # seconds: the last of hundreds of generations waits long for room at the gateway
RUN_FOLDER = f"file://{OUTPUT_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id | replace(':', '_') }}}}"
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=5)}
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@task
def prompts(**context: Any) -> list[str]:
    count = int(context["dag_run"].conf.get("count", 1))
    return [f"Slow push-in on scene {index} at dusk, gentle wind" for index in range(count)]


with DAG(dag_id="soak_ltx2_mapped", schedule=None, start_date=START, catchup=False, tags=["ltx2", "soak"]):
    Ltx2GenerateVideoOperator.partial(
        task_id="generate",
        image_url=IMAGE_URL,
        duration=6,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TIMEOUT,
        output_uri=RUN_FOLDER + "/{{ ti.map_index }}.mp4",
        **RETRIES,
    ).expand(prompt=prompts())

with DAG(dag_id="soak_ltx2_sensors", schedule=None, start_date=START, catchup=False, tags=["ltx2", "soak"]):
    submitted = Ltx2GenerateVideoOperator.partial(
        task_id="submit",
        image_url=IMAGE_URL,
        duration=6,
        wait_for_completion=False,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TIMEOUT,
        **RETRIES,
    ).expand(prompt=prompts())
    Ltx2VideoSensor.partial(
        task_id="wait",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TIMEOUT,
        output_uri=RUN_FOLDER + "/{{ ti.map_index }}.mp4",
        **RETRIES,
    ).expand(request_id=submitted.output)

with DAG(dag_id="soak_ltx2_batch", schedule=None, start_date=START, catchup=False, tags=["ltx2", "soak"]):
    Ltx2GenerateVideoBatchOperator(
        task_id="generate_videos",
        requests="{{ dag_run.conf['rows_uri'] }}",
        output_prefix=RUN_FOLDER,
        duration=6,
        max_concurrent_jobs=BATCH_CONCURRENCY,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TIMEOUT,
        **RETRIES,
    )
