"""The UI plugin inside the api-server's own app, in process, over real DAG runs in a real SQLite metadata DB.

``airflow dags test`` runs the batch example (mapped operator), the TaskFlow example (mapped decorator) and a
DAG with a sensor against the simulator, downloading the videos, into the metadata DB of this process's
Airflow home, and a DAG of batch tasks (``BATCH_TASKS_DAG``: ``Ltx2GenerateVideoBatchOperator`` tasks, which
leave in their rendered ``output_prefix`` the videos, sidecars and manifest, and return its summary). The app is
then built as the api-server builds it (``airflow.api_fastapi.app.create_app`` mounts the plugin found
through its entry point) and called with JWTs of Airflow's simple auth manager.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import airflow
import pytest
from packaging.version import Version

from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import FAST, KEY, REPO, airflow_env

pytestmark = [
    # The plugin's tab and gallery are Airflow 3.1+ features (external views of the FastAPI api-server).
    pytest.mark.skipif(
        Version(airflow.__version__) < Version("3.1"), reason="the plugin's views need Airflow 3.1+ and its api-server"
    ),
    pytest.mark.slow,  # `runs`, shared by the module's tests (scripts/test.sh keeps a module on one worker)
]

HOME = Path(os.environ["AIRFLOW_HOME"])  # tests/conftest.py chose it before Airflow was imported
BATCH = "example_ltx2_batch_from_csv"
TASKFLOW = "example_ltx2_taskflow"
SENSOR = "ltx2_plugin_sensor"
OBJECT_STORAGE = "example_ltx2_to_object_storage"
S3_BUCKET = "ltx2-plugin-videos"
S3_SECRET = "s3-secret-7c1d2e9b"  # distinctive, so a leak is easy to find
HOSTILE_PROMPT = 'Lighthouse <script>alert("x")</script> & <b>waves</b>'
TEAM = "studio"
SIGNED_IMAGE = "https://bucket.s3.amazonaws.com/in/1.jpg?X-Amz-Credential=AKIA123&X-Amz-Signature=f00d"
BATCH_TASKS = "ltx2_plugin_batch"
BATCH_ROWS = 30
FAILED_ROWS = ("row-05", "row-17")  # their prompts ask the simulator to fail the job
SIMULATED_FAILURE = "Content generation failed: simulated failure"  # what the simulator says of such a job
REUSED_ROWS = ("row-10",)  # made by the task `seed` before the task `batch`, into the same folder
VIDEO_ROWS = [f"row-{n:02d}" for n in range(BATCH_ROWS) if f"row-{n:02d}" not in FAILED_ROWS]
# Batch tasks of the real batch operator against the simulator: `seed` makes row 10's video into the folder
# of `batch`, which then reuses it, generates 27 rows and has 2 failed rows; `dry_run` plans 5 rows. Row 3 has
# a hostile prompt (as has the failed row 17), row 7 an image URL with a signature, which the worker cannot
# read (check_image=False: only the gateway reads it, and the simulator does not).
BATCH_TASKS_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator

ROWS = [
    {{"id": f"row-{{n:02d}}", "image_url": {image_url!r}, "prompt": f"Harbour at dawn, take {{n}}", "duration": 4}}
    for n in range({rows})
]
ROWS[3]["prompt"] = ROWS[17]["prompt"] = {prompt!r}
ROWS[7]["image_url"] = {signed!r}
for row in ROWS:
    if row["id"] in {failed!r}:
        row["prompt"] += " [sim:fail]"
FOLDER = {folder!r}
QUICK = {{"max_concurrent_jobs": 8, "poll_interval": 0.2, "deferrable": False}}

with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    seed = Ltx2GenerateVideoBatchOperator(
        task_id="seed",
        requests=[row for row in ROWS if row["id"] in {reused!r}],
        output_prefix=FOLDER + "/batch",  # the folder of `batch`
        **QUICK,
    )
    batch = Ltx2GenerateVideoBatchOperator(
        task_id="batch",
        requests=ROWS,
        output_prefix=FOLDER + "/{{{{ ti.task_id }}}}/",
        max_failed_items=2,
        check_image=False,
        **QUICK,
    )
    seed >> batch
    Ltx2GenerateVideoBatchOperator(
        task_id="dry_run", requests=ROWS[:5], output_prefix=FOLDER + "/{{{{ ti.task_id }}}}", dry_run=True, **QUICK
    )
"""
# The sensor DAG: a non-waiting submit, the sensor that waits and downloads, and a video left at the gateway.
SENSOR_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.sensors.ltx2 import Ltx2VideoSensor

with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    submit = Ltx2GenerateVideoOperator(
        task_id="submit", image_url={image_url!r}, prompt={prompt!r}, duration=4, wait_for_completion=False
    )
    Ltx2VideoSensor(
        task_id="wait", request_id=submit.output, deferrable=True, poll_interval=0.5, output_uri={output_uri!r}
    )
    Ltx2GenerateVideoOperator(
        task_id="url_only", image_url={image_url!r}, prompt="Gulls over a pier", deferrable=True, poll_interval=0.5
    )
