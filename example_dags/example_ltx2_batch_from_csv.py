"""A batch: prompts and images from a CSV, one mapped generation each, then a manifest of what was made.

``read_requests`` stands for any upstream data task (a table, a file drop, an asset); ``write_manifest``
is where an upload to object storage or a catalogue entry chains in. An image is a public URL, an
object-storage URI (``s3://bucket/key.jpg``: the task sends the gateway a short-lived signed URL made
through ``image_conn_id``), or a bare name under ``IMAGE_BASE_URL``, which may be either kind too.
Mapping suits small tables; for large ones, ``example_ltx2_batch_review`` runs the whole table in one
``Ltx2GenerateVideoBatchOperator`` task, priced by a dry run and approved before it pays.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
IMAGE_BASE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_BASE_URL", "http://127.0.0.1:8089/files/")
IMAGE_CONN_ID = os.environ.get("LTX2_EXAMPLE_IMAGE_CONN_ID")  # the store of object-storage images, e.g. aws_default
PROMPTS_CSV = Path(__file__).parent / "data" / "prompts.csv"
# The tests run this DAG both ways; in your own DAGs just write deferrable=True.
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"

with DAG(
    dag_id="example_ltx2_batch_from_csv",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ltx2", "example"],
):

    @task
    def read_requests() -> list[dict[str, Any]]:
        """One dict of operator arguments per CSV row; images given by name live under IMAGE_BASE_URL."""
        with PROMPTS_CSV.open(newline="") as rows:
            return [
                {
                    "image_url": row["image"] if "://" in row["image"] else IMAGE_BASE_URL + row["image"],
                    "prompt": row["prompt"],
                    "duration": int(row["duration"]),
                    "aspect_ratio": row["aspect_ratio"],
                }
                for row in csv.DictReader(rows)
            ]

    videos = Ltx2GenerateVideoOperator.partial(
        task_id="generate_video",
        # The gateway runs 2 generations at a time per key and answers 429 to more: give the batch a pool of
        # that size, `airflow pools set ltx2 2 "LTX-2 gateway slots" --include-deferred`, and pass pool="ltx2"
        # (--include-deferred: deferred tasks hold their slot too). Every task using the key shares the pool.
        deferrable=DEFERRABLE,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
        image_conn_id=IMAGE_CONN_ID,
        output_uri=f"file://{OUTPUT_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id | replace(':', '_') }}}}/"
        "{{ ti.map_index }}.mp4",
    ).expand_kwargs(read_requests())

    @task
    def write_manifest(results: list[dict[str, Any]], run_id: str | None = None) -> str:
        """Record what was produced and where; the place to chain an upload or a catalogue entry."""
        manifest = Path(OUTPUT_DIR) / "example_ltx2_batch_from_csv" / str(run_id).replace(":", "_") / "manifest.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        # [:] reads all the results in one request; a plain loop ends in a false "XCom not found" error on Airflow 3
        entries = [
            {key: result[key] for key in ("request_id", "output_uri", "bytes", "video_url", "completed_at")}
            | {"prompt": result["request"]["prompt"]}
            for result in results[:]
        ]
        manifest.write_text(json.dumps(entries, indent=2))
        print(f"Manifest of {len(entries)} videos written to {manifest}")
        return str(manifest)

    write_manifest(videos.output)
