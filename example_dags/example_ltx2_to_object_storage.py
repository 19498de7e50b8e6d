"""Videos straight into object storage, then published by a downstream task.

Each mapped generation streams its MP4 to ``s3://<bucket>/videos/<ds>/<map_index>.mp4`` through Airflow's
``ObjectStoragePath`` (any fsspec-backed store works the same way: ``gs://``, ``abfs://``...).
``publish`` consumes the result dicts: it copies each video to a ``published/`` prefix and writes a
catalogue beside them. Needs ``apache-airflow-providers-amazon`` and ``s3fs`` for ``s3://``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath, task

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

BUCKET = os.environ.get("LTX2_EXAMPLE_BUCKET", "ltx2-videos")
STORAGE_CONN_ID = os.environ.get("LTX2_EXAMPLE_STORAGE_CONN_ID", "aws_default")
IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
# The tests run this DAG both ways; in your own DAGs just write deferrable=True.
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"

with DAG(
    dag_id="example_ltx2_to_object_storage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ltx2", "example"],
):

    @task
    def requests_for_today() -> list[dict[str, Any]]:
        return [
            {"image_url": IMAGE_URL, "prompt": prompt, "duration": 6}
            for prompt in (
                "A paper boat drifts down a rain-soaked street, camera follows at water level",
                "Steam rises from a coffee cup by a window, soft morning light, slow push-in",
            )
        ]

    videos = Ltx2GenerateVideoOperator.partial(
        task_id="generate_video",
        deferrable=DEFERRABLE,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
        output_uri=f"s3://{BUCKET}/videos/{{{{ ds }}}}/{{{{ ti.map_index }}}}.mp4",
        output_conn_id=STORAGE_CONN_ID,
    ).expand_kwargs(requests_for_today())

    @task
    def publish(results: list[dict[str, Any]], ds: str | None = None) -> str:
        """Copy each finished video to published/ and catalogue it: where a real pipeline hands off."""
        published = ObjectStoragePath(f"s3://{BUCKET}/published/{ds}/", conn_id=STORAGE_CONN_ID)
        catalogue = []
        for result in results:
            source = ObjectStoragePath(result["output_uri"], conn_id=STORAGE_CONN_ID)
            target = published / source.name
            source.copy(target)
            uri = f"{target.protocol}://{target.path}"  # str(target) would also name the connection
            catalogue.append({"uri": uri, "bytes": result["bytes"], "prompt": result["request"]["prompt"]})
        (published / "catalogue.json").write_text(json.dumps(catalogue, indent=2))
        return str(published / "catalogue.json")

    publish(videos.output)
