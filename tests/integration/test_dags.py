"""The example DAGs under ``airflow dags test`` against the simulator, and the provider seen by Airflow's CLI."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import airflow
import pytest
from packaging.version import Version

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import KEY, REPO, airflow_env, example_dag_env, import_example

pytestmark = [pytest.mark.dags, pytest.mark.slow]

# scripts/test-airflow2.sh runs this file on Airflow 2.11 too, where assets are still called datasets.
AIRFLOW_2 = Version(airflow.__version__).major < 3
HAS_HITL = Version(airflow.__version__).release[:2] >= (3, 1)  # human-in-the-loop operators


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


# ------------------------------------------------------------------------------------------ spend approval

BATCH_REVIEW = "example_ltx2_batch_review"
PRODUCTS = list(csv.DictReader((REPO / "example_dags" / "data" / "products.csv").open(newline="")))
PRICE_USD = 0.60
needs_hitl = pytest.mark.skipif(
    not HAS_HITL,
    reason="human-in-the-loop operators (the approval task) need Airflow 3.1+; on older Airflow the example "
    "defines no DAG",
)


@dataclass(frozen=True)
class Question:
    """A human-in-the-loop task waiting for its answer, as its run shows it."""

    run_id: str
    subject: str
    body: str


def start_dags_test(home: Path, dag_id: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id],
        env=airflow_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_ids(home: Path, dag_id: str) -> set[str]:
    with sqlite3.connect(home / "airflow.db") as db:
        return {run_id for (run_id,) in db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,))}


def wait_for_question(
    home: Path, dag_id: str, task_id: str, earlier_runs: set[str], test: subprocess.Popen[str], timeout: float = 180
) -> Question:
    """The question of ``task_id`` in the new run of ``dag_id``, once it waits for an answer."""
    query = (
        "SELECT ti.run_id, h.subject, h.body FROM hitl_detail h JOIN task_instance ti ON ti.id = h.ti_id "
        "WHERE ti.dag_id = ? AND ti.task_id = ? AND h.responded_at IS NULL"
    )
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if test.poll() is not None:
            raise AssertionError(f"dags test ended before {task_id} asked:\n{test.communicate()[0][-5000:]}")
        with sqlite3.connect(home / "airflow.db") as db:
            waiting = [Question(*row) for row in db.execute(query, (dag_id, task_id)) if row[0] not in earlier_runs]
        if waiting:
            [question] = waiting
            return question
        time.sleep(0.5)
    raise AssertionError(f"{task_id} did not ask within {timeout} s")


# Answers as a person does through the REST API, with Airflow's API app on the same metadata DB (what
# `dags test` waits for). Started with the run: the app takes seconds to load, the answer is then at once.
RESPONDER = """
import sys
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app
with TestClient(create_app("core")) as client:
    path, option = sys.stdin.readline().strip(), sys.stdin.readline().strip()
    reply = client.patch(path, json={"chosen_options": [option]})
print(reply.status_code, reply.text)
"""


def start_responder(home: Path) -> subprocess.Popen[str]:
    env = airflow_env(home, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True")
    return subprocess.Popen(
        [sys.executable, "-c", RESPONDER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answer(responder: subprocess.Popen[str], dag_id: str, run_id: str, task_id: str, option: str) -> dict[str, object]:
    """``PATCH .../taskInstances/{task_id}/-1/hitlDetails`` with ``option`` chosen; the updated details."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails"
    out, err = responder.communicate(f"{path}\n{option}\n", timeout=120)
    assert responder.returncode == 0, err[-3000:]
    status, _, reply = out.strip().splitlines()[-1].partition(" ")
    assert status == "200", reply
    return dict(json.loads(reply))


