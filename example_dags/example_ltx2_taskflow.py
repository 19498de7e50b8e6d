"""TaskFlow: ``@task.ltx2_video`` turns a function that builds the request from upstream data into a
video generation task (same waiting, download and result dict as ``Ltx2GenerateVideoOperator``)."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
# Public (http://...) or private in object storage (s3://bucket/images/, read through IMAGE_CONN_ID).
IMAGE_BASE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_BASE_URL", "http://127.0.0.1:8089/files/")
IMAGE_CONN_ID = os.environ.get("LTX2_EXAMPLE_IMAGE_CONN_ID")
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"

with DAG(
    dag_id="example_ltx2_taskflow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ltx2", "example"],
):

    @task
    def product_shots() -> list[dict[str, str]]:
        """Stands for a query of new catalogue items."""
        return [
            {"image": "sample.jpg", "caption": "a ceramic mug", "style": "slow turntable, studio light"},
            {"image": "sample.jpg", "caption": "a leather bag", "style": "gentle dolly-in, warm light"},
        ]

    @task.ltx2_video(
        deferrable=DEFERRABLE,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
        image_conn_id=IMAGE_CONN_ID,
        output_uri=f"file://{OUTPUT_DIR}/taskflow/{{{{ run_id | replace(':', '_') }}}}/{{{{ ti.map_index }}}}.mp4",
    )
    def animate(shot: dict[str, str]) -> dict[str, Any]:
        return {
            "image_url": IMAGE_BASE_URL + shot["image"],
            "prompt": f"Product video of {shot['caption']}, {shot['style']}",
            "duration": 6,
            "aspect_ratio": "1:1",
        }

    @task
    def report(results: list[dict[str, Any]]) -> None:
        # [:] reads all the results in one request; a plain loop ends in a false "XCom not found" error on Airflow 3
        for result in results[:]:
            print(f"{result['request']['prompt']}: {result['output_uri']} ({result['bytes']} bytes)")

    report(animate.expand(shot=product_shots()))
