"""The soak: a real deployment under load for a long while (``scripts/soak.sh``; skipped unless ``LTX2_SOAK`` is set).

One key, one simulator at a limit of concurrent jobs, jobs of random length, a share of polls answering 503
and bursts of 429 on submits; at once: mapped deferrable generations, sensors waiting for requests submitted
upstream, and one deferrable batch of a JSONL table. Mid-run a triggerer is SIGKILLed and restarted (two run
side by side), the scheduler is restarted, and one worker task process of a running generation is
SIGKILLed (its try fails and is retried). At the end it prints the soak's table (and writes it as section 8
of ``bench/RESULTS.md`` when ``LTX2_SOAK_RESULTS`` names that file), then asserts its targets: no task
failed, no "state mismatch", every paid job delivered exactly once, a manifest line per row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ltx2.simulator.limits import slot_utilisation
from bench.common import Table
from tests.e2e.conftest import _interrupt, served
from tests.e2e.deployment import (
    E2E_KEY,
    FINISHED,
    Deployment,
    _stat_fields,
    batch_folder,
    json_lines,
    processes_titled,
    wait_for,
)

pytestmark = [
    pytest.mark.skipif(not os.environ.get("LTX2_SOAK"), reason="the soak runs from scripts/soak.sh (LTX2_SOAK)"),
    pytest.mark.timeout(0),  # bounded by the soak's own deadline and scripts/e2e.sh's LTX2_E2E_TIMEOUT
]

SOAK_DAGS = Path(__file__).resolve().parent / "soak_dags"
MAPPED, SENSORS, BATCH = "soak_ltx2_mapped", "soak_ltx2_sensors", "soak_ltx2_batch"
BATCH_TASK = "generate_videos"
SECTION = 8
TITLE = "8. Soak: a real deployment under load"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The batch trigger's hold-back after a deferral with the deployment's settings ([workers]
# min_heartbeat_interval 5 s + a scheduler loop's 5 s): a deferrable batch resumes at most this often.
RESUME_GUARD_ESTIMATE = 10.0
IDLE_SECONDS = 20.0
# What makes a full run (LTX2_SOAK=full) a reduced one when set
SIZES = ("MAPPED", "SENSORS", "BATCH_ROWS", "BATCH_CONCURRENCY", "GATEWAY_LIMIT", "JOB_MIN", "JOB_MAX")
UNTIL_FAULT_USED = 1_000_000_000  # a probability fault's count: it never runs out
MISMATCH_LINE = "reported that the task instance"  # the scheduler's log line behind a "state mismatch" event
PROCESS_START = "::group::Pre Execute"  # the first line a task process writes to its try's log


STARTED = time.monotonic()  # about when pytest started


def run_bound() -> float:
    """``LTX2_E2E_TIMEOUT`` (timeout(1)'s syntax: a number with an optional s, m, h or d) in seconds."""
    text = os.environ.get("LTX2_E2E_TIMEOUT", "40m").strip()
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], 1)
    return float(text.rstrip("smhd")) * unit


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LTX2_SOAK_{name}") or default


@dataclass(frozen=True)
class Settings:
    """The soak's size and gateway, from ``LTX2_SOAK_*`` (``scripts/soak.sh`` sets them; defaults: the full run)."""

    mode: str = field(default_factory=lambda: os.environ.get("LTX2_SOAK", "full"))
    mapped: int = field(default_factory=lambda: int(_env("MAPPED", "300")))
    sensors: int = field(default_factory=lambda: int(_env("SENSORS", "50")))
    batch_rows: int = field(default_factory=lambda: int(_env("BATCH_ROWS", "2000")))
    batch_concurrency: int = field(default_factory=lambda: int(_env("BATCH_CONCURRENCY", "4")))
    limit: int = field(default_factory=lambda: int(_env("GATEWAY_LIMIT", "8")))
    job_min: float = field(default_factory=lambda: float(_env("JOB_MIN", "5")))
    job_max: float = field(default_factory=lambda: float(_env("JOB_MAX", "30")))
    poll_faults: float = field(default_factory=lambda: float(_env("POLL_FAULTS", "0.03")))
    burst_every: float = field(default_factory=lambda: float(_env("BURST_EVERY", "60")))
    burst_seconds: float = field(default_factory=lambda: float(_env("BURST_SECONDS", "5")))
    poll_interval: float = field(default_factory=lambda: float(_env("POLL_INTERVAL", "2")))
    parallelism: int = field(default_factory=lambda: int(_env("PARALLELISM", "12")))
    results: str = field(default_factory=lambda: _env("RESULTS", ""))

    @property
    def jobs(self) -> int:
        return self.mapped + self.sensors + self.batch_rows

    @property
    def mean_job(self) -> float:
        return (self.job_min + self.job_max) / 2

    @property
    def lower_bound(self) -> float:
        """Seconds the gateway alone needs: all jobs through its slots, and the batch through its own."""
        return max(self.jobs * self.mean_job / self.limit, self.batch_rows * self.mean_job / self.batch_concurrency)

    @property
    def batch_rounds_bound(self) -> float:
        """Seconds the deferrable batch needs at least: a round (resume, settle, fill, defer) per
        ``batch_concurrency`` rows at most, each one a job's length or the resume guard, whichever is longer."""
        return self.batch_rows / self.batch_concurrency * max(self.mean_job, RESUME_GUARD_ESTIMATE)

    def describe(self) -> str:
        return (
            f"{self.mapped} mapped deferrable generations, {self.sensors} sensors, a deferrable batch of "
            f"{self.batch_rows:,} rows (max_concurrent_jobs {self.batch_concurrency}); one key at a gateway limit "
            f"of {self.limit} concurrent jobs, jobs of {self.job_min:g}-{self.job_max:g} s, {self.poll_faults:.0%} of "
            f"polls 503, every submit 429 for {self.burst_seconds:g} s every {self.burst_every:g} s, poll interval "
            f"{self.poll_interval:g} s, {self.parallelism} worker slots"
        )