"""


def test_importing_the_plugin_builds_no_app() -> None:
    """Plugins load in every component (scheduler, workers...): the module must not pull in FastAPI."""
    probe = (
        "import sys, airflow_provider_ltx2.plugins.ltx2 as plugin; "
        "assert plugin.Ltx2Plugin.fastapi_apps[0]['app']._app is None; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette') "
        "or m.startswith(('airflow.api_fastapi', 'airflow_provider_ltx2.plugins.app'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"  # after any log line of Airflow's config


# ---------------------------------------------------------------- real runs in this process's metadata DB


def write_batch_tasks_dag(dags: Path, videos: Path, image_url: str) -> None:
    """``BATCH_TASKS_DAG`` in the folder ``dags``, its batches written under ``videos``."""
    source = BATCH_TASKS_DAG.format(
        dag_id=BATCH_TASKS,
        failed=FAILED_ROWS,
        reused=REUSED_ROWS,
        rows=BATCH_ROWS,
        image_url=image_url,
        prompt=HOSTILE_PROMPT,
        signed=SIGNED_IMAGE,
        folder=f"file://{videos}",
    )
    (dags / f"{BATCH_TASKS}.py").write_text(source)


@dataclass(frozen=True)
class Runs:
    run_ids: dict[str, str]
    simulator_url: str
    env: dict[str, str]  # of the `airflow` commands that made them


def dags_test(env: dict[str, str], dag_id: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "state=success" in log, log[-5000:]


@pytest.fixture(scope="module")
def runs(simulator_process: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """One finished run of each DAG, its videos downloaded under a temporary directory."""
    from airflow import settings
    from sqlalchemy import select

    simulator_process.reset()
    simulator_process.configure(**FAST)
    videos = tmp_path_factory.mktemp("videos")
    dags = tmp_path_factory.mktemp("dags")
    for name in (f"{BATCH}.py", f"{TASKFLOW}.py", f"{OBJECT_STORAGE}.py", "data"):
        (dags / name).symlink_to(REPO / "example_dags" / name)
    image_url = f"{simulator_process.base_url}/files/sample.jpg"
    (dags / f"{SENSOR}.py").write_text(
        SENSOR_DAG.format(
            dag_id=SENSOR, image_url=image_url, prompt=HOSTILE_PROMPT, output_uri=f"file://{videos}/sensor.mp4"
        )
    )
    write_batch_tasks_dag(dags, videos, image_url)
    env = airflow_env(
        HOME,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=str(settings.SQL_ALCHEMY_CONN),  # the DB this process reads
        AIRFLOW_CONN_LTX2_DEFAULT=simulator_process.connection(),
        LTX2_EXAMPLE_DEFERRABLE="true",
        LTX2_EXAMPLE_OUTPUT_DIR=str(videos),
        LTX2_EXAMPLE_POLL_INTERVAL="0.5",
        LTX2_EXAMPLE_IMAGE_BASE_URL=f"{simulator_process.base_url}/files/",
        LTX2_EXAMPLE_IMAGE_URL=image_url,
    )
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    for dag_id in (BATCH, TASKFLOW, SENSOR, BATCH_TASKS):
        dags_test(env, dag_id)

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run_ids = {dag_id: run_id for dag_id, run_id in session.execute(select(DagRun.dag_id, DagRun.run_id))}
    return Runs(run_ids=run_ids, simulator_url=simulator_process.base_url, env=env)


@dataclass(frozen=True)
class S3Run:
    run_id: str
    s3: Any  # a boto3 client of the bucket


@pytest.fixture(scope="module")
def s3_run(runs: Runs) -> Iterator[S3Run]:
    """A finished run of the object storage example, its mapped videos in S3 (moto's server, in a thread)."""
    boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3, s3fs, moto)")
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key=S3_SECRET,
        )
        s3.create_bucket(Bucket=S3_BUCKET)
        connection = {
            "conn_type": "aws",
            "login": "testing",
            "password": S3_SECRET,
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        # A connection id of its own: Airflow caches an object store per connection id in the process, and
        # other modules' tests point `ltx2_s3` at another S3 server.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_LTX2_PLUGIN_S3", json.dumps(connection))  # what the api-server looks up
            storage = {"LTX2_EXAMPLE_BUCKET": S3_BUCKET, "LTX2_EXAMPLE_STORAGE_CONN_ID": "ltx2_plugin_s3"}
            env = {**runs.env, "AIRFLOW_CONN_LTX2_PLUGIN_S3": json.dumps(connection), **storage}
            dags_test(env, OBJECT_STORAGE)
            with create_session() as session:
                run_id = session.scalar(select(DagRun.run_id).where(DagRun.dag_id == OBJECT_STORAGE))
            yield S3Run(run_id=str(run_id), s3=s3)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(runs: Runs) -> Iterator[Any]:
    """The api-server's app (``airflow api-server`` serves ``create_app()``), with users who must log in."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # what airflow.api_fastapi.main sets
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        from airflow.api_fastapi.app import create_app

        with TestClient(create_app()) as test_client:
            yield test_client


def login(role: str | None = "viewer", teams: list[str] | None = None) -> dict[str, str]:
    """The Authorization header of a user of the simple auth manager."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    user = SimpleAuthManagerUser(username=f"{role}-{'-'.join(teams or [])}", role=role, teams=teams)
    return {"Authorization": f"Bearer {get_auth_manager().generate_jwt(user)}"}


def run_url(runs: Runs, dag_id: str, run_id: str | None = None) -> str:
    return f"/ltx2/dags/{dag_id}/runs/{quote(run_id or runs.run_ids[dag_id], safe='')}"


def tab_url(runs: Runs, dag_id: str, task_id: str, map_index: int | str = -1, run_id: str | None = None) -> str:
    return f"{run_url(runs, dag_id, run_id)}/tasks/{task_id}/video?map_index={map_index}"


def stream_url(runs: Runs, dag_id: str, task_id: str, map_index: int = -1) -> str:
    return f"{run_url(runs, dag_id)}/tasks/{task_id}/video.mp4?map_index={map_index}"


def row_url(runs: Runs, row_id: str, task_id: str = "batch", run_id: str | None = None) -> str:
    """The stream of one row's video of a batch task."""
    return f"{run_url(runs, BATCH_TASKS, run_id)}/tasks/{task_id}/batch/{row_id}.mp4?map_index=-1"


def read_xcom(dag_id: str, run_id: str, task_id: str, map_index: int, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run_id, key=key, task_ids=task_id, dag_ids=dag_id, map_indexes=map_index)
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def write_xcom(dag_id: str, run_id: str, task_id: str, map_index: int, value: Any, key: str = "return_value") -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        if value is None:
            session.execute(
                delete(XComModel).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run_id,
                    XComModel.task_id == task_id,
                    XComModel.map_index == map_index,
                    XComModel.key == key,
                )
            )
        else:
            XComModel.set(
                key, value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, session=session
            )


