"""Batches at the LTX-2 gateway's limits: eight deferrable generations against two concurrent jobs.

The simulator runs with ``--max-concurrent-jobs 2`` and 30 s jobs (10 s pooled), the scheduler with room for every
generation at once, so the gateway and not Airflow holds the batch back. Without a pool its 429s pace
the batch: each throttled task must wait deferred (in the triggerer, without a worker slot) and the two
slots must stay busy. Through an Airflow pool sized to the limit nothing is throttled at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from airflow_provider_ltx2.simulator.limits import slot_utilisation
from tests.e2e.conftest import jobs_of
from tests.e2e.deployment import FINISHED, GATEWAY_SLOTS, Deployment, json_lines

pytestmark = pytest.mark.timeout(420)

BATCH = "e2e_ltx2_batch"
POOLED = "e2e_ltx2_batch_pooled"
POOL = "ltx2"
TASK = "generate_video"
BATCH_SIZE = 8
SLOTS = GATEWAY_SLOTS  # the gateway's concurrent jobs (the `limited` fixture)
QUEUE_SECONDS, PROCESSING_SECONDS = 2, 28  # a 30 s job
SAMPLE_EVERY = 1.0  # seconds between two looks at every task instance's state
# From "waiting for capacity" in the log to the task being deferred: it hands over and its process exits.
DEFER_GRACE = 3.0
# From the wake-up to "got into the gateway": scheduled, queued, a worker start and the submit.
RESUME_GRACE = 10.0
WAITING_DEFERRED_SHARE = 0.9  # of all samples inside the waiting windows of all tasks
AWAY_PER_TASK = 8  # samples a waiting task may be out of deferred (one resume that met a 429 again)...
AWAY_SHARE_PER_TASK = 0.25  # ...or this share of its window, whichever is larger
# Generate tasks in a worker at once after the batch's start: per slot, the download of the job that
# just ended and the waiting task its end woke to submit; plus one resume of a task whose timer fired.
MAX_RUNNING = 2 * SLOTS + 1
MIN_SLOT_UTILISATION = 0.8


@pytest.fixture
def gateway(limited: Deployment, e2e: Deployment) -> Deployment:
    """A reset simulator with 30 s jobs that still has the limit it was started with."""
    return jobs_of(e2e, QUEUE_SECONDS, PROCESSING_SECONDS)


@dataclass
class Sample:
    """The state of every generation of the batch at one moment (epoch seconds)."""

    at: float
    states: dict[int, str | None]

    def count(self, state: str) -> int:
        return sum(1 for value in self.states.values() if value == state)


def run_batch(e2e: Deployment, dag_id: str, timeout: float = 300) -> tuple[str, list[Sample]]:
    """Trigger ``dag_id`` and look at every task instance's state about once a second until the run ends."""
    run_id = e2e.trigger(dag_id)
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    while True:
        began = time.time()
        tis = e2e.task_instances(dag_id, run_id)
        states = {ti["map_index"]: ti["state"] for ti in tis if ti["task_id"] == TASK and ti["map_index"] >= 0}
        samples.append(Sample((began + time.time()) / 2, states))
        if (state := e2e.run_state(dag_id, run_id)) in FINISHED:
            break
        assert time.monotonic() < deadline, f"{dag_id} not finished after {timeout:.0f}s\n{e2e.diagnostics()}"
        for name in list(e2e.components):
            e2e.check_alive(name)
        time.sleep(max(0.0, SAMPLE_EVERY - (time.time() - began)))
    assert state == "success", e2e.diagnostics([(dag_id, run_id)])
    tis = [ti for ti in e2e.task_instances(dag_id, run_id) if ti["task_id"] == TASK]
    assert sorted(ti["map_index"] for ti in tis) == list(range(BATCH_SIZE))
    assert {(ti["state"], ti["try_number"]) for ti in tis} == {("success", 1)}, "no task failed or was retried"
    return run_id, samples