def finish(test: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    log = test.communicate(timeout=timeout)[0]
    return test.returncode, log


def manifest(output_dir: Path) -> list[dict[str, object]]:
    lines = (output_dir / "batch_review" / "products" / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@dataclass
class ReviewRun:
    """One run of the batch review: its question, what was paid and planned when it asked, and its end."""

    question: Question
    submits_when_asked: int
    plan: list[dict[str, object]]
    returncode: int
    log: str


def run_batch_review(
    simulator: SimulatorProcess,
    home: Path,
    output_dir: Path,
    choice: str,
    before_answer: Callable[[], object] = lambda: None,
    **env: str,
) -> ReviewRun:
    """Run the example under ``dags test``, answer its approval with ``choice`` once it asks."""
    earlier = run_ids(home, BATCH_REVIEW)
    test = start_dags_test(home, BATCH_REVIEW, **example_dag_env(simulator, output_dir, **env))
    responder = start_responder(home)
    try:
        question = wait_for_question(home, BATCH_REVIEW, "approve_spend", earlier, test)
        submits, plan = simulator.stats()["submits"], manifest(output_dir)
        before_answer()
        answered = answer(responder, BATCH_REVIEW, question.run_id, "approve_spend", choice)
        assert answered["chosen_options"] == [choice]
        return ReviewRun(question, submits, plan, *finish(test))
    finally:
        for process in (test, responder):
            if process.poll() is None:
                process.kill()
                process.communicate()


def task_states(home: Path, run_id: str) -> dict[str, str]:
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (BATCH_REVIEW, run_id)
        )
        return dict(rows.fetchall())


def test_batch_review_imports_on_every_supported_airflow(tmp_path: Path) -> None:
    """Airflow 3.1+: the DAG and its chain; older: the file imports cleanly and defines no DAG."""
    found = import_example(BATCH_REVIEW, tmp_path)
    assert found["errors"] == {}
    if not HAS_HITL:
        assert found["dags"] == []
        return
    assert found["chain"] == {
        "read_table": [],
        "price_batch": ["read_table"],
        "approve_spend": ["price_batch"],
        "generate_batch": ["approve_spend", "read_table"],
        "report": ["generate_batch"],
    }


@needs_hitl
def test_batch_review_pays_only_after_approval_then_reuses_everything_and_refuses_to_spend_more_than_approved(
    simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path
) -> None:
    """Deferrable, as the example is written (the batch in the worker is in tests/integration/batches/test_batch.py).

    Three runs on one folder (each run costs half a minute of CPU): the first approved and paid for, the second
    reusing every video, the third with a video deleted between its dry run and the answer, which the approved
    USD 0.00 no longer covers."""
    rows = len(PRODUCTS)
    first = run_batch_review(simulator, airflow_home, tmp_path, "Approve")
    # The dry run priced the table, wrote its plan and paid nothing; the approval shows its figures.
    assert first.submits_when_asked == 0
    assert [(row["id"], row["status"]) for row in first.plan] == [(row["id"], "planned") for row in PRODUCTS]
    estimate = f"USD {rows * PRICE_USD:.2f}"
    question = first.question
    assert question.subject == f"Spend {estimate} on {rows} LTX-2 videos?"
    for shown in (f"**{rows} rows**", f"**{rows}** rows to generate", "**0** rows reused", f"**{estimate}**"):
        assert shown in question.body, question.body
    assert f"`file://{tmp_path}/batch_review/products/manifest.jsonl`" in question.body
    log = first.log
    assert first.returncode == 0, log[-5000:]
    # Approved: each row paid for once, one MP4 each, the manifest of what was made.
    assert simulator.stats()["submits"] == rows
    assert "running trigger in line" in log
    videos = sorted((tmp_path / "batch_review" / "products").glob("*.mp4"))
    assert [video.stem for video in videos] == sorted(row["id"] for row in PRODUCTS)
    assert all(video.read_bytes()[4:8] == b"ftyp" for video in videos)
    made = {row["id"]: row for row in manifest(tmp_path)}
    assert {row["status"] for row in made.values()} == {"generated"}
    assert {row_id: row["output_uri"] for row_id, row in made.items()} == {
        video.stem: f"file://{video}" for video in videos
    }
    # The CSV's text cells converted, its empty cells given the operator's defaults (6 s, 16:9, no audio field).
    fields = {row_id: (row["duration"], row["aspect_ratio"], row.get("generate_audio")) for row_id, row in made.items()}
    assert fields == {
        "teapot": (8, "1:1", True),
        "desk-lamp": (6, "9:16", None),
        "sneaker": (6, "16:9", False),
        "backpack": (6, "16:9", None),
    }
    assert f"Manifest of {rows} rows at file://{tmp_path}/batch_review/products/manifest.jsonl: {rows} generated" in log
    assert task_states(airflow_home, question.run_id) == dict.fromkeys(
        ("read_table", "price_batch", "approve_spend", "generate_batch", "report"), "success"
    )

    # A second run: nothing to generate, nothing paid, every video reused.
    second = run_batch_review(simulator, airflow_home, tmp_path, "Approve")
    log = second.log
    assert second.returncode == 0, log[-5000:]
    assert second.submits_when_asked == rows and {row["status"] for row in second.plan} == {"reused"}
    assert second.question.subject == "Spend USD 0.00 on 0 LTX-2 videos?"
    assert "**0** rows to generate" in second.question.body and f"**{rows}** rows reused" in second.question.body
    assert simulator.stats()["submits"] == rows
    assert {row["status"] for row in manifest(tmp_path)} == {"reused"}
    assert f"{rows} reused, 0 failed; USD 0.00 spent" in log
    assert sorted((tmp_path / "batch_review" / "products").glob("*.mp4")) == videos

    assert KEY not in first.log + second.log, "the key leaked into the logs"
    assert KEY not in db_dump(airflow_home), "the key leaked into the metadata DB"

    # A third run: a video deleted between the dry run and the answer; the approved USD 0.00 no longer covers it.
    teapot = tmp_path / "batch_review" / "products" / "teapot.mp4"
    refused = run_batch_review(simulator, airflow_home, tmp_path, "Approve", before_answer=teapot.unlink)
    assert refused.question.subject == "Spend USD 0.00 on 0 LTX-2 videos?"
    assert refused.returncode != 0
    assert "Ltx2BudgetExceeded" in refused.log and "more than max_cost_usd=0" in refused.log, refused.log[-5000:]
    assert simulator.stats()["submits"] == len(PRODUCTS), "the third batch paid for nothing"
    states = task_states(airflow_home, refused.question.run_id)
    assert (states["generate_batch"], states["report"]) == ("failed", "upstream_failed")


@needs_hitl
def test_batch_review_rejected_pays_nothing(simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path) -> None:
    rejected = run_batch_review(simulator, airflow_home, tmp_path, "Reject")
    assert rejected.returncode == 0, rejected.log[-5000:]
    assert rejected.submits_when_asked == 0 and simulator.stats()["submits"] == 0
    assert manifest(tmp_path) == rejected.plan and {row["status"] for row in rejected.plan} == {"planned"}
    assert not list(tmp_path.rglob("*.mp4"))
    states = task_states(airflow_home, rejected.question.run_id)
    assert states == {
        "read_table": "success",
        "price_batch": "success",
        "approve_spend": "success",
        "generate_batch": "skipped",
        "report": "skipped",
    }


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