@contextmanager
def xcom_replaced(dag_id: str, run_id: str, task_id: str, map_index: int, value: Any) -> Iterator[None]:
    """The task's return value changed for the ``with`` block (as the REST API lets an editor do), then restored."""
    original = read_xcom(dag_id, run_id, task_id, map_index)
    write_xcom(dag_id, run_id, task_id, map_index, value)
    try:
        yield
    finally:
        write_xcom(dag_id, run_id, task_id, map_index, original)


def video_file(result: dict[str, Any]) -> Path:
    return Path(result["output_uri"].removeprefix("file://"))


# ---------------------------------------------------------------- the video tab


VIDEO_TASKS = [
    (BATCH, "generate_video", 0),
    (BATCH, "generate_video", 2),
    (TASKFLOW, "animate", 1),
    (SENSOR, "wait", -1),
]


@pytest.mark.dags
@pytest.mark.parametrize(("dag_id", "task_id", "map_index"), VIDEO_TASKS)
def test_tab_plays_the_video_and_shows_its_facts(
    client: Any, runs: Runs, dag_id: str, task_id: str, map_index: int
) -> None:
    result = read_xcom(dag_id, runs.run_ids[dag_id], task_id, map_index)
    reply = client.get(tab_url(runs, dag_id, task_id, map_index), headers=login())
    assert reply.status_code == 200, reply.text
    page = reply.text
    src = f"../../tasks/{task_id}/video.mp4?map_index={map_index}"
    assert f'<video controls preload="metadata" src="{src}">' in page
    assert f'data-field="request_id">{result["request_id"]}<' in page
    assert f'data-field="price">USD {PRICE_PER_VIDEO_USD:.2f}<' in page
    assert f"({result['bytes']:,} bytes)" in page and result["bytes"] == video_file(result).stat().st_size
    assert result["submitted_at"] in page and result["completed_at"] in page
    assert f"<th>duration</th><td>{result['request']['duration']}</td>" in page
    if dag_id != SENSOR:
        assert result["request"]["prompt"] in page
    # Scripts may not run in the page at all, and only the plugin's own stream may play in it.
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "media-src 'self';" in policy and "script-src" not in policy


@pytest.mark.dags
def test_prompt_is_escaped(client: Any, runs: Runs) -> None:
    page = client.get(tab_url(runs, SENSOR, "wait"), headers=login()).text
    assert "Lighthouse &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;waves&lt;/b&gt;" in page
    assert "<script" not in page and "<b>" not in page


@pytest.mark.dags
def test_unmapped_task_placeholder_means_no_map_index(client: Any, runs: Runs) -> None:
    """The UI leaves ``{MAP_INDEX}`` unfilled on an unmapped task's page."""
    placeholder = client.get(tab_url(runs, SENSOR, "wait", "{MAP_INDEX}"), headers=login())
    assert placeholder.status_code == 200
    assert placeholder.text == client.get(tab_url(runs, SENSOR, "wait"), headers=login()).text


@pytest.mark.dags
def test_video_left_at_the_gateway_plays_from_its_url(client: Any, runs: Runs) -> None:
    result = read_xcom(SENSOR, runs.run_ids[SENSOR], "url_only", -1)
    assert result["output_uri"] is None and result["video_url"].startswith(runs.simulator_url)
    reply = client.get(tab_url(runs, SENSOR, "url_only"), headers=login())
    assert f'<video controls preload="metadata" src="{result["video_url"]}">' in reply.text
    assert "not downloaded" in reply.text
    assert f"media-src 'self' {runs.simulator_url};" in reply.headers["content-security-policy"]
    assert client.get(stream_url(runs, SENSOR, "url_only"), headers=login()).status_code == 404


@pytest.mark.dags
def test_submit_without_waiting_says_who_shows_the_video(client: Any, runs: Runs) -> None:
    page = client.get(tab_url(runs, SENSOR, "submit"), headers=login()).text
    request_id = read_xcom(SENSOR, runs.run_ids[SENSOR], "submit", -1)["request_id"]
    assert "<video" not in page
    assert f"submitted as request {request_id}: this task does not wait for the video" in page


@pytest.mark.dags
def test_task_of_another_kind_says_so(client: Any, runs: Runs) -> None:
    reply = client.get(tab_url(runs, BATCH, "read_requests"), headers=login())
    assert reply.status_code == 200
    assert "This task (@task) is not an LTX-2 task: it has no video." in reply.text
    assert client.get(stream_url(runs, BATCH, "read_requests"), headers=login()).status_code == 404


def create_run(dag_id: str, run_id: str = "pending") -> str:
    """A new run of the DAG, created as the scheduler would: task instances, no rendered fields nor XCom."""
    import pendulum
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        assert dag is not None
        dag.create_dagrun(
            run_id=run_id,
            run_after=pendulum.now("UTC"),
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
    return run_id


@pytest.fixture(scope="module")
def pending_run(runs: Runs) -> str:
    """A second run of the sensor DAG; its tasks get states per test."""
    return create_run(SENSOR)


def set_state(run_id: str, task_id: str, state: str | None, dag_id: str = SENSOR) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
            .values(state=state)
        )