class SoakDeployment(Deployment):
    """The e2e deployment with the soak's DAGs only, its settings, and two triggerers in either layout."""

    settings: Settings
    own_queries = 0  # transactions the soak itself commits (its SQL look-ups), taken off the DB's commit count

    def install_dags(self) -> None:
        for source in SOAK_DAGS.glob("*.py"):
            shutil.copy2(source, self.dags / source.name)

    def dag_ids(self) -> list[str]:
        return [MAPPED, SENSORS, BATCH]

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(**extra)
        env.update(
            LTX2_SOAK_POLL_INTERVAL=str(self.settings.poll_interval),
            LTX2_SOAK_BATCH_CONCURRENCY=str(self.settings.batch_concurrency),
            # Room for every generation of a run at once: the gateway, not Airflow, paces them.
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=str(max(64, self.settings.mapped + self.settings.sensors)),
        )
        return env

    def up(self) -> None:
        super().up()
        if "triggerer-b" not in self.components:
            self.start_triggerer("triggerer-b")

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        self.own_queries += 1
        return super().sql(query, *params)


@pytest.fixture(scope="module")
def soak() -> Any:
    database_url = os.environ.get("LTX2_E2E_DATABASE_URL")
    if not database_url:
        pytest.skip("the soak needs PostgreSQL: run scripts/soak.sh")
    signal.signal(signal.SIGTERM, _interrupt)  # timeout(1)'s SIGTERM: still stop the deployment
    settings = Settings()
    root = Path(os.environ.get("LTX2_E2E_WORKDIR") or "/tmp/ltx2-soak")
    sim_args = (
        *("--queue-seconds", "0", "--processing-seconds", f"{settings.job_min:g}"),
        *("--processing-seconds-max", f"{settings.job_max:g}", "--max-concurrent-jobs", str(settings.limit)),
    )
    deployed = SoakDeployment(
        database_url,
        Path(os.environ.get("LTX2_E2E_PG_BIN", "/usr/bin")),
        root,
        broker_url=os.environ.get("LTX2_E2E_REDIS_URL") or None,
        parallelism=settings.parallelism,
        sim_args=sim_args,
    )
    deployed.settings = settings
    yield from served(deployed)


# ------------------------------------------------------------------------------------------------ samplers


class CpuSampler(threading.Thread):
    """CPU time of the batch task's processes (``airflow worker -- <ti id>``), from /proc four times a second.

    A task process's own CPU time is read while it lives; once it has exited, its parent (the executor's
    worker process, which runs one task at a time and reaps it) has it in its children's CPU time: the rise
    of that figure from the first reading to the first one after the exit is the whole process's CPU time,
    its last moments and the processes it forked included. Where the parent is gone, the last reading counts.
    """

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(daemon=True)
        self.deployment = deployment
        self.ti_id: str | None = None
        self.stopping = threading.Event()
        self.live: dict[int, tuple[int, int, int]] = {}  # pid: (parent, parent's children ticks at first, own ticks)
        self.done: list[int] = []  # ticks of each process that ended

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            if self.ti_id is None:
                continue
            seen = set()
            for component in list(self.deployment.components.values()):
                for pid in processes_titled(f"airflow worker -- {self.ti_id}", under=component.pid):
                    stat = _stat_fields(pid)
                    if len(stat) <= 12:
                        continue
                    seen.add(pid)
                    parent, own = int(stat[1]), int(stat[11]) + int(stat[12])
                    first = self.live[pid][1] if pid in self.live else children_ticks(parent)
                    self.live[pid] = (parent, first, own)
            for pid in [pid for pid in self.live if pid not in seen]:
                parent, first, own = self.live.pop(pid)
                now = children_ticks(parent)
                self.done.append(max(own, now - first) if now >= 0 and first >= 0 else own)

    @property
    def seconds(self) -> float:
        return (sum(self.done) + sum(own for _parent, _first, own in self.live.values())) / CLK_TCK

    @property
    def processes(self) -> int:
        return len(self.done) + len(self.live)


def children_ticks(pid: int) -> int:
    """The CPU ticks of the children ``pid`` has reaped (cutime + cstime), -1 if it is gone."""
    stat = _stat_fields(pid)
    return int(stat[13]) + int(stat[14]) if len(stat) > 14 else -1


@dataclass
class DbSample:
    at: float
    commits: int
    own: int  # the soak's own transactions so far
    tuples: dict[str, int]  # per table: inserted + updated + deleted


