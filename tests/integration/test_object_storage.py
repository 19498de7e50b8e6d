"""Videos streamed into S3 through ObjectStoragePath, against a real S3 API (moto's server) on loopback."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_ltx2.api.jobs import Job
from airflow_provider_ltx2.delivery import save_video
from airflow_provider_ltx2.exceptions import Ltx2Error
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.lifecycle import wait_in_worker
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.waits import Wait
from tests.conftest import KEY, S3_BUCKET, bucket_keys, example_dag_env
from tests.integration.test_dags import airflow
from tests.integration.test_storage import JPEG, put, read, secrets_of, sent_image_urls

DAG_ID = "example_ltx2_to_object_storage"
SAMPLE = (Path(__file__).resolve().parents[2] / "airflow_provider_ltx2" / "simulator" / "sample.mp4").read_bytes()


def finished_video(simulator: SimulatorProcess) -> str:
    hook = Ltx2Hook()
    job: Job = hook.submit({"image_url": "https://images.example.com/a.jpg", "prompt": "a slow pan"})
    return str(wait_in_worker(hook, Wait(job, deadline=time.time() + 10, poll_interval=0.1)).video_url)


def test_download_streams_into_s3(simulator: SimulatorProcess, bucket) -> None:
    size = save_video(Ltx2Hook(), finished_video(simulator), f"s3://{S3_BUCKET}/videos/a.mp4", "ltx2_s3")[0]
    assert bucket_keys(bucket) == ["videos/a.mp4"]
    assert bucket.get_object(Bucket=S3_BUCKET, Key="videos/a.mp4")["Body"].read() == SAMPLE and size == len(SAMPLE)


@pytest.mark.parametrize("fault", [{"status": 200, "body": "html"}, {"status": 503}], ids=["not-an-mp4", "cdn-error"])
def test_failed_download_leaves_no_object(simulator: SimulatorProcess, bucket, fault: dict) -> None:
    video_url = finished_video(simulator)
    simulator.configure(faults=[{"on": "download", **fault}])
    with pytest.raises(Ltx2Error):
        save_video(Ltx2Hook(), video_url, f"s3://{S3_BUCKET}/videos/a.mp4", "ltx2_s3")
    assert bucket_keys(bucket) == []


# Two runs of one day: the same output_uri for each mapped video (videos/<ds>/<map_index>.mp4).
RUN_DATES = ("2026-03-02T08:00:00+00:00", "2026-03-02T09:00:00+00:00")
IMAGES = ("images/boat.jpg", "images/coffee.jpg")
GATEWAY_CALLS = ("submits", "polls", "downloads")


def stored_files(home: Path, bucket: Any) -> dict[str, bytes]:
    """Every file under the Airflow home (task logs, the SQLite metadata DB...) and every object in the bucket."""
    found = {str(path): path.read_bytes() for path in home.rglob("*") if path.is_file()}
    found.update({f"s3://{S3_BUCKET}/{key}": read(bucket, key) for key in bucket_keys(bucket)})
    return found


def run_ids(home: Path) -> set[str]:
    with sqlite3.connect(home / "airflow.db") as db:
        return {run_id for (run_id,) in db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,))}


def generate_video_results(home: Path, earlier_runs: set[str]) -> list[dict[str, Any]]:
    """The mapped ``generate_video`` results of the runs not in ``earlier_runs``, in order: the session's metadata
    DB holds the runs of this DAG by other tests too, as many as ran before on this worker."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT run_id, value FROM xcom WHERE dag_id = ? AND task_id = 'generate_video' AND key = 'return_value' "
            "ORDER BY run_id, map_index",
            (DAG_ID,),
        ).fetchall()
    return [json.loads(value) for run_id, value in rows if run_id not in earlier_runs]


