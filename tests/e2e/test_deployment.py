"""The provider in a real Airflow 3.3 deployment: PostgreSQL, api-server, scheduler (LocalExecutor),
dag-processor and triggerer as separate processes, runs triggered through the REST API.

Each test also checks how many paid submits reached the simulator. The tests run in file order; the
secrets scan comes last, so it covers the logs and tables every earlier test left behind.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from tests.e2e.deployment import (
    E2E_KEY,
    PARALLELISM,
    POLL_INTERVAL,
    TRIGGERER_HEALTH_THRESHOLD,
    Deployment,
    Run,
    assert_succeeded,
    generations,
    parent,
    process_title,
    processes_titled,
    submits,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)

SINGLE = "example_ltx2_single_video"
BATCH = "example_ltx2_batch_from_csv"
TRIGGER_CLASS = "airflow_provider_ltx2.triggers.ltx2.Ltx2VideoTrigger"


def deferred(e2e: Deployment, runs: list[Run], count: int, timeout: float = 180) -> list[dict[str, Any]]:
    """Wait until ``count`` generate tasks are deferred at once; return them."""

    def enough() -> list[dict[str, Any]] | None:
        waiting = [ti for ti in generations(e2e, runs) if ti["state"] == "deferred"]
        return waiting if len(waiting) >= count else None

    try:
        return wait_for(f"{count} deferred generate tasks", enough, timeout)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{e2e.diagnostics(runs)}") from None


def busy_worker_slots(e2e: Deployment) -> int:
    """LocalExecutor worker processes running a workload now (an idle one is titled ``... <idle>``)."""
    scheduler = e2e.components["scheduler"].pid
    workers = [
        pid for pid in processes_titled("airflow worker -- LocalExecutor", under=scheduler) if parent(pid) == scheduler
    ]
    return sum(1 for pid in workers if not process_title(pid).endswith("<idle>"))


def test_example_dags_wait_deferred_without_holding_a_worker_slot(e2e: Deployment) -> None:
    runs = [(SINGLE, e2e.trigger(SINGLE)), (BATCH, e2e.trigger(BATCH))]
    expected = 4  # one video, plus three from the CSV
    most_deferred_at_once = 0
    seen_deferred: set[tuple[str, str, int]] = set()
    deferred_since: dict[str, float] = {}
    most_busy_slots = 0
    deadline = time.monotonic() + 240
    while not all(state in ("success", "failed") for state in (e2e.run_state(*run) for run in runs)):
        assert time.monotonic() < deadline, e2e.diagnostics(runs)
        tis = generations(e2e, runs)
        waiting = [ti for ti in tis if ti["state"] == "deferred"]
        seen_deferred |= {(ti["dag_id"], ti["task_id"], ti["map_index"]) for ti in waiting}
        most_deferred_at_once = max(most_deferred_at_once, len(waiting))
        most_busy_slots = max(most_busy_slots, busy_worker_slots(e2e))
        now = time.monotonic()
        for ti in waiting:
            # The task's process ends right after it defers; a few seconds later nothing of it may be left.
            if now - deferred_since.setdefault(ti["id"], now) > 3:
                assert not e2e.task_processes(ti["id"]), f"deferred {ti} still has a process"
        if waiting:
            for trigger in e2e.triggers():
                assert trigger["classpath"] == TRIGGER_CLASS
                assert set(trigger["kwargs"]) == {
                    "request_id",
                    "deadline",
                    "polling_url",
                    "ltx2_conn_id",
                    "poll_interval",
                    "submitted_at",
                    "deadline_limit",
                    "retry_policy",
                    "read_timeout",
                    "not_before",
                }
        time.sleep(0.5)

    assert_succeeded(e2e, runs)
    assert len(seen_deferred) == expected, f"every generation waited deferred: {seen_deferred}"
    assert most_deferred_at_once > PARALLELISM, (
        f"{most_deferred_at_once} tasks were deferred at once with {PARALLELISM} worker slots"
    )
    assert most_busy_slots <= PARALLELISM
    made = [
        path for path in e2e.output_dir.rglob("*") if any(run_id.replace(":", "_") in str(path) for _, run_id in runs)
    ]
    videos = [path for path in made if path.suffix == ".mp4"]
    assert len(videos) == expected and all(video.read_bytes()[4:8] == b"ftyp" for video in videos), videos
    [manifest] = [path for path in made if path.name == "manifest.json"]
    assert len(json.loads(manifest.read_text())) == 3
    assert submits(e2e) == expected
    print(f"deferred at once: {most_deferred_at_once}, busy worker slots at most: {most_busy_slots}")


def test_the_taskflow_and_asset_examples_succeed(e2e: Deployment) -> None:
    """``@task.ltx2_video`` (two mapped generations), and an asset event that schedules the consumer DAG."""
    assert e2e.sim is not None
    e2e.sim.configure(processing_seconds=5)
    consumer = "example_ltx2_asset_consumer"
    consumer_runs_before = e2e.api("GET", f"/dags/{consumer}/dagRuns").json()["total_entries"]
    runs = [
        ("example_ltx2_taskflow", e2e.trigger("example_ltx2_taskflow")),
        ("example_ltx2_asset_producer", e2e.trigger("example_ltx2_asset_producer")),
    ]
    assert_succeeded(e2e, runs)

    def consumer_run() -> str | None:
        listed = e2e.api("GET", f"/dags/{consumer}/dagRuns", params={"order_by": "-id"}).json()
        return listed["dag_runs"][0]["dag_run_id"] if listed["total_entries"] > consumer_runs_before else None

    run_id = wait_for("the asset event to schedule the consumer", consumer_run, timeout=120)
    assert_succeeded(e2e, [(consumer, run_id)])
    catalogue = [json.loads(line) for line in (e2e.output_dir / "assets" / "catalogue.jsonl").read_text().splitlines()]
    produced = e2e.task_instances(*runs[1])[0]
    entry = e2e.api(
        "GET", f"/dags/{runs[1][0]}/dagRuns/{runs[1][1]}/taskInstances/{produced['task_id']}/xcomEntries/return_value"
    ).json()["value"]
    produced_result = json.loads(entry) if isinstance(entry, str) else entry
    assert catalogue[-1]["request_id"] == produced_result["request_id"], "the consumer saw the producer's video"
    assert submits(e2e) == 3, "two TaskFlow generations and one producer generation"


def test_a_deferred_generation_reports_its_lineage(e2e: Deployment) -> None:
    """OpenLineage with its default settings in a deployment: the COMPLETE event of a generation that waited
    in the triggerer has the image in, the MP4 out and the request's facets, built in the worker that resumed."""
    run_id = e2e.trigger(SINGLE)
    assert_succeeded(e2e, [(SINGLE, run_id)])
    [video] = [path for path in e2e.output_dir.rglob("*.mp4") if run_id.replace(":", "_") in path.name]

    def complete_event() -> dict[str, Any] | None:
        text = e2e.lineage_events.read_text() if e2e.lineage_events.exists() else ""
        events = [json.loads(line) for line in text.splitlines()]
        found = [
            event
            for event in events
            if event["eventType"] == "COMPLETE" and any(out["name"] == str(video) for out in event["outputs"])
        ]
        return found[0] if found else None

    event = wait_for("the generation's COMPLETE event", complete_event, timeout=30)
    assert event["job"]["name"] == f"{SINGLE}.generate_video" and event["job"]["namespace"] == "ltx2-e2e"
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [(e2e.sim_url, "/files/sample.jpg")]
    [output] = event["outputs"]
    assert output["outputFacets"]["outputStatistics"]["size"] == video.stat().st_size
    facets = event["run"]["facets"]
    assert e2e.sim is not None
    [job] = e2e.sim.stats()["job_times"]
    query = facets["externalQuery"]
    assert (query["externalQueryId"], query["source"]) == (job["request_id"], e2e.sim_url)
    generation = facets["ltx2_generation"]
    assert (generation["parameters"]["duration"], generation["priceUsd"]) == (6, PRICE_PER_VIDEO_USD)
    assert E2E_KEY not in e2e.lineage_events.read_text(), "the key is in an OpenLineage event"
    assert submits(e2e) == 1


