"""Videos streamed into S3 through ObjectStoragePath, against a real S3 API (moto's server) on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_ltx2.api import Job
from airflow_provider_ltx2.exceptions import Ltx2Error
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.waiting import Wait
from tests.conftest import KEY
from tests.test_dags import airflow

boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3, s3fs, moto)")
pytest.importorskip("s3fs")
pytest.importorskip("airflow.providers.amazon")

BUCKET = "ltx2-test-videos"
SAMPLE = (Path(__file__).resolve().parents[1] / "airflow_provider_ltx2" / "simulator" / "sample.mp4").read_bytes()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in its own process, stopped by pid."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """An empty bucket, and the ``ltx2_s3`` connection pointing at it."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_S3", json.dumps(connection))
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def finished_video(simulator: SimulatorProcess) -> str:
    hook = Ltx2Hook()
    job: Job = hook.submit({"image_url": "https://images.example.com/a.jpg", "prompt": "a slow pan"})
    return str(hook.wait_for_video(Wait(job, deadline=time.time() + 10, poll_interval=0.1)).video_url)


def test_download_streams_into_s3(simulator: SimulatorProcess, bucket) -> None:
    size = Ltx2Hook().download_video(finished_video(simulator), f"s3://{BUCKET}/videos/a.mp4", "ltx2_s3")
    assert keys(bucket) == ["videos/a.mp4"]
    assert bucket.get_object(Bucket=BUCKET, Key="videos/a.mp4")["Body"].read() == SAMPLE and size == len(SAMPLE)


@pytest.mark.parametrize("fault", [{"status": 200, "body": "html"}, {"status": 503}], ids=["not-an-mp4", "cdn-error"])
def test_failed_download_leaves_no_object(simulator: SimulatorProcess, bucket, fault: dict) -> None:
    video_url = finished_video(simulator)
    simulator.configure(faults=[{"on": "download", **fault}])
    with pytest.raises(Ltx2Error):
        Ltx2Hook().download_video(video_url, f"s3://{BUCKET}/videos/a.mp4", "ltx2_s3")
    assert keys(bucket) == []


@pytest.mark.dags
def test_object_storage_example_dag(
    simulator: SimulatorProcess, bucket, airflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = airflow(
        airflow_home,
        "dags",
        "test",
        "example_ltx2_to_object_storage",
        AIRFLOW_CONN_LTX2_DEFAULT=simulator.connection(),
        AIRFLOW_CONN_LTX2_S3=os.environ["AIRFLOW_CONN_LTX2_S3"],
        LTX2_EXAMPLE_BUCKET=BUCKET,
        LTX2_EXAMPLE_STORAGE_CONN_ID="ltx2_s3",
        LTX2_EXAMPLE_POLL_INTERVAL="0.5",
        LTX2_EXAMPLE_IMAGE_URL=f"{simulator.base_url}/files/sample.jpg",
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    stored = keys(bucket)
    videos = [key for key in stored if key.startswith("videos/") and key.endswith(".mp4")]
    published = [key for key in stored if key.startswith("published/") and key.endswith(".mp4")]
    assert len(videos) == 2 and len(published) == 2
    assert all(f"{key}.json" in stored for key in videos), "every saved video has its sidecar"
    assert all(bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read() == SAMPLE for key in videos + published)
    [catalogue_key] = [key for key in stored if key.endswith("catalogue.json")]
    catalogue = json.loads(bucket.get_object(Bucket=BUCKET, Key=catalogue_key)["Body"].read())
    assert sorted(entry["uri"] for entry in catalogue) == sorted(f"s3://{BUCKET}/{key}" for key in published)
    assert KEY not in done.stdout + done.stderr
