"""A DAG only the spend guard's end-to-end test uses: eight generations on a connection with a daily cap.

The test creates the connection ``ltx2_capped`` (its extras cap the key's spend and name the ledger folder), so
the other e2e DAGs and their ``ltx2_default`` are not capped. Each mapped task has a prompt of its own and no
``output_uri``: none can reuse another's video, so each one that passes the guard pays.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
POLL_INTERVAL = float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "1"))
PROMPTS = [
    f"{subject}, slow dolly-in, soft light"
    for subject in ("A heron", "A red tram", "A kettle", "A lighthouse", "A fox", "A sailboat", "A windmill", "A bee")
]

with DAG(
    dag_id="e2e_ltx2_spend_guard",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    Ltx2GenerateVideoOperator.partial(
        task_id="generate_video",
        image_url=IMAGE_URL,
        ltx2_conn_id="ltx2_capped",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=15 * 60,
        retries=0,
    ).expand(prompt=PROMPTS)
