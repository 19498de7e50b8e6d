"""The provider on the CeleryExecutor, deployed as docker-compose.yaml does: Redis broker, the metadata DB
as result backend, two ``airflow celery worker`` processes and two triggerers, on PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.simulator.server import SAMPLE_MP4
from tests.e2e.deployment import (
    CELERY_WORKERS,
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

pytestmark = pytest.mark.timeout(420)

BATCH = "example_ltx2_batch_from_csv"
SLOW = "e2e_ltx2_slow_download"
TASK = "generate_video"
# The simulator has no download throttle: a long download is a big one. Padding (a zero-filled MP4
# `free` box after the clip) has no upper bound there; 2 GiB takes several seconds over loopback.
PADDING_BYTES = 2 << 30
IN_WORKER = "e2e_ltx2_batch_operator_in_worker"
BATCH_TASK = "generate_videos"
ROW_IDS = ("lighthouse", "fox", "tram", "kettle", "sailboat", "heron")  # the DAG's table


def test_the_example_batch_runs_on_the_celery_workers(celery: Deployment) -> None:
    run_id = celery.trigger(BATCH)
    assert_succeeded(celery, [(BATCH, run_id)])
    tis = [ti for ti in celery.task_instances(BATCH, run_id) if ti["task_id"] == TASK]
    assert len(tis) == 3 and {ti["try_number"] for ti in tis} == {1}
    assert {ti["hostname"] for ti in tis} <= set(CELERY_WORKERS), "the workers ran the generations"
    folder = celery.output_dir / BATCH / run_id.replace(":", "_")
    assert sorted(path.name for path in folder.glob("*.mp4")) == ["0.mp4", "1.mp4", "2.mp4"]
    assert len(json.loads((folder / "manifest.json").read_text())) == 3
    assert submits(celery) == 3
    print(f"generations ran on {sorted(ti['hostname'] for ti in tis)}")


def tries(celery: Deployment, dag_id: str, run_id: str, task_id: str = TASK) -> list[dict[str, Any]]:
    reply = celery.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
    return sorted(reply.json()["task_instances"], key=lambda ti: ti["try_number"])


def partials(output: Path) -> list[Path]:
    return sorted(output.parent.glob("*.part"))


def test_a_worker_killed_mid_download_leaves_no_partial_file_and_the_retry_reattaches(celery: Deployment) -> None:
    """SIGKILL to the worker's whole process tree (its machine dies) while the task streams the video.

    Airflow fails the try once its heartbeats stop; the retry, on the other worker, must reattach to the
    paid request and write the file, which nobody may see at the output path before then.
    """
    assert celery.sim is not None
    celery.sim.configure(queue_seconds=1, processing_seconds=3, video_padding_bytes=PADDING_BYTES)
    run_id = celery.trigger(SLOW)
    output = celery.output_dir / SLOW / run_id.replace(":", "_") / "video.mp4"
    try:

        def downloading() -> list[Path]:
            return [part for part in partials(output) if part.stat().st_size > 0]

        [part] = wait_for("the download to start", downloading, timeout=180, interval=0.1)
        [ti] = celery.task_instances(SLOW, run_id)
        assert ti["state"] == "running" and ti["try_number"] == 1, ti
        victim = ti["hostname"]
        assert not celery.kill(victim, signal.SIGKILL, whole_tree=True), "the killed worker left processes"
        cut_at = part.stat().st_size
        assert 0 < cut_at < PADDING_BYTES, "killed mid-download"
        killed_at = time.monotonic()

        seen_before_retry = []
        while celery.run_state(SLOW, run_id) not in ("success", "failed"):
            [ti] = celery.task_instances(SLOW, run_id)
            if output.exists() and not (ti["try_number"] == 2 and ti["state"] in ("running", "success")):
                seen_before_retry.append((ti["try_number"], ti["state"], output.stat().st_size))
            assert time.monotonic() - killed_at < 240, celery.diagnostics([(SLOW, run_id)])
            time.sleep(0.2)
        assert not seen_before_retry, f"a file was at the output path before the retry wrote it: {seen_before_retry}"
        assert_succeeded(celery, [(SLOW, run_id)])

        first, second = tries(celery, SLOW, run_id)
        assert (first["try_number"], first["state"], first["hostname"]) == (1, "failed", victim)
        survivor = next(name for name in CELERY_WORKERS if name != victim)
        assert (second["try_number"], second["state"], second["hostname"]) == (2, "success", survivor)
        assert "Reattaching to LTX-2 request" in celery.task_log(SLOW, run_id, TASK, 2)
        assert submits(celery) == 1, "one paid job in all"
        assert output.stat().st_size == SAMPLE_MP4.stat().st_size + PADDING_BYTES
        with output.open("rb") as video:
            assert video.read(8)[4:8] == b"ftyp"
        assert not partials(output), f"partial downloads left next to the video: {partials(output)}"
        print(
            f"{victim} killed {cut_at >> 20} MiB into the download; retried on {survivor}, "
            f"done {time.monotonic() - killed_at:.0f}s after the kill"
        )
    finally:
        for path in output.parent.glob("*"):  # gigabytes: not for the work directory to keep
            path.unlink()


def test_a_worker_killed_mid_batch_leaves_no_partial_file_and_the_retry_pays_for_no_row_twice(
    celery: Deployment,
) -> None:
    """SIGKILL to the worker's whole process tree while a batch waits in it, with rows delivered and jobs in flight.

    The retry, on the other worker, goes on with the batch of the killed try from the task state store: it
    reattaches to the jobs in flight, submits the rows not yet sent, and pays for no row twice.
    """
    assert celery.sim is not None
    celery.sim.configure(queue_seconds=1, processing_seconds=4)
    run_id = celery.trigger(IN_WORKER)
    folder = batch_folder(celery, IN_WORKER, run_id)

    def mid_batch() -> dict[str, Any] | None:
        """The kept progress once a row is delivered, while jobs run and rows wait for a slot."""
        progress = state_record(celery, IN_WORKER, run_id, "ltx2_batch")
        if not progress or progress["generated"] < 1 or not progress["in_flight"] or progress["cursor"] >= len(ROW_IDS):
            return None
        flying = {flight["request_id"] for flight in progress["in_flight"]}
        return progress if flying <= running_jobs(celery) else None

    progress = wait_for("a row delivered and jobs in flight", mid_batch, timeout=180, interval=0.1)
    [ti] = celery.task_instances(IN_WORKER, run_id)
    assert ti["state"] == "running" and ti["try_number"] == 1, ti
    victim = ti["hostname"]
    assert not celery.kill(victim, signal.SIGKILL, whole_tree=True), "the killed worker left processes"
    killed_at = time.monotonic()
    paid_before = submits(celery)
    delivered_before = sorted(path.stem for path in folder.glob("*.mp4"))
    flying = {flight["request_id"] for flight in progress["in_flight"]}
    assert delivered_before and paid_before < len(ROW_IDS), f"killed mid-batch: {delivered_before}, {paid_before}"

    assert_succeeded(celery, [(IN_WORKER, run_id)])
    first, second = tries(celery, IN_WORKER, run_id, BATCH_TASK)
    assert (first["try_number"], first["state"], first["hostname"]) == (1, "failed", victim)
    survivor = next(name for name in CELERY_WORKERS if name != victim)
    assert (second["try_number"], second["state"], second["hostname"]) == (2, "success", survivor)
    assert "Going on with the batch of an earlier try" in celery.task_log(IN_WORKER, run_id, BATCH_TASK, 2)
    assert submits(celery) == len(ROW_IDS), "one paid job per row in all"
    lines = assert_batch_delivered(celery, IN_WORKER, run_id, ROW_IDS)  # no .part left either
    assert flying <= {line["request_id"] for line in lines}, "the retry delivered the jobs the killed try paid for"
    result = return_value(celery, IN_WORKER, run_id, BATCH_TASK)
    assert (result["generated"], result["failed"]) == (len(ROW_IDS), 0), result
    assert result["cost_usd"] == round(len(ROW_IDS) * PRICE_PER_VIDEO_USD, 2), result
    assert state_record(celery, IN_WORKER, run_id, "ltx2_batch") is None
    print(
        f"{victim} killed with {len(delivered_before)} rows delivered, {len(flying)} jobs in flight and "
        f"{paid_before} of {len(ROW_IDS)} rows paid; retried on {survivor}, done "
        f"{time.monotonic() - killed_at:.0f}s after the kill"
    )
