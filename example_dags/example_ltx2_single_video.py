"""One image in, one video out: generate it while waiting in the triggerer, then save the MP4.

Against the local simulator this runs as is; with a real key, set ``LTX2_EXAMPLE_IMAGE_URL`` to a
public JPEG/PNG the gateway can fetch. ``LTX2_EXAMPLE_OUTPUT_DIR`` is where the MP4 lands.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
# The tests run this DAG both ways; in your own DAGs just write deferrable=True.
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"

with DAG(
    dag_id="example_ltx2_single_video",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ltx2", "example"],
    params={
        "image_url": IMAGE_URL,
        "prompt": "Slow dolly-in on a lighthouse at golden hour, waves breaking below, gulls circling",
    },
):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url="{{ params.image_url }}",
        prompt="{{ params.prompt }}",
        duration=6,
        resolution="1080p",
        aspect_ratio="16:9",
        deferrable=DEFERRABLE,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
        timeout=30 * 60,
        output_uri=f"file://{OUTPUT_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id | replace(':', '_') }}}}.mp4",
    )