def assigned_triggers(e2e: Deployment, count: int, job_id: int | None = None, timeout: float = 60) -> list[dict]:
    """Wait until ``count`` triggers exist and each is taken by a triggerer (``job_id`` if given)."""

    def check() -> list[dict[str, Any]] | None:
        triggers = e2e.triggers()
        holders = {trigger["triggerer_id"] for trigger in triggers}
        ok = len(triggers) == count and None not in holders and (job_id is None or holders == {job_id})
        return triggers if ok else None

    try:
        return wait_for(f"{count} triggers taken by triggerer job {job_id or 'any'}", check, timeout)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{e2e.diagnostics()}") from None


def polls(e2e: Deployment) -> int:
    assert e2e.sim is not None
    return int(e2e.sim.stats()["polls"])


def wait_for_polls(e2e: Deployment, more_than: int, timeout: float = 30) -> int:
    return wait_for(f"more than {more_than} polls", lambda: (n := polls(e2e)) > more_than and n, timeout)


def test_triggerer_killed_while_tasks_are_deferred(e2e: Deployment) -> None:
    assert e2e.sim is not None
    e2e.sim.configure(processing_seconds=45)
    runs = [(SINGLE, e2e.trigger(SINGLE)), ("e2e_ltx2_pair", e2e.trigger("e2e_ltx2_pair"))]
    deferred(e2e, runs, 3)
    before = assigned_triggers(e2e, 3, job_id=e2e.components["triggerer"].job_id)
    wait_for_polls(e2e, 3)
    deadlines = {trigger["id"]: trigger["kwargs"]["deadline"] for trigger in before}

    killed_at = time.monotonic()
    left = e2e.kill("triggerer", signal.SIGKILL)
    assert not left, f"processes of the killed triggerer still running 15s later: {left}"
    quiet_from = polls(e2e)
    time.sleep(3 * POLL_INTERVAL)
    assert polls(e2e) == quiet_from, "nobody polls while the triggerer is down"

    restarted = e2e.start_triggerer("triggerer")
    after = assigned_triggers(e2e, 3, job_id=restarted.job_id, timeout=TRIGGERER_HEALTH_THRESHOLD + 60)
    took_over = time.monotonic() - killed_at
    assert {trigger["id"]: trigger["kwargs"]["deadline"] for trigger in after} == deadlines, "original deadlines"
    assert all(deadline > time.time() + 60 for deadline in deadlines.values())
    assert_succeeded(e2e, runs)
    assert submits(e2e) == 3, "one paid submit per task"
    print(f"triggerer restarted; its triggers were running again {took_over:.1f}s after the kill")