@dataclass
class TaskLog:
    """The first try's log of one generation (the worker's file) and what its triggers wrote."""

    worker: list[dict[str, Any]]
    everything: str

    @classmethod
    def read(cls, e2e: Deployment, dag_id: str, run_id: str, map_index: int) -> TaskLog:
        files = e2e.task_log_files(dag_id, run_id, TASK, 1, map_index)
        assert files and files[0].name == "attempt=1.log", files
        return cls(json_lines(files[0]), "\n".join(path.read_text(errors="replace") for path in files))

    def first(self, fragment: str) -> float | None:
        """When a worker log line containing ``fragment`` (case-insensitive) was first written."""
        for line in self.worker:
            if fragment.lower() in str(line.get("event", "")).lower():
                return datetime.fromisoformat(line["timestamp"]).timestamp()
        return None

    def count(self, event: str) -> int:
        return sum(1 for line in self.worker if str(line.get("event", "")).startswith(event))


def batch_logs(e2e: Deployment, dag_id: str, run_id: str) -> dict[int, TaskLog]:
    logs = {index: TaskLog.read(e2e, dag_id, run_id, index) for index in range(BATCH_SIZE)}
    failing = [index for index, log in logs.items() if "Ltx2TransientError" in log.everything]
    assert not failing, f"a transient error reached the tasks {failing}"
    return logs


def worker_resumes(logs: dict[int, TaskLog]) -> int:
    """How many times a batch task went back to a worker after a trigger event.

    Every deferral logs "Pausing task as DEFERRED." in the worker, and every task process start logs
    "Worker startup parse complete" in the same try's log file. A task that succeeded on its first try
    resumed once per deferral, so both counts must agree: starts = deferrals + 1.
    """
    resumes = 0
    for index, log in logs.items():
        deferrals, starts = log.count("Pausing task as DEFERRED"), log.count("Worker startup parse complete")
        assert starts == deferrals + 1, f"task {index}: {starts} worker starts, {deferrals} deferrals"
        resumes += deferrals
    return resumes


def videos(e2e: Deployment, dag_id: str, run_id: str) -> list[Path]:
    folder = e2e.output_dir / dag_id / run_id.replace(":", "_")
    found = sorted(folder.glob("*.mp4"))
    assert [path.name for path in found] == sorted(f"{index}.mp4" for index in range(BATCH_SIZE)), found
    assert all(path.read_bytes()[4:8] == b"ftyp" for path in found)
    return found


def paid_jobs(stats: dict[str, Any]) -> int:
    """Jobs the simulator created, checked against its counters: every submit either paid or was a 429."""
    assert stats["jobs"] == len(stats["job_times"])
    assert stats["submits"] - stats["throttled"]["submit"] == stats["jobs"], stats
    return int(stats["jobs"])


def busy_share(stats: dict[str, Any]) -> float:
    """How busy the gateway's slots were from the first job's start to the last job's end."""
    assert all(job["ended"] is not None for job in stats["job_times"]), stats["job_times"]
    return slot_utilisation(stats["job_times"], SLOTS)


def assert_waited_deferred(samples: list[Sample], logs: dict[int, TaskLog]) -> str:
    """Throttled tasks waited deferred, and few generate tasks were ever in a worker at once.

    A task's waiting window runs from its "waiting for capacity" line (plus ``DEFER_GRACE``, the hand-over
    to the triggerer) to its "got into the gateway" line (less ``RESUME_GRACE``, the final resume that
    submitted). Inside the windows, pooled over all tasks, at least ``WAITING_DEFERRED_SHARE`` of the
    samples must show the task deferred; and no single task may be out of deferred in more than
    ``AWAY_PER_TASK`` samples or ``AWAY_SHARE_PER_TASK`` of its window. A task that waited in a worker
    would be running in nearly every sample of its window; one that went back to a worker every few
    seconds to try its submit would be out of deferred in most. A resume that met a 429 again costs a
    few seconds, which the per-task allowance absorbs once or twice.

    Once every generation has been deferred at least once (the batch's start, when all of them start
    in a worker together, is over), no sample may show more than ``MAX_RUNNING`` of them running, where
    tasks that waited in workers would show all six waiting ones.
    """
    windows: dict[int, tuple[float, float]] = {}
    for index, log in logs.items():
        waiting, got_in = log.first("waiting for capacity;"), log.first("got into the LTX-2 gateway")
        if waiting is not None:
            assert got_in is not None and got_in > waiting, f"task {index} waited but never got in"
            windows[index] = (waiting + DEFER_GRACE, got_in - RESUME_GRACE)
    assert len(windows) >= BATCH_SIZE - SLOTS, f"only tasks {sorted(windows)} were throttled"
    inside = away = 0
    per_task = {}
    for index, (start, end) in windows.items():
        states = [sample.states.get(index) for sample in samples if start <= sample.at <= end]
        task_away = sum(1 for state in states if state != "deferred")
        assert task_away <= max(AWAY_PER_TASK, AWAY_SHARE_PER_TASK * len(states)), (
            f"task {index} waited for room out of deferred in {task_away} of {len(states)} samples: {states}"
        )
        per_task[index] = f"{len(states) - task_away}/{len(states)}"
        inside += len(states)
        away += task_away
    assert inside > 0 and (inside - away) / inside >= WAITING_DEFERRED_SHARE, per_task
    seen: set[int] = set()
    running = []
    for sample in samples:
        if seen >= set(logs):
            running.append(sample.count("running"))
        seen |= {index for index, state in sample.states.items() if state in ("deferred", "success")}
    assert running, "every generation was deferred at some point"
    assert max(running) <= MAX_RUNNING, f"running generate tasks per sample once all had deferred: {running}"
    return (
        f"waiting tasks seen deferred in {inside - away} of {inside} samples (per task {per_task}); "
        f"running generate tasks at most {max(running)} once all had deferred (mean {mean(running):.1f})"
    )


