"""A batch of generations bigger than the gateway's concurrency limit, for the e2e tests of its limits.

``e2e_ltx2_batch`` maps eight deferrable generations with downloads and nothing in Airflow to pace them:
the gateway's 429s do. ``e2e_ltx2_batch_pooled`` is the same batch in the Airflow pool ``ltx2``, which
the tests size to the gateway's limit (``--include-deferred``, so a waiting generation keeps its slot).
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
POLL_INTERVAL = float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "1"))
BATCH_SIZE = 8
POOL = "ltx2"
SUBJECTS = ("a lighthouse", "a fox", "a tram", "a kettle", "a sailboat", "a windmill", "a heron", "a lantern")

for dag_id, pool in (("e2e_ltx2_batch", None), ("e2e_ltx2_batch_pooled", POOL)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
    ):
        Ltx2GenerateVideoOperator.partial(
            task_id="generate_video",
            image_url=IMAGE_URL,
            duration=6,
            deferrable=True,
            poll_interval=POLL_INTERVAL,
            timeout=15 * 60,
            pool=pool,
            output_uri=f"file://{OUTPUT_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id | replace(':', '_') }}}}/"
            "{{ ti.map_index }}.mp4",
        ).expand(prompt=[f"Slow push-in on {subject} at dusk, gentle wind" for subject in SUBJECTS[:BATCH_SIZE]])