def test_a_second_triggerer_takes_over_the_triggers_of_a_killed_one(e2e: Deployment) -> None:
    assert e2e.sim is not None
    e2e.start_triggerer("triggerer-b")
    survivor = "triggerer-b"
    try:
        e2e.sim.configure(processing_seconds=45)
        runs = [(SINGLE, e2e.trigger(SINGLE)), ("e2e_ltx2_pair", e2e.trigger("e2e_ltx2_pair"))]
        deferred(e2e, runs, 3)
        triggers = assigned_triggers(e2e, 3)
        by_job = {name: e2e.components[name].job_id for name in ("triggerer", "triggerer-b")}
        held = {name: sum(t["triggerer_id"] == job for t in triggers) for name, job in by_job.items()}
        victim = max(held, key=lambda name: held[name])
        survivor = "triggerer-b" if victim == "triggerer" else "triggerer"
        wait_for_polls(e2e, 3)

        killed_at = time.monotonic()
        assert not e2e.kill(victim, signal.SIGKILL), "the killed triggerer left processes behind"
        assigned_triggers(e2e, 3, job_id=by_job[survivor], timeout=TRIGGERER_HEALTH_THRESHOLD + 60)
        took_over = time.monotonic() - killed_at
        assert_succeeded(e2e, runs)
        assert submits(e2e) == 3, "one paid submit per task"
        print(f"triggers held {held}; {victim} killed; {survivor} ran them all {took_over:.1f}s later")
    finally:
        # Leave one triggerer, named "triggerer", for the tests that follow.
        if survivor == "triggerer-b":
            if "triggerer" in e2e.components:
                e2e.stop("triggerer")
            e2e.components["triggerer"] = e2e.components.pop("triggerer-b")
        elif "triggerer-b" in e2e.components:
            e2e.stop("triggerer-b")


def test_a_retry_after_the_task_process_died_reattaches_to_the_paid_request(e2e: Deployment) -> None:
    assert e2e.sim is not None
    dag_id, task_id = "e2e_ltx2_worker_wait", "generate_video"
    e2e.sim.configure(processing_seconds=20)
    run_id = e2e.trigger(dag_id)

    def stored_request() -> Any:
        rows = e2e.sql(
            "SELECT value FROM task_state_store WHERE dag_id = %s AND run_id = %s AND key = 'ltx2_request'",
            dag_id,
            run_id,
        )
        return rows and rows[0][0]

    stored = json.loads(wait_for("the request id in the task state store", stored_request, timeout=120))
    [ti] = e2e.task_instances(dag_id, run_id)
    assert ti["state"] == "running" and ti["try_number"] == 1
    [pid] = e2e.task_processes(ti["id"])
    assert submits(e2e) == 1
    os.kill(pid, signal.SIGKILL)

    assert_succeeded(e2e, [(dag_id, run_id)])
    [ti] = e2e.task_instances(dag_id, run_id)
    assert ti["try_number"] == 2, "the kill failed the first try; the retry finished the task"
    entry = e2e.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    result = entry.json()["value"]
    result = json.loads(result) if isinstance(result, str) else result
    assert result["request_id"] == stored["request_id"], "the retry reattached to the first try's request"
    assert submits(e2e) == 1, "exactly one paid submit"
    assert "Reattaching to LTX-2 request" in e2e.task_log(dag_id, run_id, task_id, 2)
    assert not stored_request(), "the state store entry is deleted once the video is delivered"


