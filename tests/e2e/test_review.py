"""Review before publish (``example_ltx2_review``): a batch, a person's choice through the REST API, the
chosen videos published. The import check runs in the default suite, on every supported Airflow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import airflow
import pytest
from packaging.version import Version

from tests.conftest import import_example
from tests.e2e.deployment import Deployment, assert_succeeded, submits, wait_for

REVIEW = "example_ltx2_review"
HAS_HITL = Version(airflow.__version__).release[:2] >= (3, 1)
NEEDS_HITL = pytest.mark.skipif(
    not HAS_HITL,
    reason="human-in-the-loop operators (the review task) need Airflow 3.1+; on older Airflow the "
    "example defines no DAG",
)


def test_the_review_example_imports_on_every_supported_airflow(tmp_path: Path) -> None:
    """Airflow 3.1+: the DAG and its chain; older: the file imports cleanly and defines no DAG."""
    found = import_example(REVIEW, tmp_path, detail_of="review")
    assert found["errors"] == {}
    if not HAS_HITL:
        assert found["dags"] == []
        return
    assert found["chain"] == {
        "generate_video": [],
        "describe_videos": ["generate_video"],
        "review": ["describe_videos"],
        "publish": ["generate_video", "review"],
    }
    assert found["detail"] == {
        "type": "HITLOperator",
        "options": ["harbour", "market", "orchard", "Publish none"],
        "multiple": True,
    }


@NEEDS_HITL
@pytest.mark.timeout(600)
def test_the_approved_videos_are_published(e2e: Deployment) -> None:
    assert e2e.sim is not None
    # Jobs long enough for each deferring task's process to have exited before its trigger fires: a quicker
    # event makes Airflow's LocalExecutor report the old process's end for the resumed try, failing it
    # ("state changed externally"), a race of the executor's, not of the task.
    e2e.sim.configure(processing_seconds=15)
    wait_for(f"DAG {REVIEW} to be parsed", lambda: e2e.api("GET", f"/dags/{REVIEW}", check=False).ok, timeout=240)
    errors = e2e.api("GET", "/importErrors").json()["import_errors"]
    assert not [error for error in errors if REVIEW in error["filename"]], errors
    run_id = e2e.trigger(REVIEW)
    run = f"/dags/{REVIEW}/dagRuns/{run_id}"

    def awaiting_input() -> bool:
        state = e2e.api("GET", f"{run}/taskInstances/review").json()["state"]
        if state in ("failed", "upstream_failed"):
            raise AssertionError(f"review is {state}\n{e2e.diagnostics([(REVIEW, run_id)])}")
        return state == "awaiting_input"

    try:
        wait_for("the review task to wait for input", awaiting_input, timeout=240)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{e2e.diagnostics([(REVIEW, run_id)])}") from None
    assert submits(e2e) == 3, "the batch was generated before the review"
    detail = e2e.api("GET", f"{run}/taskInstances/review/-1/hitlDetails").json()
    assert detail["options"] == ["harbour", "market", "orchard", "Publish none"] and detail["multiple"]
    for index in range(3):  # each video's task instance page, where its "LTX-2 video" tab is
        page = f"{e2e.api_url}/dags/{REVIEW}/runs/{quote(run_id, safe='')}/tasks/generate_video/mapped/{index}"
        assert f"({page})" in detail["body"], detail["body"]

    # Answer once the deferring task's process has exited, as a person would: an answer within the second
    # the task defers wakes it before its old process ended, which Airflow's LocalExecutor then reports as
    # the end of the new try ("state changed externally"), a race of the executor's, not of the DAG.
    review_ti = e2e.api("GET", f"{run}/taskInstances/review").json()["id"]
    wait_for("the review task's process to exit", lambda: not e2e.task_processes(review_ti), timeout=60)
    time.sleep(3)  # and the executor to have heard of it
    answer = e2e.api(
        "PATCH", f"{run}/taskInstances/review/-1/hitlDetails", json={"chosen_options": ["harbour", "orchard"]}
    ).json()
    assert_succeeded(e2e, [(REVIEW, run_id)])

    published = e2e.output_dir / "review" / "published" / run_id.replace(":", "_")
    assert sorted(path.name for path in published.iterdir()) == ["catalogue.json", "harbour.mp4", "orchard.mp4"]
    catalogue = json.loads((published / "catalogue.json").read_text())
    assert [entry["name"] for entry in catalogue] == ["harbour", "orchard"]
    originals = e2e.output_dir / "review" / run_id.replace(":", "_")
    for entry, index in zip(catalogue, (0, 2), strict=True):  # harbour and orchard are map indexes 0 and 2
        video = published / f"{entry['name']}.mp4"
        assert entry["uri"] == f"file://{video}" and entry["approved_by"] == answer["responded_by"]["name"]
        assert video.read_bytes() == (originals / f"{index}.mp4").read_bytes()
    assert submits(e2e) == 3, "publishing pays for nothing"
    for task_id in ("describe_videos", "publish"):  # both read the mapped results: no false "XCom not found"
        assert "XCom not found" not in e2e.task_log(REVIEW, run_id, task_id, 1), task_id
