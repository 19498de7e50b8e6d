"""Review before publish: generate a batch, let a person pick the videos worth publishing, publish those.

``review`` is a human-in-the-loop task (Airflow 3.1+): its page in the Airflow UI ("Required actions")
lists each video with a link to its task instance, whose "LTX-2 video" tab plays it, and offers one
option per video (several may be ticked) or "Publish none". It can also be answered through the REST
API (``PATCH .../taskInstances/review/-1/hitlDetails``). While it waits it holds no worker slot.
``publish`` then copies the chosen videos to a ``published/`` prefix and writes a catalogue beside them,
as ``example_ltx2_to_object_storage`` does; with ``s3://`` (or any object store) URIs instead of
``file://`` the same code publishes to a bucket.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowOptionalProviderFeatureException, ObjectStoragePath, task

from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

try:
    from airflow.providers.standard.operators.hitl import HITLOperator
except (ImportError, AirflowOptionalProviderFeatureException):
    # Human-in-the-loop operators need Airflow 3.1+ (and a standard provider that has them): on older
    # Airflow this file defines no DAG, so the dags folder still imports cleanly.
    HITLOperator = None

OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
IMAGE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_URL", "http://127.0.0.1:8089/files/sample.jpg")
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"
ROOT = f"file://{OUTPUT_DIR}/review"
RUN_FOLDER = "{{ run_id | replace(':', '_') }}"
# The batch; each name is also the reviewer's option for that video.
SHOTS = [
    {"name": "harbour", "prompt": "Morning fog lifts over a fishing harbour, boats rocking gently, slow pan right"},
    {"name": "market", "prompt": "Handheld walk through a busy night market, lanterns swaying, shallow focus"},
    {"name": "orchard", "prompt": "Time-lapse of clouds over an apple orchard, camera static, leaves in the wind"},
]
PUBLISH_NONE = "Publish none"

if HITLOperator is not None:
    with DAG(
        dag_id="example_ltx2_review",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["ltx2", "example"],
    ):
        videos = Ltx2GenerateVideoOperator.partial(
            task_id="generate_video",
            duration=6,
            deferrable=DEFERRABLE,
            poll_interval=float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10")),
            output_uri=f"{ROOT}/{RUN_FOLDER}/{{{{ ti.map_index }}}}.mp4",
        ).expand_kwargs([{"image_url": IMAGE_URL, "prompt": shot["prompt"]} for shot in SHOTS])

        @task
        def describe_videos(results: list[dict[str, Any]], dag_run: Any = None) -> str:
            """The review's body (Markdown): each video, with a link to its task instance page and tab."""
            from airflow.providers.common.compat.sdk import conf

            # [api] base_url is where users reach the UI; without it the links are relative to its host.
            base = conf.get("api", "base_url", fallback="").rstrip("/")
            run = f"{base}/dags/{dag_run.dag_id}/runs/{quote(dag_run.run_id, safe='')}"
            lines = ["Tick the videos to publish; each link opens the video's **LTX-2 video** tab.", ""]
            # [:] reads all the results in one request; zip(strict=True) on the lazy sequence itself asks for one
            # more, a false "XCom not found" error on Airflow 3
            for index, (shot, result) in enumerate(zip(SHOTS, results[:], strict=True)):
                page = f"{run}/tasks/generate_video/mapped/{index}"
                lines.append(f"- **{shot['name']}** ([watch]({page})): {shot['prompt']} ({result['bytes']} bytes)")
            return "\n".join(lines)

        review = HITLOperator(
            task_id="review",
            subject="Which LTX-2 videos should be published?",
            body=describe_videos(videos.output),
            options=[*(shot["name"] for shot in SHOTS), PUBLISH_NONE],
            multiple=True,
        )

        @task
        def publish(results: list[dict[str, Any]], decision: dict[str, Any], run_id: str | None = None) -> str:
            """Copy each approved video to published/ and catalogue it, with who approved it."""
            chosen = set(decision["chosen_options"])
            approver = (decision.get("responded_by_user") or {}).get("name")
            published = ObjectStoragePath(f"{ROOT}/published/{str(run_id).replace(':', '_')}/")
            published.mkdir(parents=True, exist_ok=True)
            catalogue = []
            for shot, result in zip(SHOTS, results[:], strict=True):
                if shot["name"] not in chosen:
                    continue
                target = published / f"{shot['name']}.mp4"
                ObjectStoragePath(result["output_uri"]).copy(target)
                uri = f"{target.protocol}://{target.path}"
                catalogue.append(
                    {"name": shot["name"], "uri": uri, "bytes": result["bytes"], "request_id": result["request_id"]}
                    | {"prompt": shot["prompt"], "approved_by": approver}
                )
            (published / "catalogue.json").write_text(json.dumps(catalogue, indent=2))
            print(f"Published {len(catalogue)} of {len(SHOTS)} videos to {published}")
            return str(published / "catalogue.json")

        publish(videos.output, review.output)
