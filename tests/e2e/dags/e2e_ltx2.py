"""DAGs only the end-to-end tests use: the provider's operator in shapes the example DAGs do not cover.

The tests copy this file next to the example DAGs in the deployment's dags folder. The image URL, the
poll interval and the output folder come from the same environment variables as the examples.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
POLL_INTERVAL = float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "1"))
OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
START = pendulum.datetime(2026, 1, 1, tz="UTC")
PROMPT = "{{ params.prompt }}"

# Waits in the worker (not deferrable) and may be retried once: a retry must reattach to the request the
# first try paid for, through the task state store, instead of submitting again.
with DAG(
    dag_id="e2e_ltx2_worker_wait",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"prompt": "A paper boat drifts down a rain gutter, close-up, slow tracking shot"},
):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url=IMAGE_URL,
        prompt=PROMPT,
        duration="6",
        generate_audio="false",
        deferrable=False,
        poll_interval=POLL_INTERVAL,
        timeout=15 * 60,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )

# Two deferrable generations side by side.
with DAG(
    dag_id="e2e_ltx2_pair",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"prompt": "Steam rises from a cup of coffee on a windowsill, morning light"},
):
    for name in ("first", "second"):
        Ltx2GenerateVideoOperator(
            task_id=f"generate_{name}",
            image_url=IMAGE_URL,
            prompt=PROMPT,
            resolution="720p",
            deferrable=True,
            poll_interval=POLL_INTERVAL,
            timeout=15 * 60,
        )

# The key comes from a connection created with `airflow connections add` (stored in the metadata DB).
with DAG(
    dag_id="e2e_ltx2_cli_connection",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"prompt": "A kite climbs into a windy sky over dunes, wide shot"},
):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url=IMAGE_URL,
        prompt=PROMPT,
        ltx2_conn_id="ltx2_cli",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=15 * 60,
    )

# One deferrable generation with a download and one retry, for a worker killed mid-download: the retry
# must reattach to the paid request and deliver the whole file.
with DAG(
    dag_id="e2e_ltx2_slow_download",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"prompt": "Waves roll onto a pebble beach, low angle, overcast"},
):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url=IMAGE_URL,
        prompt=PROMPT,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=15 * 60,
        output_uri=f"file://{OUTPUT_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id | replace(':', '_') }}}}/video.mp4",
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