@pytest.mark.dags
@pytest.mark.parametrize(
    ("state", "failure", "expected"),
    [
        (None, None, "not started yet"),
        ("queued", None, "queued: the video has not been requested yet."),
        ("running", None, "running: submitting the request or waiting for the video."),
        ("deferred", None, "deferred: waiting for the gateway to finish the video."),
        ("up_for_retry", None, "up for retry"),
        ("failed", None, "failed: no video."),
        ("failed", "LTX-2 request r-1 failed: content policy <violation>", "failed: no video."),
    ],
)
def test_task_without_a_video_says_why(
    client: Any, runs: Runs, pending_run: str, state: str | None, failure: str | None, expected: str
) -> None:
    set_state(pending_run, "url_only", state)
    write_xcom(SENSOR, pending_run, "url_only", -1, failure, key="ltx2_failure")
    reply = client.get(tab_url(runs, SENSOR, "url_only", run_id=pending_run), headers=login())
    assert reply.status_code == 200
    assert "<video" not in reply.text
    assert f"No video yet. This task is {expected}" in reply.text
    if failure:
        assert "The gateway said" in reply.text
        assert "content policy &lt;violation&gt;" in reply.text
    else:
        assert "The gateway said" not in reply.text


# ---------------------------------------------------------------- the stream


def batch_folder(runs: Runs, task_id: str = "batch") -> Path:
    return Path(read_xcom(BATCH_TASKS, runs.run_ids[BATCH_TASKS], task_id, -1)["output_prefix"].removeprefix("file://"))