def db_sample(deployment: SoakDeployment) -> DbSample:
    [(commits,)] = deployment.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    rows = deployment.sql("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
    return DbSample(time.time(), int(commits), deployment.own_queries, {name: int(count) for name, count in rows})


def db_writes(samples: list[DbSample], start: float, end: float) -> tuple[int, int, dict[str, int]] | None:
    """Commits (the soak's own taken off) and tuples written between the samples nearest ``start`` and ``end``."""
    inside = [sample for sample in samples if start <= sample.at <= end]
    before = [sample for sample in samples if sample.at <= start]
    first = before[-1] if before else (inside[0] if inside else None)
    last = inside[-1] if inside else None
    if first is None or last is None or last.at <= first.at:
        return None
    tables = {name: count - first.tuples.get(name, 0) for name, count in last.tuples.items()}
    commits = (last.commits - first.commits) - (last.own - first.own)
    return commits, sum(tables.values()), tables


# ------------------------------------------------------------------------------------------------ logs


@dataclass
class TryLogs:
    """One try's worker log (``attempt=N.log``), cut into its task processes (one per start and resume)."""

    starts: list[list[dict[str, Any]]]

    @classmethod
    def read(cls, deployment: Deployment, dag_id: str, run_id: str, task_id: str, attempt: int, index: int) -> TryLogs:
        files = deployment.task_log_files(dag_id, run_id, task_id, attempt, index)
        worker = [path for path in files if path.name == f"attempt={attempt}.log"]
        starts: list[list[dict[str, Any]]] = []
        for line in json_lines(worker[0]) if worker else []:
            if not starts or str(line.get("event", "")).startswith(PROCESS_START):
                starts.append([])
            starts[-1].append(line)
        return cls(starts)

    def handoffs(self, scheduled: set[float]) -> list[tuple[float, float]]:
        """For each process after the first (a resume): its first line - the last scheduling before it.

        ``scheduled`` holds the try's ``scheduled_dttm`` values: a resumed task instance's is the moment its
        trigger's event reached the metadata DB (the triggerer sets it with the state ``scheduled``).
        """
        found = []
        for process in self.starts[1:]:
            began = process[0]["at"]
            before = [at for at in scheduled if at <= began]
            if before:
                found.append((max(before), began - max(before)))
        return found

    def worker_seconds(self) -> float:
        return sum(process[-1]["at"] - process[0]["at"] for process in self.starts if process)


def killed_ti_named(line: str, killed: tuple[str, str, int, int], runs: dict[str, str]) -> bool:
    """Whether a scheduler log line is about the try the soak killed (its task instance, by dag, task, run, index)."""
    dag_id, task_id, index, _try = killed
    named = f"<TaskInstance: {dag_id}.{task_id} {runs[dag_id]} map_index={index} "
    plain = f"<TaskInstance: {dag_id}.{task_id} {runs[dag_id]} [" if index < 0 else named
    return named in line or plain in line


def utilisation(
    jobs: list[dict[str, Any]], batch_jobs: list[dict[str, Any]], other_jobs: list[dict[str, Any]], settings: Settings
) -> list[str]:
    """Slot utilisation at the gateway: while the mapped tasks and sensors ran, the batch's of its own slots,
    and the whole run's."""
    if not jobs or any(job["ended"] is None for job in jobs):
        return ["jobs still running"]
    parts = []
    if other_jobs:
        start = min(float(job["started"]) for job in other_jobs)
        end = max(float(job["ended"]) for job in other_jobs)
        if end > start:
            everything = slot_utilisation(jobs, settings.limit, start, end)
            theirs = slot_utilisation(other_jobs, settings.limit, start, end)
            parts.append(
                f"while the mapped tasks and sensors had jobs ({end - start:,.0f} s): {everything:.0%} of "
                f"{settings.limit} slots ({theirs:.0%} theirs, {everything - theirs:.0%} the batch's)"
            )
    if batch_jobs:
        parts.append(
            f"batch, over its jobs' span: {slot_utilisation(batch_jobs, settings.batch_concurrency):.0%} of its "
            f"{settings.batch_concurrency} slots"
        )
    parts.append(f"whole run: {slot_utilisation(jobs, settings.limit):.0%} of {settings.limit}")
    return parts


def orphaned(d: Deployment, runs: dict[str, str]) -> set[tuple[str, str, int]]:
    """Task instances a (re)started scheduler reset as orphans: with the LocalExecutor the stopped scheduler's
    worker processes, and the tasks they ran, went with it ("Reset the following N orphaned TaskInstances")."""
    found = set()
    for path in d.component_logs.glob("scheduler*.log"):
        listing = False
        for line in path.read_text(errors="replace").splitlines():
            if "orphaned TaskInstances" in line:
                listing = True
                continue
            named = re.match(r"\s+<TaskInstance: (\w+)\.(\w+) (\S+)(?: map_index=(\d+))? \[", line)
            if listing and named and runs.get(named.group(1)) == named.group(3):
                found.add((named.group(1), named.group(2), int(named.group(4) or -1)))
            elif not line.startswith(("\t", " ")):
                listing = False
    return found


def scheduler_looping(component: Any) -> bool:
    """Whether a (re)started scheduler has begun its loop: its log says so after its last start."""
    text = component.log_path.read_text(errors="replace")
    return "Starting the scheduler" in text.rsplit("Exiting gracefully", 1)[-1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Disruptions:
    """What the soak does to the deployment mid-run, each once, at a share of the mapped generations done."""

    killed_task: str = ""
    killed_key: tuple[str, str, int, int] | None = None  # dag_id, task_id, map_index, try_number
    killed_triggerer: str = ""
    restarted_scheduler: str = ""
    scheduler_gone: tuple[float, float] | None = None  # from its stop to its first loop after the start
    started: float = field(default_factory=time.time)

    def step(self, deployment: SoakDeployment, tis: list[tuple[Any, ...]], mapped: int) -> None:
        done = sum(1 for ti in tis if ti[1] == MAPPED and ti[2] == "generate" and ti[4] == "success")
        at = f"{time.time() - self.started:.0f} s in"
        if not self.killed_task and done >= max(1, mapped // 20):
            self._kill_a_task(deployment, tis, at, mapped_left=done < mapped)
        if not self.killed_triggerer and done >= max(2, mapped // 4):
            started = time.monotonic()
            left = deployment.kill("triggerer", signal.SIGKILL)
            deployment.start_triggerer("triggerer")
            self.killed_triggerer = (
                f"triggerer SIGKILLed {at} ({done}/{mapped} mapped done), restarted in "
                f"{time.monotonic() - started:.0f} s; {len(left)} of its processes left behind"
            )
        if not self.restarted_scheduler and done >= max(3, mapped // 2):
            started, stopped_at = time.monotonic(), time.time()
            deployment.stop("scheduler")
            scheduler = deployment.start_scheduler()
            wait_for("the restarted scheduler's first loop", lambda: scheduler_looping(scheduler), timeout=120)
            self.scheduler_gone = (stopped_at, time.time())
            self.restarted_scheduler = (
                f"scheduler stopped and started {at} ({done}/{mapped} mapped done) in "
                f"{time.monotonic() - started:.0f} s"
            )

    def _kill_a_task(self, deployment: SoakDeployment, tis: list[tuple[Any, ...]], at: str, mapped_left: bool) -> None:
        """SIGKILL the task process of a running generation (any running soak task once they are all done)."""
        for ti_id, dag_id, task_id, index, state, try_number, _scheduled in tis:
            if state != "running" or (mapped_left and (dag_id, task_id) != (MAPPED, "generate")):
                continue
            pids = [
                pid
                for component in list(deployment.components.values())
                for pid in processes_titled(f"airflow worker -- {ti_id}", under=component.pid)
            ]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed_key = (dag_id, task_id, index, try_number)
                self.killed_task = f"{dag_id}.{task_id}[{index}] try {try_number}: its task process SIGKILLed {at}"
                return

    def lines(self) -> list[str]:
        return [text or "(not done: nothing was running when its turn came)" for text in self._all()]

    def _all(self) -> tuple[str, str, str]:
        return (self.killed_task, self.killed_triggerer, self.restarted_scheduler)


def set_burst(deployment: Deployment, settings: Settings, counted: Counter[str], on: bool) -> None:
    """Count what the faults answered so far, then start (every submit a 429) or end a burst; polls keep theirs."""
    assert deployment.sim is not None
    count_faults(deployment, counted)
    faults = [poll_fault(settings)]
    if on:
        faults.insert(0, {"on": "submit", "status": 429, "retry_after": "2", "count": UNTIL_FAULT_USED})
        counted["bursts"] += 1
    deployment.sim.configure(faults=faults)


def poll_fault(settings: Settings) -> dict[str, Any]:
    return {"on": "poll", "status": 503, "probability": settings.poll_faults, "count": UNTIL_FAULT_USED}


def count_faults(deployment: Deployment, counted: Counter[str]) -> None:
    """Add what the current faults have answered so far (their counts went down by that) to ``counted``."""
    assert deployment.sim is not None
    faults = deployment.sim.configure()["faults"]
    polls = [fault for fault in faults if fault["on"] == "poll"]
    if polls:
        counted["poll_503s"] += UNTIL_FAULT_USED - polls[0]["count"]
    submits = [fault for fault in faults if fault["on"] == "submit"]
    if submits:
        counted["burst_429s"] += UNTIL_FAULT_USED - submits[0]["count"]


def test_soak(soak: SoakDeployment) -> None:  # noqa: PLR0915 - one run, told in order
    d, settings = soak, soak.settings
    assert d.sim is not None
    print(
        f"\n== soak ({settings.mode}): {settings.describe()}\n== {settings.jobs:,} jobs: the gateway alone needs at "
        f"least {settings.lower_bound / 60:.0f} min ({settings.jobs:,} x {settings.mean_job:g} s / {settings.limit} "
        f"slots, and the batch {settings.batch_rows:,} x {settings.mean_job:g} s / {settings.batch_concurrency}); "
        f"the deferrable batch itself at least {settings.batch_rounds_bound / 60:.0f} min (a round per "
        f"{settings.batch_concurrency} rows at most, each at least max(job, resume guard of about "
        f"{RESUME_GUARD_ESTIMATE:g} s))",
        flush=True,
    )
    rows_file = d.root / "soak-rows.jsonl"
    image_url = f"{d.sim_url}/files/sample.jpg"
    with rows_file.open("w") as rows:
        for index in range(settings.batch_rows):
            row = {"id": f"r{index:05d}", "image_url": image_url, "prompt": f"Slow push-in on row {index} at dusk"}
            rows.write(json.dumps(row) + "\n")
    d.sim.configure(faults=[poll_fault(settings)])
    counted: Counter[str] = Counter()
    # The idle deployment's own writes (heartbeats, the scheduler's and dag-processor's loops) for a while
    # first: the rate the batch's figures are also given net of.
    idle = [db_sample(d)]
    time.sleep(IDLE_SECONDS)
    idle.append(db_sample(d))
    samples = [idle[-1]]
    cpu = CpuSampler(d)
    cpu.start()
    disruptions = Disruptions()
    began = time.time()
    runs = {
        MAPPED: d.trigger(MAPPED, {"count": settings.mapped}),
        SENSORS: d.trigger(SENSORS, {"count": settings.sensors}),
        BATCH: d.trigger(BATCH, {"rows_uri": f"file://{rows_file}"}),
    }
    pairs = tuple(runs.items())
    # Give up (and still print the table) well before scripts/e2e.sh's bound would interrupt the run.
    deadline = min(time.monotonic() + 3 * settings.lower_bound + 900, STARTED + run_bound() - 300)
    next_burst = time.monotonic() + settings.burst_every
    burst_ends: float | None = None
    timed_out = ""
    next_db = time.monotonic()
    others_done: float | None = None  # when every run but the batch's had finished
    # Every scheduled_dttm seen per try (dag_id, task_id, map_index, try_number): sampled each second, it
    # stays on the row until the next scheduling (at least a resume guard later), so none is missed.
    scheduled: dict[tuple[str, str, int, int], set[float]] = {}
    last_report = time.monotonic()
    try:
        while True:
            states = dict(d.sql("SELECT dag_id, state FROM dag_run WHERE (dag_id, run_id) IN %s", pairs))
            if all(states.get(dag_id) in FINISHED for dag_id in runs):
                break
            if others_done is None and all(states.get(dag_id) in FINISHED for dag_id in (MAPPED, SENSORS)):
                others_done = time.time()
            if time.monotonic() >= deadline:
                timed_out = f"the soak did not end in time: {states}\n{d.diagnostics()}"
                break
            for name in list(d.components):
                d.check_alive(name)
            tis = d.sql(
                "SELECT id::text, dag_id, task_id, map_index, state, try_number, EXTRACT(EPOCH FROM scheduled_dttm) "
                "FROM task_instance WHERE (dag_id, run_id) IN %s",
                pairs,
            )
            for ti in tis:
                if ti[6] is not None:
                    scheduled.setdefault((ti[1], ti[2], ti[3], ti[5]), set()).add(float(ti[6]))
            if cpu.ti_id is None:
                cpu.ti_id = next((ti[0] for ti in tis if ti[1] == BATCH), None)
            disruptions.step(d, tis, settings.mapped)
            if time.monotonic() >= next_db:
                samples.append(db_sample(d))
                next_db += 5
            if burst_ends is None and time.monotonic() >= next_burst:
                set_burst(d, settings, counted, on=True)
                burst_ends = time.monotonic() + settings.burst_seconds
                next_burst += settings.burst_every
            elif burst_ends is not None and time.monotonic() >= burst_ends:
                set_burst(d, settings, counted, on=False)
                burst_ends = None
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                by_state = Counter(str(ti[4]) for ti in tis)
                paid = d.sim.stats()["jobs"]
                print(f"   {time.time() - began:5.0f} s: {dict(by_state)}; paid jobs {paid}", flush=True)
            time.sleep(1)
    finally:
        cpu.stopping.set()
    ended = time.time()
    samples.append(db_sample(d))
    count_faults(d, counted)
    time.sleep(2)
    samples.append(db_sample(d))
    report = Report.gather(
        d, settings, runs, (idle, samples), cpu, disruptions, counted, (began, ended, others_done), scheduled
    )
    report.publish()
    assert not timed_out, timed_out
    report.check()


# ------------------------------------------------------------------------------------------------ the table


@dataclass
class Report:
    settings: Settings
    rows: list[list[str]]
    notes: list[str]
    failures: list[str]

    @classmethod
    def gather(  # noqa: PLR0915 - the table's rows, one after the other
        cls,
        d: SoakDeployment,
        settings: Settings,
        runs: dict[str, str],
        db: tuple[list[DbSample], list[DbSample]],
        cpu: CpuSampler,
        disruptions: Disruptions,
        counted: Counter[str],
        times: tuple[float, float, float | None],
        scheduled: dict[tuple[str, str, int, int], set[float]],
    ) -> Report:
        assert d.sim is not None
        began, ended, others_done = times
        idle, samples = db
        pairs = tuple(runs.items())
        rows: list[list[str]] = []
        notes: list[str] = []
        failures: list[str] = []

        def figure(name: str, target: str, value: str, met: bool | None = None) -> None:
            mark = "" if met is None else (" **met**" if met else " **missed**")
            rows.append([name, target, value + mark])
            if met is False:
                failures.append(f"{name}: {value} (target {target})")

        run_states = dict(d.sql("SELECT dag_id, state FROM dag_run WHERE (dag_id, run_id) IN %s", pairs))
        tis = d.sql(
            "SELECT dag_id, run_id, task_id, map_index, state, try_number FROM task_instance "
            "WHERE (dag_id, run_id) IN %s",
            pairs,
        )
        history = d.sql(
            "SELECT dag_id, task_id, map_index, try_number, state FROM task_instance_history "
            "WHERE (dag_id, run_id) IN %s ORDER BY dag_id, task_id, map_index, try_number",
            pairs,
        )
        figure(
            "wall time",
            f">= {settings.lower_bound:,.0f} s (gateway), >= {settings.batch_rounds_bound:,.0f} s (batch rounds)",
            f"{ended - began:,.0f} s",
        )
        final = Counter(str(ti[4]) for ti in tis)
        not_success = sum(count for state, count in final.items() if state != "success")
        figure(
            "task instances not successful (final states)",
            "0",
            f"{not_success} of {len(tis)} ({', '.join(f'{k} {v}' for k, v in sorted(final.items()))}); runs "
            + ", ".join(f"{dag_id.removeprefix('soak_ltx2_')} {state}" for dag_id, state in sorted(run_states.items())),
            not_success == 0 and set(run_states.values()) == {"success"},
        )
        orphans = orphaned(d, runs)
        why: dict[str, list[str]] = {}
        for dag, task, index, number, state in history:
            if disruptions.killed_key == (dag, task, index, number):
                reason = "its process killed by the soak"
            elif (dag, task, index) in orphans:
                reason = "reset as an orphan by the restarted scheduler"
            elif "Process terminated by signal" in d.task_log(dag, runs[dag], task, number, index):
                reason = "its process signalled (the scheduler's stop: SIGTERM to its process group)"
            else:
                reason = "other (see its log)"
            why.setdefault(reason, []).append(f"{dag.removeprefix('soak_ltx2_')}.{task}[{index}] try {number} {state}")
        figure(
            "earlier tries that failed and were retried",
            "the killed one, the restart's",
            f"{len(history)}" + "".join(f"; {reason}: {', '.join(tries)}" for reason, tries in why.items()),
        )

        events = d.sql(
            "SELECT dag_id, task_id, map_index, try_number FROM log WHERE event = 'state mismatch' "
            "AND (dag_id, run_id) IN %s",
            pairs,
        )
        lines = [
            line
            for path in d.component_logs.glob("scheduler*.log")
            for line in path.read_text(errors="replace").splitlines()
            if MISMATCH_LINE in line or "state mismatch" in line.lower()
        ]
        killed = disruptions.killed_key
        # The killed task process's try ends as one: its executor event says the workload ended while the
        # task instance still says running. Only the other ones count against the target.
        killed_events = [event for event in events if killed is not None and tuple(event) == killed]
        killed_lines = [line for line in lines if killed is not None and killed_ti_named(line, killed, runs)]
        other_lines = [line for line in lines if line not in killed_lines]
        figure(
            '"state mismatch": scheduler log lines / `log` events, not counting the killed try\'s',
            "0",
            f"{len(other_lines)} / {len(events) - len(killed_events)} (the killed try's: {len(killed_lines)} / "
            f"{len(killed_events)})",
            not other_lines and len(events) == len(killed_events),
        )
        for line in other_lines[:5]:
            notes.append(f"State mismatch in the scheduler's log: `{line.strip()[:700]}`")

        stats = d.sim.stats()
        paid = {job["request_id"] for job in stats["job_times"]}
        sidecars: list[str] = []
        files = Counter[str]()
        for dag_id, run_id in pairs:
            folder = batch_folder(d, dag_id, run_id)
            for sidecar in folder.glob("*.mp4.json"):
                video = sidecar.with_name(sidecar.name.removesuffix(".json"))
                if video.is_file() and video.read_bytes()[4:8] == b"ftyp":
                    sidecars.append(json.loads(sidecar.read_text())["request_id"])
                    files[dag_id] += 1
        delivered = Counter(sidecars)
        twice = sum(count - 1 for count in delivered.values() if count > 1)
        undelivered = len(paid - set(delivered))
        scripted = counted["burst_429s"]
        figure(
            "paid jobs (simulator) / videos delivered (MP4 + sidecar)",
            "equal, none paid twice",
            f"{len(paid):,} / {sum(files.values()):,} (mapped {files[MAPPED]}, sensors {files[SENSORS]}, batch "
            f"{files[BATCH]:,}); paid but not delivered {undelivered}, delivered twice {twice}",
            len(paid) == sum(files.values()) == settings.jobs and not undelivered and not twice,
        )
        figure(
            "submits received",
            "-",
            f"{stats['submits']:,} = {len(paid):,} paid + {stats['throttled']['submit']:,} 429 at the limit + "
            f"{scripted} scripted 429 ({counted['bursts']} bursts) + "
            f"{stats['submits'] - len(paid) - stats['throttled']['submit'] - scripted} other",
        )
        figure("polls received / scripted 503s", "-", f"{stats['polls']:,} / {counted['poll_503s']:,}")

        manifest_path = batch_folder(d, BATCH, runs[BATCH]) / "manifest.jsonl"
        manifest = (
            [json.loads(line) for line in manifest_path.read_text().splitlines()] if manifest_path.exists() else []
        )
        statuses = Counter(str(line.get("status")) for line in manifest)
        figure(
            "manifest lines (their statuses)",
            f"{settings.batch_rows:,}",
            f"{len(manifest):,} ({', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))})",
            len(manifest) == settings.batch_rows and statuses == Counter({"generated": settings.batch_rows}),
        )

        handoffs: dict[str, list[tuple[float, float]]] = {"batch": [], "others": []}
        batch_logs: list[TryLogs] = []
        for dag_id, run_id, task_id, index, _state, try_number in tis:
            for attempt in range(1, (try_number or 1) + 1):
                logs = TryLogs.read(d, dag_id, run_id, task_id, attempt, index)
                times_scheduled = scheduled.get((dag_id, task_id, index, attempt), set())
                handoffs["batch" if dag_id == BATCH else "others"] += logs.handoffs(times_scheduled)
                if dag_id == BATCH:
                    batch_logs.append(logs)
        every = handoffs["batch"] + handoffs["others"]
        if every:
            gone = disruptions.scheduler_gone or (0.0, 0.0)
            parts = [
                f"{name} {percentile([v for _, v in found], 0.5):.1f} / {percentile([v for _, v in found], 0.99):.1f} "
                f"(n={len(found):,})"
                for name, found in (("all", every), *handoffs.items())
                if found
            ]
            calm = [value for at, value in every if not gone[0] <= at <= gone[1]]
            if calm and len(calm) < len(every):
                parts.append(
                    f"all but the {len(every) - len(calm)} scheduled while the scheduler restarted: "
                    f"{percentile(calm, 0.5):.1f} / {percentile(calm, 0.99):.1f}, max {max(calm):.1f}"
                )
            figure("hand-off: trigger event in the DB -> worker resume, p50 / p99 s", "-", "; ".join(parts))
        else:
            figure("hand-off: trigger event in the DB -> worker resume, p50 / p99 s", "-", "no resumes found")

        jobs = stats["job_times"]
        batch_ids = {str(line.get("request_id")) for line in manifest}
        batch_jobs = [job for job in jobs if job["request_id"] in batch_ids]
        other_jobs = [job for job in jobs if job["request_id"] not in batch_ids]
        parts = utilisation(jobs, batch_jobs, other_jobs, settings)
        figure("slot utilisation at the gateway", "-", "; ".join(parts))

        batch_run = d.sql(
            "SELECT EXTRACT(EPOCH FROM start_date), EXTRACT(EPOCH FROM end_date) FROM dag_run "
            "WHERE dag_id = %s AND run_id = %s",
            BATCH,
            runs[BATCH],
        )
        batch_start, batch_end = began, ended
        if batch_run and batch_run[0][0] is not None:
            batch_start, batch_end = float(batch_run[0][0]), float(batch_run[0][1] or ended)
        settled = max(1, len(manifest))
        worker_s = sum(logs.worker_seconds() for logs in batch_logs)
        processes = sum(len(logs.starts) for logs in batch_logs)
        figure(
            "batch task: wall / worker-held / CPU per row",
            "-",
            f"{(batch_end - batch_start) / settled * 1000:,.0f} ms / {worker_s / settled * 1000:,.0f} ms / "
            f"{cpu.seconds / settled * 1000:,.0f} ms ({processes:,} task processes in the log, {cpu.processes:,} "
            f"measured: {cpu.seconds:,.0f} s CPU)",
        )

        whole = db_writes(samples, batch_start, batch_end)
        text = "no samples"
        if whole is not None:
            commits, tuples, _tables = whole
            text = (
                f"over the batch's run (everything running): {tuples / settled:.1f} tuples, "
                f"{commits / settled:.1f} commits"
            )
        tail_text = ""
        if others_done is not None:
            tail_rows = [
                job for job in batch_jobs if job["ended"] is not None and others_done <= job["ended"] <= batch_end
            ]
            tail = db_writes(samples, others_done, batch_end)
            quiet = db_writes(idle, idle[0].at, idle[-1].at)
            if tail is not None and quiet is not None and len(tail_rows) >= 10:
                commits, tuples, tables = tail
                span, idle_span, n = batch_end - others_done, idle[-1].at - idle[0].at, len(tail_rows)
                net_commits = commits - quiet[0] * span / idle_span
                net_tables = {name: count - quiet[2].get(name, 0) * span / idle_span for name, count in tables.items()}
                top = sorted(net_tables.items(), key=lambda item: -item[1])[:4]
                tail_text = (
                    f"; the batch alone (last {span:,.0f} s, {n:,} rows): {tuples / n:.1f} tuples, {commits / n:.1f} "
                    f"commits; net of the idle deployment's rate: {sum(net_tables.values()) / n:.1f} tuples ("
                    + ", ".join(f"{name} {count / n:.1f}" for name, count in top)
                    + f"), {net_commits / n:.1f} commits"
                )
        figure("metadata DB writes per row", "-", text + tail_text)
        for text in disruptions.lines():
            figure("disruption", "-", text)

        notes += [
            f"{settings.describe()}. Mode `{settings.mode}`; {datetime.now().strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores, load average at the end {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"{'CeleryExecutor, two workers' if d.broker_url else 'LocalExecutor'}, two triggerers, PostgreSQL.",
            "Task instances: the final state of every task instance of the three runs (`task_instance`); earlier tries "
            "from `task_instance_history`. State mismatch: lines of the scheduler's log (all its starts) with "
            f"'{MISMATCH_LINE}' or 'state mismatch', and rows of the `log` table with event 'state mismatch'.",
            "Paid = the jobs the simulator created (`/_sim/stats` `job_times`); delivered = MP4s (checked: an `ftyp` "
            "box) with a sidecar in the runs' output folders, matched to paid jobs by the sidecar's request id.",
            "Hand-off: the trigger's event reaching the metadata DB (`task_instance.scheduled_dttm`, which the "
            "triggerer sets with the state `scheduled` when it submits the event; sampled every second, it stays on "
            "the row until the next scheduling) -> the first line ('::group::Pre Execute') of the resumed task "
            "process in the try's worker log (`attempt=N.log`): the scheduler's loop, the executor, the worker's "
            "start. A trigger's hold-back after a deferral comes before its event, so it is not included. (The "
            "triggers' own log files cannot serve: a triggerer rewrites `attempt=N.log.trigger.<job>.log` for each "
            "trigger of the same try, so the earlier triggers' 'Trigger fired event' lines are gone.)",
            "Slot utilisation: busy slot-seconds / (slots x window) of the jobs named (`slot_utilisation`, the "
            "simulator's job start and end times): over the window from the first to the last job of the mapped "
            "tasks and sensors, all jobs against the gateway's limit (and how much of it each part used); the "
            "batch's jobs (its manifest's request ids) against its max_concurrent_jobs, over their own span; all "
            "jobs over the whole run.",
            "Batch task per row: wall = its run's start -> end / manifest lines; worker-held = the time from each "
            "task process's first to last log line, summed; CPU = user + system time of its task processes "
            "(`airflow worker -- <ti id>`) from /proc: each one's rise of its parent's (the executor worker's) "
            "reaped-children CPU time across its exit, so all of its life and its forks count; read 4 times a second "
            "(a process that lived less than that can be missed).",
            "Metadata DB writes: `pg_stat_user_tables` n_tup_ins + n_tup_upd + n_tup_del and `pg_stat_database` "
            "xact_commit (the soak's own look-ups taken off), sampled every 5 s, as deltas per row: over the batch "
            "run's whole window (every component and task writing meanwhile), and over the window after the mapped "
            "and sensor runs ended, per batch row whose job ended in it, also net of the idle deployment's rate "
            f"(measured for {IDLE_SECONDS:g} s before the runs: heartbeats, the scheduler's and the dag-processor's "
            "loops), with the 4 tables written most.",
            "Reproduce with `scripts/soak.sh` (the full run; `--quick` for the short one).",
        ]
        return cls(settings, rows, notes, failures)

    def table(self) -> Table:
        settings = self.settings
        sized = any(os.environ.get(f"LTX2_SOAK_{name}") for name in SIZES) and settings.mode == "full"
        title = (
            f"{TITLE} ({'reduced' if sized else settings.mode} run): {settings.mapped} mapped generations, "
            f"{settings.sensors} sensors, a batch of {settings.batch_rows:,} rows, jobs of {settings.job_min:g}-"
            f"{settings.job_max:g} s, gateway limit {settings.limit}"
        )
        return Table(title, ["figure", "target", "value"], self.rows, self.notes)

    def publish(self) -> None:
        text = self.table().markdown().replace(E2E_KEY, "***")
        print("\n" + text, flush=True)
        if self.settings.results:
            write_section(Path(self.settings.results), text)
            print(f"Written to {self.settings.results} (section {SECTION})", flush=True)

    def check(self) -> None:
        assert not self.failures, "soak targets missed:\n" + "\n".join(self.failures)


def write_section(path: Path, text: str) -> None:
    """Put ``text`` in as section 8 of a RESULTS.md: replace the section there, or add it before the footer."""
    current = path.read_text() if path.exists() else ""
    found = re.search(rf"(?m)^## {SECTION}\. .*?(?=^## |^Total run time|\Z)", current, flags=re.S)
    block = text.rstrip() + "\n\n"
    if found:
        updated = current[: found.start()] + block + current[found.end() :]
    else:  # before the first later section, else before the footer (bench/__main__.py keeps that order)
        later = [m for m in re.finditer(r"(?m)^## (\d+)\.", current) if int(m.group(1)) > SECTION]
        footer = re.search(r"(?m)^Total run time", current)
        at = later[0].start() if later else (footer.start() if footer else len(current))
        updated = current[:at].rstrip() + "\n\n" + block + current[at:]
    path.write_text(updated.rstrip() + "\n")