def test_simulator_restarted_mid_run(e2e: Deployment) -> None:
    assert e2e.sim is not None
    e2e.sim.configure(processing_seconds=20)
    runs = [(SINGLE, e2e.trigger(SINGLE)), ("e2e_ltx2_worker_wait", e2e.trigger("e2e_ltx2_worker_wait"))]
    deferred(e2e, runs[:1], 1)
    wait_for("the worker-side task to poll", lambda: e2e.task_instances(*runs[1])[0]["state"] == "running", 120)
    wait_for("both submits", lambda: submits(e2e) == 2, 60)
    wait_for_polls(e2e, 4)

    down_for = e2e.restart_simulator()
    stats = e2e.sim.stats()
    assert stats["jobs"] == 2 and stats["submits"] == 0, "the jobs survived the restart (counters start again)"
    assert_succeeded(e2e, runs)
    assert submits(e2e) == 0, "no submit after the restart: one paid submit per task in all"
    [worker_ti] = e2e.task_instances(*runs[1])
    assert worker_ti["try_number"] == 1, "the worker-side wait rode out the restart without a retry"
    print(f"simulator was unreachable for {down_for:.1f}s")


def test_marking_a_deferred_task_failed_removes_its_trigger_and_stops_polling(e2e: Deployment) -> None:
    assert e2e.sim is not None
    e2e.sim.configure(processing_seconds=300)
    run_id = e2e.trigger(SINGLE)
    deferred(e2e, [(SINGLE, run_id)], 1)
    [trigger] = assigned_triggers(e2e, 1)
    wait_for_polls(e2e, 2)

    e2e.api("PATCH", f"/dags/{SINGLE}/dagRuns/{run_id}/taskInstances/generate_video", json={"new_state": "failed"})
    marked_at = time.monotonic()
    wait_for(
        "the trigger to be removed", lambda: not e2e.sql("SELECT id FROM trigger WHERE id = %s", trigger["id"]), 60
    )
    removed_after = time.monotonic() - marked_at
    time.sleep(2 * POLL_INTERVAL)  # a poll already in flight may still land
    settled = polls(e2e)
    time.sleep(6 * POLL_INTERVAL)
    assert polls(e2e) == settled, "polling stopped"
    assert e2e.wait_for_runs([(SINGLE, run_id)], 60) == {(SINGLE, run_id): "failed"}
    [ti] = e2e.task_instances(SINGLE, run_id)
    assert ti["state"] == "failed"
    assert submits(e2e) == 1
    print(f"trigger removed {removed_after:.1f}s after the task was marked failed; polls stopped at {settled}")


def test_connection_created_with_the_cli(e2e: Deployment) -> None:
    assert e2e.sim is not None
    added = e2e.add_ltx2_connection("ltx2_cli")
    assert E2E_KEY not in added.stdout + added.stderr
    run = ("e2e_ltx2_cli_connection", e2e.trigger("e2e_ltx2_cli_connection"))
    deferred(e2e, [run], 1)
    assert_succeeded(e2e, [run])
    stats = e2e.sim.stats()
    assert stats["submits"] == 1 and stats["keys_seen_ok"] >= 2 and stats["keys_seen_bad"] == 0


def test_the_key_is_in_no_log_and_no_table(e2e: Deployment) -> None:
    """Runs last: every component log, every task and trigger log, and the metadata DB (connections aside)."""
    logs = [*sorted(e2e.component_logs.glob("*.log")), *sorted(e2e.task_logs())]
    assert len(logs) > 20, "the earlier tests left task logs to scan"
    leaks = [str(path) for path in logs if E2E_KEY in path.read_text(errors="replace")]
    dump = e2e.pg_dump()
    tables = {block.split(" ", 1)[0]: block for block in dump.split("\nCOPY ")[1:]}  # table name: its rows
    for table in ("task_instance", "xcom", "rendered_task_instance_fields", "trigger", "task_state_store", "log"):
        assert f"public.{table}" in tables, f"{table} is in the dump"
    assert "ltx2-v-" in tables["public.xcom"], "the dump holds what the runs wrote (request ids in XCom)"
    audit = tables["public.log"]
    assert "cli_connections_add" in audit and "********" in audit, "`connections add` is audited, its key masked"
    leaks += [f"table {name}" for name, rows in tables.items() if E2E_KEY in rows]
    leaks += [f"trigger kwargs {trigger['id']}" for trigger in e2e.trigger_snapshots if E2E_KEY in json.dumps(trigger)]
    assert e2e.trigger_snapshots, "trigger rows were seen (and decrypted) while tasks were deferred"
    assert not leaks, f"the subscription key leaked into: {leaks}"
    print(f"scanned {len(logs)} log files, a {len(dump) // 1024} kB dump and {len(e2e.trigger_snapshots)} trigger rows")