def manifest(runs: Runs, task_id: str = "batch") -> list[dict[str, Any]]:
    """The manifest the batch task wrote, one entry a row."""
    lines = (batch_folder(runs, task_id) / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.dags
@pytest.mark.parametrize("route", ["video", "batch row"])
def test_stream_serves_the_file_and_its_byte_ranges(client: Any, runs: Runs, route: str) -> None:
    if route == "video":
        content = video_file(read_xcom(BATCH, runs.run_ids[BATCH], "generate_video", 1)).read_bytes()
        url = stream_url(runs, BATCH, "generate_video", 1)
    else:
        content = (batch_folder(runs) / "row-21.mp4").read_bytes()
        url = row_url(runs, "row-21")
    size = len(content)

    whole = client.get(url, headers=login())
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"

    for header, first, last in (
        ("bytes=100-199", 100, 199),
        ("bytes=0-", 0, size - 1),
        ("bytes=-50", size - 50, size - 1),
        (f"bytes={size - 10}-{size + 100}", size - 10, size - 1),
        (f"bytes=0-{'9' * 4301}", 0, size - 1),
    ):
        part = client.get(url, headers={**login(), "Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert part.content == content[first : last + 1]
        assert int(part.headers["content-length"]) == last - first + 1

    for header in (f"bytes={size}-", "bytes=50-10", "bytes=-0", f"bytes={'9' * 4301}-"):
        refused = client.get(url, headers={**login(), "Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{size}"

    for header in ("bytes=0-1,5-6", "bytes=x-", f"bytes={'-' * 4301}"):  # not one byte range: ignored
        ignored = client.get(url, headers={**login(), "Range": header})
        assert ignored.status_code == 200 and ignored.content == content, header


@pytest.mark.dags
def test_forged_output_uri_is_not_served(client: Any, runs: Runs) -> None:
    """XCom is editable through the REST API; the stream serves only the file the task itself rendered."""
    run_id = runs.run_ids[BATCH]
    result = read_xcom(BATCH, run_id, "generate_video", 0)
    other_video = read_xcom(BATCH, run_id, "generate_video", 1)["output_uri"]
    url = stream_url(runs, BATCH, "generate_video", 0)
    for forged in (other_video, "file:///etc/passwd", f"{result['output_uri']}/../../../../../etc/passwd"):
        with xcom_replaced(BATCH, run_id, "generate_video", 0, {**result, "output_uri": forged}):
            assert client.get(url, headers=login()).status_code == 403, forged
    assert client.get(url, headers=login()).status_code == 200


@pytest.mark.dags
def test_video_without_rendered_fields_is_not_served(client: Any, runs: Runs, pending_run: str) -> None:
    """Airflow keeps a task's last 30 rendered fields: without its rendered output_uri, no file is served,
    whatever its XCom names (here the MP4 of another run, then another file); the pages play the gateway's URL."""
    result = read_xcom(SENSOR, runs.run_ids[SENSOR], "wait", -1)
    content = video_file(result).read_bytes()
    set_state(pending_run, "wait", "success")
    url = f"{run_url(runs, SENSOR, pending_run)}/tasks/wait/video.mp4"
    player = f'<video controls preload="metadata" src="{result["video_url"]}">'
    for forged in (result, {**result, "output_uri": "file:///etc/passwd"}):
        with xcom_replaced(SENSOR, pending_run, "wait", -1, forged):
            stream = client.get(url, headers={**login(), "Range": "bytes=0-"})
            tab = client.get(tab_url(runs, SENSOR, "wait", run_id=pending_run), headers=login()).text
            gallery = client.get(f"{run_url(runs, SENSOR, pending_run)}/videos", headers=login()).text
        assert stream.status_code == 403 and content[:64] not in stream.content, forged
        assert "Airflow no longer keeps the rendered output_uri of wait: its files are not served" in tab
        assert player in tab and player in gallery
        assert "video.mp4" not in tab and "video.mp4" not in gallery
    with xcom_replaced(SENSOR, pending_run, "wait", -1, {**result, "video_url": None}):  # nothing else to play
        tab = client.get(tab_url(runs, SENSOR, "wait", run_id=pending_run), headers=login()).text
        gallery = client.get(f"{run_url(runs, SENSOR, pending_run)}/videos", headers=login()).text
    refused = '<p class="status" data-status="refused">Airflow no longer keeps the rendered output_uri of wait'
    assert refused in tab and refused in gallery and "<video" not in tab + gallery


@pytest.mark.dags
def test_video_in_object_storage_is_streamed_with_its_connection(client: Any, runs: Runs, s3_run: S3Run) -> None:
    """The mapped task set ``output_conn_id``: the stream reads the S3 object through that connection."""
    result = read_xcom(OBJECT_STORAGE, s3_run.run_id, "generate_video", 1)
    bucket, key = result["output_uri"].removeprefix("s3://").split("/", 1)
    assert bucket == S3_BUCKET
    tab = client.get(tab_url(runs, OBJECT_STORAGE, "generate_video", 1, run_id=s3_run.run_id), headers=login())
    assert tab.status_code == 200 and "<video" in tab.text
    assert f"s3://{S3_BUCKET}/{key}" in tab.text and S3_SECRET not in tab.text

    url = f"{run_url(runs, OBJECT_STORAGE, s3_run.run_id)}/tasks/generate_video/video.mp4?map_index=1"
    part = client.get(url, headers={**login(), "Range": "bytes=10-99"})
    assert part.status_code == 206, part.text
    assert part.content == s3_run.s3.get_object(Bucket=bucket, Key=key)["Body"].read()[10:100]


def test_store_connection_comes_from_the_task() -> None:
    """Read from the serialized DAG as the api-server has it: set on a mapped task, rendered when templated."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_provider_ltx2.plugins.app import FoundTask
    from airflow_provider_ltx2.plugins.pages import TaskSlot

    bag = DagBag(str(REPO / "example_dags"))
    tasks = {
        dag_id: DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id])).task_dict["generate_video"]
        for dag_id in (OBJECT_STORAGE, "example_ltx2_single_video")
    }
    slot = TaskSlot(task_id="generate_video", map_index=0, state="success")
    assert FoundTask(tasks[OBJECT_STORAGE], slot, rendered={}).output_conn_id == "aws_default"
    assert FoundTask(tasks["example_ltx2_single_video"], slot, rendered={}).output_conn_id is None
    rendered = {"output_conn_id": "store_of_this_index"}
    assert FoundTask(tasks[OBJECT_STORAGE], slot, rendered=rendered).output_conn_id == "store_of_this_index"


# ---------------------------------------------------------------- the gallery


@pytest.mark.dags
def test_gallery_shows_every_map_index_and_the_total_price(client: Any, runs: Runs) -> None:
    reply = client.get(f"{run_url(runs, BATCH)}/videos", headers=login())
    assert reply.status_code == 200
    page = reply.text
    cards = re.findall(r'<section class="card" data-task="generate_video" data-map-index="(\d+)">', page)
    assert cards == ["0", "1", "2"]
    for index in range(3):
        result = read_xcom(BATCH, runs.run_ids[BATCH], "generate_video", index)
        assert f'src="tasks/generate_video/video.mp4?map_index={index}"' in page
        assert result["request"]["prompt"] in page
    assert 'data-field="total_price">USD 1.80<' in page and "(3 paid, 0 reused)" in page
    assert "read_requests" not in page and "write_manifest" not in page  # not LTX-2 tasks


@pytest.mark.dags
def test_gallery_does_not_charge_a_reused_video(client: Any, runs: Runs) -> None:
    run_id = runs.run_ids[BATCH]
    result = read_xcom(BATCH, run_id, "generate_video", 1)
    with xcom_replaced(BATCH, run_id, "generate_video", 1, {**result, "reused": True}):
        page = client.get(f"{run_url(runs, BATCH)}/videos", headers=login()).text
        tab = client.get(tab_url(runs, BATCH, "generate_video", 1), headers=login()).text
    assert 'data-field="total_price">USD 1.20<' in page and "(2 paid, 1 reused)" in page
    assert "USD 0.00 (reused an earlier request" in tab


@pytest.mark.dags
def test_gallery_of_a_sensor_run(client: Any, runs: Runs) -> None:
    page = client.get(f"{run_url(runs, SENSOR)}/videos", headers=login()).text
    assert re.findall(r'data-task="(\w+)" data-map-index="-1">', page) == ["url_only", "wait", "submit"]
    assert 'data-field="total_price">USD 1.20<' in page  # two videos; the sensor's was paid by the submit
    assert 'src="tasks/wait/video.mp4?map_index=-1"' in page
    assert "submitted as request" in page


# ---------------------------------------------------------------- batch tasks


def batch_tab_url(runs: Runs, task_id: str = "batch", query: str = "", run_id: str | None = None) -> str:
    return tab_url(runs, BATCH_TASKS, task_id, run_id=run_id) + query


def cards(page: str) -> list[str]:
    """The rows of the videos on a batch page, in their order."""
    return re.findall(r'<section class="card" data-row="([^"]+)"', page)


def words(page: str) -> str:
    """The page with its runs of white space made one space, to find a sentence the template wraps."""
    return " ".join(page.split())


@pytest.fixture(scope="module")
def pending_batch_run(runs: Runs) -> str:
    """A second run of the batch tasks' DAG: no rendered fields, no summary; states per test."""
    return create_run(BATCH_TASKS)


@pytest.mark.dags
def test_batch_tab_shows_counts_spend_and_a_page_of_videos(client: Any, runs: Runs) -> None:
    reply = client.get(batch_tab_url(runs), headers=login())
    assert reply.status_code == 200, reply.text
    page = reply.text
    summary = read_xcom(BATCH_TASKS, runs.run_ids[BATCH_TASKS], "batch", -1)
    for name, value in (("total", 30), ("generated", 27), ("reused", 1), ("failed", 2), ("planned", 0)):
        assert summary[name] == value and f'data-field="{name}">{value}<' in page, name
    # Every accepted submit is paid: the 27 generated rows and the 2 failed ones; the reused row is not.
    assert summary["cost_usd"] == summary["estimated_cost_usd"] == round(29 * PRICE_PER_VIDEO_USD, 2) == 17.40
    assert 'data-field="cost">USD 17.40<' in page and 'data-field="estimated_cost">USD 17.40<' in page
    assert f'data-field="manifest_uri">{summary["manifest_uri"]}<' in page
    assert summary["manifest_uri"] == f"{summary['output_prefix']}/manifest.jsonl"
    assert cards(page) == VIDEO_ROWS[:24]
    for row_id in VIDEO_ROWS[:24]:
        assert f'<video controls preload="metadata" src="../../tasks/batch/batch/{row_id}.mp4?map_index=-1">' in page
    assert '<div class="prompt">Harbour at dawn, take 0</div>' in page and "take 29<" not in page
    seed = read_xcom(BATCH_TASKS, runs.run_ids[BATCH_TASKS], "seed", -1)  # made row 10 in the same folder first
    assert seed["output_prefix"] == summary["output_prefix"] and seed["generated"] == len(REUSED_ROWS)
    for row_id in REUSED_ROWS:
        assert f'<section class="card" data-row="{row_id}" data-status="reused">' in page
    assert 'data-field="video_count">28<' in page and "Page 1 of 2" in page
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "media-src 'self';" in policy and "script-src" not in policy
    assert reply.headers["cache-control"] == "no-store" and reply.headers["x-content-type-options"] == "nosniff"


@pytest.mark.dags
def test_batch_tab_pages_through_the_videos(client: Any, runs: Runs) -> None:
    first = client.get(batch_tab_url(runs), headers=login()).text
    assert '<a href="?map_index=-1&amp;page=2&amp;failed_page=1">next</a>' in first
    second = client.get(batch_tab_url(runs, query="&page=2"), headers=login())
    assert second.status_code == 200
    assert cards(second.text) == VIDEO_ROWS[24:] and "Page 2 of 2" in second.text
    assert '<a href="?map_index=-1&amp;page=1&amp;failed_page=1">previous</a>' in second.text
    assert client.get(batch_tab_url(runs, query="&page=3"), headers=login()).status_code == 404
    assert client.get(batch_tab_url(runs, query="&failed_page=2"), headers=login()).status_code == 404


@pytest.mark.dags
@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=",
        "page=1000000",
        f"page={'9' * 500}",
        "page=2%2F..",
        "page=1%00",
        "failed_page=0",
        "failed_page=x",
    ],
)
def test_batch_tab_refuses_a_bad_page(client: Any, runs: Runs, query: str) -> None:
    assert client.get(batch_tab_url(runs, query=f"&{query}"), headers=login()).status_code == 400


@pytest.mark.dags
def test_batch_tab_lists_the_failed_rows_with_their_errors(client: Any, runs: Runs) -> None:
    page = client.get(batch_tab_url(runs), headers=login()).text
    assert re.findall(r'<tr data-row="([^"]+)">', page) == list(FAILED_ROWS)
    assert 'data-field="failed_count">2<' in page
    failed = {entry["id"]: entry for entry in manifest(runs) if entry["status"] == "failed"}
    assert sorted(failed) == list(FAILED_ROWS)
    for row_id, entry in failed.items():
        # The gateway's words for the job the batch paid for, as the operator recorded them.
        assert entry["request_id"] and entry["error"].endswith(SIMULATED_FAILURE), entry
        assert entry["request_id"] in entry["error"]
        assert f'<tr data-row="{row_id}"><td>{row_id}</td>' in page
        assert f'<td class="error">{entry["error"]}</td>' in page
    # Row 17's hostile prompt is escaped in the table of failed rows too.
    assert (
        '<td class="prompt">Lighthouse &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;waves&lt;/b&gt;'
        " [sim:fail]</td>" in page
    )
    assert "row-05.mp4" not in page and "row-17.mp4" not in page  # no video for a failed row


@pytest.mark.dags
def test_batch_prompt_is_escaped(client: Any, runs: Runs) -> None:
    page = client.get(batch_tab_url(runs), headers=login()).text
    assert "row-03" in cards(page)
    assert "Lighthouse &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;waves&lt;/b&gt;" in page
    assert "<script" not in page and "<b>" not in page


@pytest.mark.dags
def test_dry_run_batch_shows_the_plan_and_its_estimate(client: Any, runs: Runs) -> None:
    page = client.get(batch_tab_url(runs, "dry_run"), headers=login()).text
    assert 'data-field="planned">5<' in page and 'data-field="generated">0<' in page
    assert 'data-field="cost">USD 0.00<' in page
    assert "Dry run: 5 rows planned, not generated; estimated cost USD 3.00." in words(page)
    assert "<video" not in page and cards(page) == []


@pytest.mark.dags
@pytest.mark.parametrize(
    ("row_id", "expected"),
    [
        ("..", 400),
        ("%2E%2E", 400),
        (".", 400),
        ("row%2001", 400),
        ("row-01%00", 400),
        ("a" * 129, 400),
        ("..%2F..%2F..%2Fdry_run%2Fmanifest", 404),
        ("row-01%2F..%2F..%2Fbatch%2Frow-01", 404),
        ("...", 404),
        ("row-99", 404),  # not in the manifest
        ("row-05", 404),  # failed: no video
        ("row-01.mp4", 404),
        ("manifest", 404),
    ],
)
def test_row_ids_outside_the_manifest_are_refused(client: Any, runs: Runs, row_id: str, expected: int) -> None:
    assert client.get(row_url(runs, row_id), headers=login()).status_code == expected


@pytest.mark.dags
def test_rows_are_served_only_from_their_own_batch_task(client: Any, runs: Runs) -> None:
    assert client.get(row_url(runs, "row-01"), headers=login()).status_code == 200
    assert client.get(row_url(runs, "row-01", task_id="dry_run"), headers=login()).status_code == 404  # planned
    sensor_row = f"{run_url(runs, SENSOR)}/tasks/wait/batch/row-01.mp4"
    assert client.get(sensor_row, headers=login()).status_code == 404  # not a batch task
    # ... and a batch task has no single video
    assert client.get(f"{run_url(runs, BATCH_TASKS)}/tasks/batch/video.mp4", headers=login()).status_code == 404


@pytest.mark.dags
def test_row_whose_file_is_not_an_mp4_is_not_served(client: Any, runs: Runs) -> None:
    video = batch_folder(runs) / "row-02.mp4"
    original = video.read_bytes()
    try:
        video.write_bytes(b"#!/bin/sh\necho this is not a video\n")
        assert client.get(row_url(runs, "row-02"), headers=login()).status_code == 403
        video.unlink()
        assert client.get(row_url(runs, "row-02"), headers=login()).status_code == 404
    finally:
        video.write_bytes(original)
    assert client.get(row_url(runs, "row-02"), headers=login()).status_code == 200


@pytest.mark.dags
def test_forged_batch_folder_is_neither_read_nor_served(client: Any, runs: Runs) -> None:
    """XCom is editable through the REST API; a batch is read only from the output_prefix the task rendered."""
    run_id = runs.run_ids[BATCH_TASKS]
    summary = read_xcom(BATCH_TASKS, run_id, "batch", -1)
    dry_run = read_xcom(BATCH_TASKS, run_id, "dry_run", -1)
    for forged in (
        {**summary, "output_prefix": dry_run["output_prefix"]},
        {**summary, "manifest_uri": dry_run["manifest_uri"]},
        {**summary, "output_prefix": "file:///etc", "manifest_uri": "file:///etc/manifest.jsonl"},
        {**summary, "manifest_uri": summary["output_prefix"] + "/../../../../etc/manifest.jsonl"},
        dry_run,
    ):
        with xcom_replaced(BATCH_TASKS, run_id, "batch", -1, forged):
            assert client.get(row_url(runs, "row-01"), headers=login()).status_code == 403, forged
            page = client.get(batch_tab_url(runs), headers=login())
            assert page.status_code == 200 and "<video" not in page.text and cards(page.text) == []
            assert "is not the folder it rendered" in page.text
    assert client.get(row_url(runs, "row-01"), headers=login()).status_code == 200


@pytest.mark.dags
def test_batch_without_rendered_fields_is_not_served(client: Any, runs: Runs, pending_batch_run: str) -> None:
    """Airflow keeps a task's last 30 rendered fields: without them, a batch's summary says nothing is served."""
    summary = read_xcom(BATCH_TASKS, runs.run_ids[BATCH_TASKS], "batch", -1)
    set_state(pending_batch_run, "batch", "success", dag_id=BATCH_TASKS)
    with xcom_replaced(BATCH_TASKS, pending_batch_run, "batch", -1, summary):
        stream = client.get(row_url(runs, "row-01", run_id=pending_batch_run), headers=login())
        assert stream.status_code == 403
        page = client.get(batch_tab_url(runs, run_id=pending_batch_run), headers=login()).text
    assert 'data-field="generated">27<' in page and "<video" not in page
    assert "Airflow no longer keeps the rendered output_prefix" in page


@pytest.mark.dags
@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, "not started yet"),
        ("queued", "queued: the video has not been requested yet."),
        ("running", "running: submitting the request or waiting for the video."),
        ("up_for_retry", "up for retry"),
    ],
)
def test_batch_without_a_summary_says_its_state(
    client: Any, runs: Runs, pending_batch_run: str, state: str | None, expected: str
) -> None:
    set_state(pending_batch_run, "batch", state, dag_id=BATCH_TASKS)
    reply = client.get(batch_tab_url(runs, run_id=pending_batch_run), headers=login())
    assert reply.status_code == 200
    assert f"No batch summary yet. This task is {expected}" in reply.text
    assert "<video" not in reply.text and "is not the folder" not in reply.text