@pytest.mark.dags
@pytest.mark.slow
def test_object_storage_example_dag_reads_private_images_and_pays_once(
    simulator: SimulatorProcess, bucket: Any, s3_endpoint: str, airflow_home: Path
) -> None:
    env = {
        "AIRFLOW_CONN_LTX2_DEFAULT": simulator.connection(),
        "AIRFLOW_CONN_LTX2_S3": os.environ["AIRFLOW_CONN_LTX2_S3"],
        "LTX2_EXAMPLE_BUCKET": S3_BUCKET,
        "LTX2_EXAMPLE_STORAGE_CONN_ID": "ltx2_s3",
        "LTX2_EXAMPLE_POLL_INTERVAL": "0.5",
        "LTX2_EXAMPLE_IMAGE_URL": f"{simulator.base_url}/files/sample.jpg",  # the sample it seeds the bucket with
    }
    earlier = run_ids(airflow_home)
    first = airflow(airflow_home, "dags", "test", DAG_ID, RUN_DATES[0], **env)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    paid = simulator.stats()

    # The gateway got each image as a signed URL of the private bucket, and could read it through that.
    signed = sorted(sent_image_urls(simulator))
    assert [url.split("?")[0] for url in signed] == [f"{s3_endpoint}/{S3_BUCKET}/{key}" for key in IMAGES]
    assert all(
        read(bucket, key) == JPEG == requests.get(url, timeout=10).content
        for key, url in zip(IMAGES, signed, strict=True)
    )
    assert all(requests.get(url.split("?")[0], timeout=10).status_code == 403 for url in signed), "private"
    stored = bucket_keys(bucket)
    videos = [key for key in stored if key.startswith("videos/2026-03-02/") and key.endswith(".mp4")]
    published = [key for key in stored if key.startswith("published/2026-03-02/") and key.endswith(".mp4")]
    assert len(videos) == 2 and len(published) == 2
    assert all(f"{key}.json" in stored for key in videos), "every saved video has its sidecar"
    assert all(read(bucket, key) == SAMPLE for key in videos + published)

    second = airflow(airflow_home, "dags", "test", DAG_ID, RUN_DATES[1], **env)
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]

    again = simulator.stats()
    assert [again[name] for name in GATEWAY_CALLS] == [paid[name] for name in GATEWAY_CALLS], "no call at all"
    assert paid["submits"] == 2, "the first run paid for two videos, the second for none"
    # (Airflow 2.11's `dags test` prints each task log line twice: count the videos, not the lines)
    reused = set(re.findall(r"Reused (\S+) \(.*?\), no charge", second.stdout + second.stderr))
    assert len(reused) == 2, reused
    results = generate_video_results(airflow_home, earlier)
    assert [result["reused"] for result in results] == [False, False, True, True]
    assert sorted(result["request"]["image_url"] for result in results) == sorted(
        2 * [f"s3://{S3_BUCKET}/{key}" for key in IMAGES]
    )
    [catalogue_key] = [key for key in bucket_keys(bucket) if key.endswith("catalogue.json")]
    catalogue = json.loads(read(bucket, catalogue_key))
    assert sorted(entry["uri"] for entry in catalogue) == sorted(f"s3://{S3_BUCKET}/{key}" for key in published)
    assert [entry["reused"] for entry in catalogue] == [True, True]

    # The signed URLs are a credential: the gateway's own request log holds them, nothing of the runs does.
    assert all(url in json.dumps(simulator.stats()["requests"]) for url in signed)
    logs = first.stdout + first.stderr + second.stdout + second.stderr
    records = stored_files(airflow_home, bucket)
    image = f"s3://{S3_BUCKET}/{IMAGES[0]}"
    # Airflow keeps its SQLite DB in WAL mode: committed rows may still sit in airflow.db-wal, not yet in airflow.db.
    metadata_db = b"".join(
        content for path, content in records.items() if path.startswith(str(airflow_home / "airflow.db"))
    )
    assert f"image_url={image!r}" in logs and image.encode() in metadata_db, (
        "the logs and the metadata DB (XCom, rendered fields) name the image by its URI"
    )
    for place, content in {"the runs' output": logs.encode(), **records}.items():
        for url in signed:
            for secret in secrets_of(url):
                assert secret.encode() not in content, f"the signed image URL is in {place}"
        assert b"Signature=" not in content, f"a signed URL is in {place}"
    assert KEY not in logs


@pytest.mark.dags
@pytest.mark.slow
@pytest.mark.parametrize(("dag_id", "videos"), [("example_ltx2_batch_from_csv", 3), ("example_ltx2_taskflow", 2)])
def test_batch_and_taskflow_examples_take_images_from_a_private_bucket(
    simulator: SimulatorProcess,
    bucket: Any,
    s3_endpoint: str,
    airflow_home: Path,
    tmp_path: Path,
    dag_id: str,
    videos: int,
) -> None:
    """Their images named under an ``s3://`` prefix (``LTX2_EXAMPLE_IMAGE_BASE_URL``) reach the gateway signed."""
    image = put(bucket, "images/sample.jpg")
    env = example_dag_env(
        simulator,
        tmp_path,
        AIRFLOW_CONN_LTX2_S3=os.environ["AIRFLOW_CONN_LTX2_S3"],
        LTX2_EXAMPLE_IMAGE_BASE_URL=f"s3://{S3_BUCKET}/images/",
        LTX2_EXAMPLE_IMAGE_CONN_ID="ltx2_s3",
    )
    done = airflow(airflow_home, "dags", "test", dag_id, **env)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]

    signed = sent_image_urls(simulator)
    assert len(signed) == videos and len(list(tmp_path.rglob("*.mp4"))) == videos
    assert {url.split("?")[0] for url in signed} == {f"{s3_endpoint}/{S3_BUCKET}/images/sample.jpg"}
    assert all(requests.get(url, timeout=10).content == JPEG for url in signed)
    assert f"image_url={image!r}" in log and "Signature=" not in log
