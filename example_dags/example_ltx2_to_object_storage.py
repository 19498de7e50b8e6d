"""Private images in, videos out, both in object storage; then published by a downstream task.

The images sit in a private bucket under ``s3://<bucket>/images/``: each generation names its image by that
URI with ``image_conn_id``, and the task hands the gateway a signed URL made by the store, valid for
``image_url_expires_in`` seconds (results, XCom and logs keep the ``s3://`` URI). Each mapped generation
streams its MP4 to ``s3://<bucket>/videos/<ds>/<map_index>.mp4`` with a sidecar ``<mp4>.json`` beside it,
so a rerun of the same day pays nothing for a video already there (``reused`` is true in its result).
``publish`` copies each video to a ``published/`` prefix and writes a catalogue beside them. Any
fsspec-backed store works the same way (``gs://``, ``abfs://``...); ``s3://`` needs
``apache-airflow-providers-amazon`` and ``s3fs`` (the ``examples`` extra).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath, task

from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

BUCKET = os.environ.get("LTX2_EXAMPLE_BUCKET", "ltx2-videos")
STORAGE_CONN_ID = os.environ.get("LTX2_EXAMPLE_STORAGE_CONN_ID", "aws_default")
IMAGES = f"s3://{BUCKET}/images/"
# A public sample image, copied into the bucket when an image of the example is missing there.
SAMPLE_IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
SHOTS = {
    "boat.jpg": "A paper boat drifts down a rain-soaked street, camera follows at water level",
    "coffee.jpg": "Steam rises from a coffee cup by a window, soft morning light, slow push-in",
}
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
        """One request per image in the bucket. Stands for a query of new shots; seeds the bucket if empty."""
        for name in SHOTS:
            image = ObjectStoragePath(IMAGES + name, conn_id=STORAGE_CONN_ID)
            if not image.exists():
                with urllib.request.urlopen(SAMPLE_IMAGE_URL, timeout=30) as sample:
                    image.write_bytes(sample.read())
        return [{"image_url": IMAGES + name, "prompt": prompt, "duration": 6} for name, prompt in SHOTS.items()]

    videos = Ltx2GenerateVideoOperator.partial(
        task_id="generate_video",
        deferrable=DEFERRABLE,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
        image_conn_id=STORAGE_CONN_ID,  # the store signs each image's URL for the gateway
        output_uri=f"s3://{BUCKET}/videos/{{{{ ds }}}}/{{{{ ti.map_index }}}}.mp4",
        output_conn_id=STORAGE_CONN_ID,
    ).expand_kwargs(requests_for_today())

    @task
    def publish(results: list[dict[str, Any]], ds: str | None = None) -> str:
        """Copy each finished video to published/ and catalogue it: where a real pipeline hands off."""
        published = ObjectStoragePath(f"s3://{BUCKET}/published/{ds}/", conn_id=STORAGE_CONN_ID)
        catalogue = []
        # [:] reads all the results in one request; a plain loop ends in a false "XCom not found" error on Airflow 3
        for result in results[:]:
            source = ObjectStoragePath(result["output_uri"], conn_id=STORAGE_CONN_ID)
            target = published / source.name
            source.copy(target)
            uri = f"{target.protocol}://{target.path}"  # str(target) would also name the connection
            catalogue.append(
                {
                    "uri": uri,
                    "bytes": result["bytes"],
                    "image": result["request"]["image_url"],  # the s3:// URI, never the signed URL
                    "prompt": result["request"]["prompt"],
                    "reused": result["reused"],
                }
            )
        (published / "catalogue.json").write_text(json.dumps(catalogue, indent=2))
        return str(published / "catalogue.json")

    publish(videos.output)