@pytest.mark.dags
def test_failed_batch_shows_the_manifest_it_left(client: Any, runs: Runs) -> None:
    """A batch with too many failed rows fails after writing its manifest: its rows are still shown."""
    run_id = runs.run_ids[BATCH_TASKS]
    set_state(run_id, "batch", "failed", dag_id=BATCH_TASKS)
    try:
        with xcom_replaced(BATCH_TASKS, run_id, "batch", -1, None):
            page = client.get(batch_tab_url(runs), headers=login()).text
            assert client.get(row_url(runs, "row-01"), headers=login()).status_code == 200
    finally:
        set_state(run_id, "batch", "success", dag_id=BATCH_TASKS)
    assert "No batch summary yet. This task is failed: no video." in page
    assert cards(page) == VIDEO_ROWS[:24] and '<tr data-row="row-05">' in page


@pytest.mark.dags
def test_gallery_counts_each_batch_task(client: Any, runs: Runs) -> None:
    page = words(client.get(f"{run_url(runs, BATCH_TASKS)}/videos", headers=login()).text)
    assert (
        '<li data-batch="batch" data-map-index="-1">batch: 28 videos in its batch (2 failed), spent USD 17.40: '
        'see the task\'s "LTX-2 video" tab.' in page
    )
    assert "seed: 1 video in its batch (0 failed), spent USD 0.60" in page
    assert "dry_run: 0 videos in its batch (0 failed, 5 planned), spent USD 0.00" in page
    assert "This run has no LTX-2 tasks" not in page and "<video" not in page and "without a video" not in page