def test_a_batch_bigger_than_the_gateway_waits_deferred_and_keeps_its_slots_busy(gateway: Deployment) -> None:
    assert gateway.sim is not None
    run_id, samples = run_batch(gateway, BATCH)
    stats = gateway.sim.stats()
    videos(gateway, BATCH, run_id)
    assert paid_jobs(stats) == BATCH_SIZE, "exactly one paid job per generation"
    assert stats["throttled"]["submit"] > 0, "the gateway answered 429: the batch was throttled"
    logs = batch_logs(gateway, BATCH, run_id)
    waited = assert_waited_deferred(samples, logs)
    busy = busy_share(stats)
    assert busy >= MIN_SLOT_UTILISATION, f"the gateway's {SLOTS} slots were busy {busy:.0%} of the batch"
    resumes = worker_resumes(logs)
    print(
        f"{BATCH_SIZE} jobs, {stats['throttled']['submit']} throttled submits; {waited}; slots busy {busy:.0%}; "
        f"{resumes} worker resumes = {resumes / BATCH_SIZE:.2f} per paid job (1 is the download after the video)"
    )


@pytest.fixture
def short_jobs(limited: Deployment, e2e: Deployment) -> Deployment:
    """A reset simulator with 10 s jobs and the limit it was started with: a pool, not the jobs' length, is what
    keeps the batch below the gateway's limit, and shorter jobs keep the suite short."""
    return jobs_of(e2e, QUEUE_SECONDS, 8)


def test_the_same_batch_in_a_pool_sized_to_the_gateway_is_never_throttled(short_jobs: Deployment) -> None:
    gateway = short_jobs
    assert gateway.sim is not None
    gateway.airflow("pools", "set", POOL, str(SLOTS), "LTX-2 gateway slots", "--include-deferred")
    try:
        run_id, samples = run_batch(gateway, POOLED)
    finally:
        gateway.airflow("pools", "delete", POOL)
    stats = gateway.sim.stats()
    videos(gateway, POOLED, run_id)
    assert paid_jobs(stats) == BATCH_SIZE
    assert stats["throttled"] == {"submit": 0, "poll": 0}, "no 429 at all"
    logs = batch_logs(gateway, POOLED, run_id)
    assert not [index for index, log in logs.items() if log.first("waiting for capacity") is not None]
    holding = max(sum(sample.count(state) for state in ("queued", "running", "deferred")) for sample in samples)
    assert holding <= SLOTS, f"{holding} generations held a pool slot at once"
    resumes = worker_resumes(logs)
    print(
        f"pooled: {BATCH_SIZE} jobs, no 429; at most {holding} generations in the pool at once; slots busy "
        f"{busy_share(stats):.0%}; {resumes / BATCH_SIZE:.2f} worker resumes per paid job"
    )
