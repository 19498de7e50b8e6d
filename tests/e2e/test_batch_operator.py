"""A table of six generations in one deferrable task (``Ltx2GenerateVideoBatchOperator``) against a gateway
limited to two concurrent jobs (the simulator started with ``--max-concurrent-jobs 2``).

The task keeps two jobs in flight and waits deferred between its rounds: the batch trigger wakes it when a
job ends, it delivers the video, fills the freed slot and defers again. A 429 would show as a submit more
than the rows: one paid submit per row means the batch never asked the gateway for more than it has. A
triggerer restarted while the task waits with jobs in flight changes nothing: the next triggerer runs the
batch's trigger from its kwargs and the batch ends as an undisturbed one does.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from tests.e2e.conftest import jobs_of
from tests.e2e.deployment import (
    FINISHED,
    GATEWAY_SLOTS,
    Deployment,
    assert_batch_delivered,
    assert_succeeded,
    batch_folder,
    return_value,
    running_jobs,
    state_record,
    submits,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

DAG_ID = "e2e_ltx2_batch_operator"
TASK = "generate_videos"
ROW_IDS = ("lighthouse", "fox", "tram", "kettle", "sailboat", "heron")  # the DAG's table
BATCH_TRIGGER = "airflow_provider_ltx2.triggers.ltx2.Ltx2BatchTrigger"
QUEUE_SECONDS, PROCESSING_SECONDS = 1, 3
# The restart test's first two jobs: long enough to be still running once the restarted triggerer has them.
FIRST_JOBS_SECONDS = 30


@pytest.fixture
def gateway(limited: Deployment, e2e: Deployment) -> Deployment:
    """A reset simulator with 4 s jobs that still has the limit it was started with."""
    return jobs_of(e2e, QUEUE_SECONDS, PROCESSING_SECONDS)


def batch_triggers(e2e: Deployment) -> list[dict[str, Any]]:
    return [trigger for trigger in e2e.triggers() if trigger["classpath"] == BATCH_TRIGGER]


def in_flight(trigger: dict[str, Any]) -> set[str]:
    """The request ids a batch trigger polls (its kwargs carry the batch's progress)."""
    return {flight["request_id"] for flight in trigger["kwargs"]["batch"]["in_flight"]}


def assert_batch_result(e2e: Deployment, run_id: str) -> list[dict[str, Any]]:
    """The run succeeded on its first try, one paid submit per row, every row generated; the manifest's lines."""
    e2e.wait_for_runs([(DAG_ID, run_id)])
    mismatches = e2e.sql("SELECT extra FROM log WHERE event = 'state mismatch' AND run_id = %s", run_id)
    assert not mismatches, (
        "the scheduler failed a try of the batch task on an executor event it took for an external kill (e.g. the "
        f"late event of the worker's exit at a deferral, after the batch trigger had already woken it): {mismatches}"
    )
    assert_succeeded(e2e, [(DAG_ID, run_id)])
    [ti] = e2e.task_instances(DAG_ID, run_id)
    assert (ti["state"], ti["try_number"]) == ("success", 1), ti
    assert submits(e2e) == len(ROW_IDS), "one paid submit per row, never a 429"
    lines = assert_batch_delivered(e2e, DAG_ID, run_id, ROW_IDS)
    cost = round(len(ROW_IDS) * PRICE_PER_VIDEO_USD, 2)
    manifest_uri = f"file://{batch_folder(e2e, DAG_ID, run_id)}/manifest.jsonl"
    assert return_value(e2e, DAG_ID, run_id, TASK) == {
        "manifest_uri": manifest_uri,
        "output_prefix": manifest_uri.removesuffix("/manifest.jsonl"),
        "total": len(ROW_IDS),
        "generated": len(ROW_IDS),
        "reused": 0,
        "failed": 0,
        "planned": 0,
        "cost_usd": cost,
        "estimated_cost_usd": cost,
    }
    assert state_record(e2e, DAG_ID, run_id, "ltx2_batch") is None, "the progress is forgotten once the batch is done"
    return lines


def deferrals(e2e: Deployment, run_id: str) -> int:
    """Times the task went deferred; each wake-up resumed it in a worker once (starts = deferrals + 1)."""
    files = e2e.task_log_files(DAG_ID, run_id, TASK, 1)
    assert files and files[0].name == "attempt=1.log", files
    worker_log = files[0].read_text(errors="replace")
    deferred, starts = worker_log.count("Pausing task as DEFERRED"), worker_log.count("Worker startup parse complete")
    assert starts == deferred + 1, f"{starts} worker starts, {deferred} deferrals"
    return deferred


def trigger_log_jobs(e2e: Deployment, run_id: str) -> set[int]:
    """The triggerer jobs that ran the task's triggers (each writes ``attempt=1.log.trigger.<job id>.log``)."""
    names = [path.name for path in e2e.task_log_files(DAG_ID, run_id, TASK, 1)]
    return {int(found.group(1)) for name in names if (found := re.search(r"\.trigger\.(\d+)\.log$", name))}


def test_a_deferrable_batch_keeps_two_jobs_in_flight_and_waits_deferred(gateway: Deployment) -> None:
    run_id = gateway.trigger(DAG_ID)
    states: list[str] = []
    polled: list[set[str]] = []  # the jobs of each batch trigger seen
    deadline = time.monotonic() + 240
    while gateway.run_state(DAG_ID, run_id) not in FINISHED:
        assert time.monotonic() < deadline, gateway.diagnostics([(DAG_ID, run_id)])
        [ti] = gateway.task_instances(DAG_ID, run_id)
        states.append(ti["state"])
        if ti["state"] == "deferred":
            polled += [jobs for trigger in batch_triggers(gateway) if (jobs := in_flight(trigger)) not in polled]
        time.sleep(0.5)

    lines = assert_batch_result(gateway, run_id)
    assert "deferred" in states, f"the task waited deferred: {states}"
    assert polled and all(1 <= len(jobs) <= GATEWAY_SLOTS for jobs in polled), polled
    assert set().union(*polled) <= {line["request_id"] for line in lines}
    deferred = deferrals(gateway, run_id)
    assert deferred >= len(ROW_IDS) // GATEWAY_SLOTS, f"{deferred} deferrals for {len(ROW_IDS)} rows, 2 at a time"
    print(
        f"{len(ROW_IDS)} rows, {submits(gateway)} paid submits; deferred {deferred} times; "
        f"batch triggers seen polling {[len(jobs) for jobs in polled]} jobs"
    )


def test_a_triggerer_restarted_mid_batch_changes_nothing(gateway: Deployment) -> None:
    assert gateway.sim is not None
    gateway.sim.configure(processing_seconds=FIRST_JOBS_SECONDS)
    run_id = gateway.trigger(DAG_ID)
    before = gateway.components["triggerer"].job_id

    def held() -> dict[str, Any] | None:
        triggers = batch_triggers(gateway)
        if len(triggers) != 1 or triggers[0]["triggerer_id"] != before:
            return None
        return triggers[0] if len(in_flight(triggers[0])) == GATEWAY_SLOTS else None

    trigger = wait_for("the batch's trigger with two jobs in the triggerer", held, timeout=120, interval=0.2)
    gateway.sim.configure(processing_seconds=PROCESSING_SECONDS)  # the rows still to submit: short jobs
    [ti] = gateway.task_instances(DAG_ID, run_id)
    assert ti["state"] == "deferred", ti

    stopped_at = time.monotonic()
    gateway.stop("triggerer")
    stopping = time.monotonic() - stopped_at
    assert in_flight(trigger) <= running_jobs(gateway), "the restart comes while the batch's jobs run"
    assert gateway.sql("SELECT id FROM trigger WHERE id = %s", trigger["id"]), "the trigger outlives its triggerer"
    [ti] = gateway.task_instances(DAG_ID, run_id)
    assert ti["state"] == "deferred", ti
    restarted = gateway.start_triggerer("triggerer")

    def taken_over() -> bool:
        rows = gateway.sql("SELECT triggerer_id FROM trigger WHERE id = %s", trigger["id"])
        return bool(rows) and rows[0][0] == restarted.job_id

    wait_for("the restarted triggerer to take the batch's trigger", taken_over, timeout=30, interval=0.2)
    took_over = time.monotonic() - stopped_at
    assert in_flight(trigger) <= running_jobs(gateway), "taken over while the batch's jobs run"
    lines = assert_batch_result(gateway, run_id)
    assert restarted.job_id in trigger_log_jobs(gateway, run_id), "the restarted triggerer ran the batch's triggers"
    assert {line["request_id"] for line in lines} >= in_flight(trigger), "the jobs in flight at the restart delivered"
    print(
        f"triggerer stopped in {stopping:.1f}s with two jobs running, its trigger taken over {took_over:.1f}s after "
        f"the stop; the batch ended {time.monotonic() - stopped_at:.0f}s after it, {submits(gateway)} paid submits"
    )