# ---------------------------------------------------------------- access


def every_page(runs: Runs) -> list[str]:
    """One URL of each route of the plugin, for finished runs of each DAG."""
    return [
        *(tab_url(runs, dag_id, task_id, index) for dag_id, task_id, index in VIDEO_TASKS),
        *(stream_url(runs, dag_id, task_id, index) for dag_id, task_id, index in VIDEO_TASKS),
        *(f"{run_url(runs, dag_id)}/videos" for dag_id in (BATCH, TASKFLOW, SENSOR, BATCH_TASKS)),
        batch_tab_url(runs),
        batch_tab_url(runs, "dry_run"),
        row_url(runs, "row-01"),
    ]


@pytest.mark.dags
def test_every_route_of_the_plugin_is_covered(client: Any, runs: Runs) -> None:
    """The access tests below call each route the plugin serves: a new route must join them."""
    from airflow_provider_ltx2.plugins.ltx2 import Ltx2Plugin

    plugin_app = Ltx2Plugin.fastapi_apps[0]["app"]._app
    assert plugin_app is not None  # built by the first request, inside the api-server's app
    called = [url.removeprefix("/ltx2").split("?")[0] for url in every_page(runs)]
    called.append("/spend")  # not a DAG's page: its access tests (401, 403, a team's DAGs) are in test_spend_view.py
    for route in plugin_app.routes:
        pattern = re.sub(r"\{\w+\}", "[^/]+", route.path)
        assert any(re.fullmatch(pattern, url) for url in called), route.path


