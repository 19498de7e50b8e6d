"""The example DAGs under ``airflow dags test`` against the simulator, and the provider seen by Airflow's CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import airflow
import pytest
from packaging.version import Version

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import KEY, REPO, airflow_env

pytestmark = pytest.mark.dags

# scripts/test-airflow2.sh runs this file on Airflow 2.11 too, where assets are still called datasets.
AIRFLOW_2 = Version(airflow.__version__).major < 3


def airflow(home: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        check=False,
        env=airflow_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def db_dump(home: Path) -> str:
    """Every row of the metadata DB but the connection table, as text."""
    with sqlite3.connect(home / "airflow.db") as db:
        return "\n".join(line for line in db.iterdump() if 'INSERT INTO "connection"' not in line)


VIDEOS_PER_RUN = {
    "example_ltx2_single_video": 1,
    "example_ltx2_batch_from_csv": 3,
    "example_ltx2_taskflow": 2,
    "example_ltx2_asset_producer": 1,
}


@pytest.mark.parametrize("deferrable", ["true", "false"])
@pytest.mark.parametrize("dag_id", list(VIDEOS_PER_RUN))
def test_example_dag_end_to_end(
    simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path, dag_id: str, deferrable: str
) -> None:
    if "asset" in dag_id and AIRFLOW_2:
        # 2.11's `dags test` does not write the DAG's datasets to the metadata DB, and drops the events of a
        # dataset it does not find there ("DatasetModel ... not found"): serialize the DAGs first.
        serialized = airflow(airflow_home, "dags", "reserialize")
        assert serialized.returncode == 0, serialized.stderr[-3000:]
    done = airflow(
        airflow_home,
        "dags",
        "test",
        dag_id,
        AIRFLOW_CONN_LTX2_DEFAULT=simulator.connection(),
        LTX2_EXAMPLE_DEFERRABLE=deferrable,
        LTX2_EXAMPLE_OUTPUT_DIR=str(tmp_path),
        LTX2_EXAMPLE_POLL_INTERVAL="0.5",
        LTX2_EXAMPLE_IMAGE_URL=f"{simulator.base_url}/files/sample.jpg",
        LTX2_EXAMPLE_IMAGE_BASE_URL=f"{simulator.base_url}/files/",
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "state=success" in log
    assert ("running trigger in line" in log) == (deferrable == "true")

    videos = sorted(tmp_path.rglob("*.mp4"))
    expected = VIDEOS_PER_RUN[dag_id]
    assert len(videos) == expected and all(video.read_bytes()[4:8] == b"ftyp" for video in videos)
    assert simulator.stats()["submits"] == expected
    if dag_id == "example_ltx2_batch_from_csv":
        [manifest] = tmp_path.rglob("manifest.json")
        entries = json.loads(manifest.read_text())
        assert sorted(entry["output_uri"] for entry in entries) == [f"file://{video}" for video in videos]

    if dag_id == "example_ltx2_asset_producer":
        [video] = videos
        extra = json.loads(last_asset_event_extra(airflow_home))
        assert extra["output_uri"] == f"file://{video}" and extra["bytes"] == video.stat().st_size

    assert KEY not in log, "the key leaked into the logs"
    assert KEY not in db_dump(airflow_home), "the key leaked into the metadata DB"


def last_asset_event_extra(home: Path) -> str:
    table = "dataset_event" if AIRFLOW_2 else "asset_event"
    with sqlite3.connect(home / "airflow.db") as db:
        [(extra,)] = db.execute(f"SELECT extra FROM {table} ORDER BY id DESC LIMIT 1").fetchall()
    return str(extra)


@pytest.mark.skipif(
    AIRFLOW_2,
    reason="Airflow 3 only: the check uses Airflow 3's DagBag and asset_condition, and on 2.11 the consumer's "
    "triggering_asset_events argument is never filled (2.11 calls it triggering_dataset_events)",
)
def test_asset_consumer_is_scheduled_on_the_producers_asset(airflow_home: Path) -> None:
    check = """
import sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert bag.import_errors == {}, bag.import_errors
[produced] = bag.get_dag("example_ltx2_asset_producer").get_task("generate_video").outlets
consumer = bag.get_dag("example_ltx2_asset_consumer")
assert list(consumer.timetable.asset_condition.objects) == [produced], consumer.timetable
print("scheduled on", produced.name)
"""
    example = str(REPO / "example_dags" / "example_ltx2_assets.py")
    done = subprocess.run(
        [sys.executable, "-c", check, example], env=airflow_env(airflow_home), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scheduled on ltx2_new_videos" in done.stdout


def test_airflow_sees_the_provider_and_its_connection_type(airflow_home: Path) -> None:
    listed = airflow(airflow_home, "providers", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert "airflow-provider-ltx2" in {provider["package_name"] for provider in json.loads(listed.stdout)}

    added = airflow(
        airflow_home,
        "connections",
        "add",
        "ltx2_cli",
        "--conn-type",
        "ltx2",
        "--conn-password",
        KEY,
        "--conn-host",
        "http://127.0.0.1:8089",
    )
    assert added.returncode == 0, added.stderr
    assert KEY not in added.stdout + added.stderr

    hooks = airflow(airflow_home, "providers", "hooks", "--output", "json")
    [ltx2] = [hook for hook in json.loads(hooks.stdout) if hook["connection_type"] == "ltx2"]
    assert ltx2["class"] == "airflow_provider_ltx2.hooks.ltx2.Ltx2Hook"
