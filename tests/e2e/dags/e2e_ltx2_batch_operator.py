"""A table of six generations in one task (``Ltx2GenerateVideoBatchOperator``), for the e2e tests of it.

``e2e_ltx2_batch_operator`` waits deferred between its rounds (the batch trigger wakes it whenever a job
ends); ``e2e_ltx2_batch_operator_in_worker`` waits in its worker. Both keep at most two jobs in flight and
may be retried once: a retry goes on with the batch of the try before, paying for no row twice. Each run
writes ``{id}.mp4``, its sidecar and ``manifest.jsonl`` into a folder of its own.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator

IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
POLL_INTERVAL = float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "1"))
MAX_CONCURRENT_JOBS = 2
SUBJECTS = ("lighthouse", "fox", "tram", "kettle", "sailboat", "heron")
ROWS = [
    {"id": subject, "image_url": IMAGE_URL, "prompt": f"Slow push-in on a {subject} at dusk, gentle wind"}
    for subject in SUBJECTS
]

for dag_id, deferrable in (("e2e_ltx2_batch_operator", True), ("e2e_ltx2_batch_operator_in_worker", False)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
    ):
        Ltx2GenerateVideoBatchOperator(
            task_id="generate_videos",
            requests=ROWS,
            output_prefix=f"file://{OUTPUT_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id | replace(':', '_') }}}}",
            duration=6,
            max_concurrent_jobs=MAX_CONCURRENT_JOBS,
            deferrable=deferrable,
            poll_interval=POLL_INTERVAL,
            timeout=15 * 60,
            retries=1,
            retry_delay=timedelta(seconds=2),
        )
