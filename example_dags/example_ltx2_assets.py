"""Asset-driven chaining: a DAG that makes videos updates an Asset; another DAG runs when it changes.

The operator adds the video's facts (``request_id``, ``video_url``, ``output_uri``, ``bytes``,
``completed_at``) to the ``extra`` of every asset event of its ``outlets``, so the consumer knows what
landed without reading XCom across DAGs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Asset, task

from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"
NEW_VIDEOS = Asset("ltx2_new_videos")

with DAG(
    dag_id="example_ltx2_asset_producer",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ltx2", "example"],
):
    Ltx2GenerateVideoOperator(
        task_id="generate_video",
        image_url=IMAGE_URL,
        prompt="A kite rises over a windy beach, camera tilts up to follow it",
        duration=6,
        deferrable=DEFERRABLE,
        poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
        output_uri=f"file://{OUTPUT_DIR}/assets/{{{{ run_id | replace(':', '_') }}}}.mp4",
        outlets=[NEW_VIDEOS],
    )

with DAG(
    dag_id="example_ltx2_asset_consumer",
    schedule=[NEW_VIDEOS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ltx2", "example"],
):

    @task
    def catalogue_new_videos(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Append each new video to a catalogue file (stand-in for a media library or a CMS)."""
        entries = [dict(event.extra) for events in (triggering_asset_events or {}).values() for event in events]
        catalogue = Path(OUTPUT_DIR) / "assets" / "catalogue.jsonl"
        catalogue.parent.mkdir(parents=True, exist_ok=True)
        with catalogue.open("a") as lines:
            lines.writelines(json.dumps(entry) + "\n" for entry in entries)
        print(f"Catalogued {len(entries)} new videos in {catalogue}")
        return entries

    catalogue_new_videos()