@pytest.mark.dags
def test_no_login_is_401(client: Any, runs: Runs) -> None:
    for url in [*every_page(runs), "/ltx2/dags/no_such_dag/runs/no_such_run/videos"]:
        reply = client.get(url)
        assert reply.status_code == 401, url
        assert "<video" not in reply.text


@pytest.mark.dags
def test_tampered_token_is_refused(client: Any, runs: Runs) -> None:
    header = login()["Authorization"]
    tampered = {"Authorization": header[:-4] + ("AAAA" if not header.endswith("AAAA") else "BBBB")}
    for url in every_page(runs):
        assert client.get(url, headers=tampered).status_code in (401, 403), url


@pytest.mark.dags
def test_cookie_of_the_ui_login_is_accepted(client: Any, runs: Runs) -> None:
    """The tab is an iframe of the UI: its requests carry the UI's ``_token`` cookie, not a header."""
    token = login()["Authorization"].removeprefix("Bearer ")
    reply = client.get(tab_url(runs, SENSOR, "wait"), headers={"Cookie": f"_token={token}"})
    assert reply.status_code == 200 and "<video" in reply.text


@pytest.fixture
def dags_owned_by_team() -> Iterator[None]:
    """The DAGs' bundle belongs to a team: Airflow then lets only that team's users read them."""
    from airflow.models.dag import clear_team_name_cache
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        bundle = session.get(DagBundleModel, "dags-folder")
        assert bundle is not None
        bundle.teams.append(Team(name=TEAM))
    clear_team_name_cache()  # Airflow caches a DAG's team for [core] team_name_cache_ttl seconds
    yield
    with create_session() as session:
        bundle = session.get(DagBundleModel, "dags-folder")
        bundle.teams.clear()
        session.delete(session.get(Team, TEAM))
    clear_team_name_cache()


@pytest.mark.dags
def test_user_without_access_to_the_dag_is_403(client: Any, runs: Runs, dags_owned_by_team: None) -> None:
    outsider, no_role, member = login(teams=["other"]), login(role=None), login(teams=[TEAM])
    for url in every_page(runs):
        assert client.get(url, headers=outsider).status_code == 403, url
        assert client.get(url, headers=no_role).status_code == 403, url
        assert client.get(url, headers=member).status_code == 200, url


@pytest.mark.dags
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ltx2/dags/no_such_dag/runs/{run}/videos", 404),
        (f"/ltx2/dags/{BATCH}/runs/no_such_run/videos", 404),
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/no_such_task/video", 404),
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/animate/video?map_index=0", 404),  # another DAG's task
        (f"/ltx2/dags/{TASKFLOW}/runs/{{run}}/tasks/animate/video", 404),  # a run of another DAG
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/generate_video/video?map_index=3", 404),  # no such index
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/generate_video/video.mp4?map_index=-1", 404),  # mapped task
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/generate_video/video?map_index=0/../1", 400),
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/generate_video/video?map_index=-2", 400),
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/..%2F..%2F..%2Fvideos/video", 404),
        (f"/ltx2/dags/{BATCH}/runs/..%2F{{run}}/videos", 404),
        (f"/ltx2/dags/{BATCH}/runs/{{run}}/tasks/generate_video/..%2F..%2F..%2F..%2Fetc%2Fpasswd", 404),
        ("/ltx2/dags/%2E%2E/runs/{run}/videos", 404),
    ],
)
def test_unknown_and_escaping_ids_are_refused(client: Any, runs: Runs, path: str, expected: int) -> None:
    url = path.replace("{run}", quote(runs.run_ids[BATCH], safe=""))
    assert client.get(url, headers=login()).status_code == expected


@pytest.mark.dags
def test_no_secret_in_any_page(client: Any, runs: Runs) -> None:
    """No page holds the gateway key, nor the signature of a signed image URL the operator sent."""
    run_id = runs.run_ids[BATCH]
    result = read_xcom(BATCH, run_id, "generate_video", 2)
    request = {**result["request"], "image_url": SIGNED_IMAGE}  # the batch's row 7 has it too
    with xcom_replaced(BATCH, run_id, "generate_video", 2, {**result, "request": request}):
        pages = [client.get(url, headers=login()).text for url in every_page(runs) if ".mp4" not in url]
    for page in pages:
        assert KEY not in page and "X-Amz-Signature" not in page and "AKIA123" not in page
    # The batch's row 7 was generated from the signed URL, which its manifest keeps as given: no page shows it.
    row_7 = next(entry for entry in manifest(runs) if entry["id"] == "row-07")
    assert row_7["status"] == "generated" and row_7["image_url"] == SIGNED_IMAGE
    assert any("https://bucket.s3.amazonaws.com/in/1.jpg (query not shown)" in page for page in pages)
