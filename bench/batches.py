"""Table 5: batches of generations against a gateway that runs only a few jobs at once.

One worker process per limit and way of running the batch (``python -m bench.batches worker``, settings on
stdin) runs the same generations either as ``Ltx2GenerateVideoOperator`` tasks, one per generation (mapped),
or as one ``Ltx2GenerateVideoBatchOperator`` task, in the worker or deferrable, through a one-process model
of Airflow's deferral:

- the triggerer: one asyncio event loop in its own thread; every deferred trigger's ``run()`` is a task of
  that loop, as in Airflow's triggerer, where the triggers of all tasks share one loop. The trigger is
  rebuilt from ``trigger.serialize()`` the way Airflow carries it: its kwargs are encoded with serde and
  JSON (worker -> API server -> DB), decoded as the triggerer decodes them, and the class is imported from
  its classpath and called with them, so kwargs that do not round-trip fail here as they would there.
  Its first event goes back to a worker after a fixed hand-off delay (the scheduler picking the task up,
  the executor starting it); a trigger still running then is cancelled (``on_kill`` as the triggerer
  does); one that fails, times out or ends without an event resumes its task with ``__fail__``.
- the worker pool: a thread pool whose every call gets a fresh operator (a resumed task runs in a new
  process) and runs ``execute(context)`` or, after a trigger event, ``resume_execution`` as Airflow's task
  runner does: ``getattr(operator, method_name)(context, event=payload, **defer_kwargs)``. XCom and the
  task state store live per task for the whole batch, as in the metadata DB.

Every submit attempt is seen where it leaves the process (``requests.Session.request``): when it was sent
and answered, the status and the ``Retry-After``, per worker call; so is each poll round of a batch run in
the worker (when it saw which jobs end). The parent configures the simulator's limit and reads its job
start/end records and 429 counters after the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from bench.common import KEY, SUBMIT_PATH, Table, median, result_channel, run_worker, verdict
from tests.fakes import FakeStateStore, FakeTaskInstance

PROJECTED_JOB_SECONDS = 60.0
UTILISATION_TARGET = 0.90
RESUMES_TARGET = 3  # mapped: the median task's resumes per paid job
BATCH_RESUMES_TARGET = 1.0  # batch operator: its resumes / its paid jobs
IN_WORKER_SHARE_TARGET = 0.95  # batch operator in the worker: utilisation / the best possible
# The ways one batch of generations runs, a row of the table each: one task per generation (mapped, deferrable),
# or one batch operator task that waits in its worker or defers to one trigger for all its jobs.
MAPPED, IN_WORKER, DEFERRED = "mapped", "batch operator, in the worker", "batch operator, deferrable"
MODES = (MAPPED, IN_WORKER, DEFERRED)
# "About 0" worker-seconds held while throttled: no call holds its slot as long as the least Retry-After the
# gateway gives (whole seconds, at least 1), which any wait for room in a worker would.
HELD_CALL_LIMIT = 1.0
DEFAULT_POLL_INTERVAL = 10.0  # the operator's default, for the projection note
PROMPT = "waves roll in at sunset, slow dolly forward"
# The side-by-side batches start together this long after their processes: time enough for all of them to import
# Airflow and the provider (seconds of CPU each) before any batch begins, so no batch's start waits for a core.
START_DELAY_SECONDS = 20.0


@dataclass(frozen=True)
class Settings:
    """One batch: its size, the harness's model of Airflow, and the simulated jobs (all flags)."""

    tasks: int = 50
    limits: tuple[int, ...] = (2, 8)
    worker_slots: int = 16
    handoff_seconds: float = 3.0
    queue_seconds: float = 1.0
    processing_seconds: float = 9.0
    poll_interval: float = 2.0

    @property
    def job_seconds(self) -> float:
        return self.queue_seconds + self.processing_seconds

    def ideal(self, limit: int) -> float:
        return math.ceil(self.tasks / limit) * self.job_seconds

    def cap(self, limit: int) -> float:
        """How long a batch may take before its unfinished tasks are given up (and the task timeout)."""
        return 3 * self.ideal(limit) + 60

    def best(self, limit: int) -> float:
        """The best possible slot utilisation: the last round leaves slots idle when N is no multiple."""
        return self.tasks / (limit * math.ceil(self.tasks / limit))


def batch_rows(count: int, image_url: str) -> list[dict[str, Any]]:
    """A batch operator's table: one row per generation, ids ``r00000``..., all of one image and prompt."""
    return [{"id": f"r{i:05d}", "image_url": image_url, "prompt": PROMPT} for i in range(count)]


# --------------------------------------------------------------------------------------------------------
# The worker side: the harness


@dataclass
class Attempt:
    """One submit request as it left the process; ``status`` None when no HTTP answer came."""

    sent: float
    answered: float
    status: int | None
    retry_after: float | None


@dataclass
class WorkerCall:
    """One run of a task in a worker slot: ``execute`` or the method resumed after a trigger event."""

    method: str
    start: float
    end: float = 0.0
    outcome: str = ""  # "deferred", "success" or "failed"
    trigger: str | None = None  # the class it deferred to
    waits_for_job: bool = False  # deferred to wait for jobs in flight (not for room at the gateway)
    error: str | None = None
    cpu: float = 0.0  # the worker thread's CPU seconds in the call
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class TaskRecord:
    task_id: str
    state: str = "unfinished"
    calls: list[WorkerCall] = field(default_factory=list)


@dataclass
class Fired:
    """A trigger's first event, as the triggerer saw it, or a batch's poll round in the worker that saw jobs
    end: when, and the jobs it reports ended, with their status."""

    at: float
    trigger: str
    jobs: dict[str, str | None]


def ended_jobs(payload: Any) -> dict[str, str | None]:
    """The jobs a trigger event reports: a batch event's ``ended`` ones, or a video event's own job."""
    if not isinstance(payload, dict):
        return {}
    if isinstance(payload.get("ended"), dict):
        return {str(rid): event.get("status") for rid, event in payload["ended"].items() if isinstance(event, dict)}
    return {str(payload["request_id"]): payload.get("status")} if payload.get("request_id") else {}


def observe_submits(current: threading.local) -> None:
    """Record every submit a worker call sends, with its answer, in that call's ``attempts``."""
    import requests

    from airflow_provider_ltx2.api.replies import retry_after_seconds

    send = requests.Session.request

    def request(self: requests.Session, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        call: WorkerCall | None = getattr(current, "call", None)
        if call is None or not str(url).endswith(SUBMIT_PATH):
            return send(self, method, url, *args, **kwargs)
        sent = time.time()
        try:
            response = send(self, method, url, *args, **kwargs)
        except requests.RequestException:
            call.attempts.append(Attempt(sent, time.time(), None, None))
            raise
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        call.attempts.append(Attempt(sent, time.time(), response.status_code, wait))
        return response

    requests.Session.request = request  # type: ignore[method-assign, assignment]


def observe_poll_rounds(fired: list[Fired]) -> None:
    """Record each poll of a batch run in the worker that saw jobs end (its detection of a finish)."""
    from airflow_provider_ltx2.batches.run import BatchRun
    from airflow_provider_ltx2.events import Delivered

    poll_due = BatchRun.poll_due

    def observed(self: BatchRun, deadline: Any) -> Any:
        ended = poll_due(self, deadline)
        if ended:
            jobs: dict[str, str | None] = {
                rid: "succeeded" if isinstance(out, Delivered) else "failed" for rid, out in ended.items()
            }
            fired.append(Fired(time.time(), "poll round", jobs))
        return ended

    BatchRun.poll_due = observed  # type: ignore[method-assign]


class Harness:
    """A triggerer (one event loop in a thread) and a worker pool running one batch: ``mode`` says as what
    (one task per generation, or one batch operator task in the worker or deferrable)."""

    def __init__(self, settings: Settings, limit: int, base_url: str, mode: str, output_prefix: str) -> None:
        self.settings = settings
        self.limit = limit
        self.mode = mode
        self.output_prefix = output_prefix
        self.image_url = f"{base_url}/files/sample.jpg"
        self.rows = batch_rows(settings.tasks, self.image_url)
        names = [f"generate_{i:03d}" for i in range(settings.tasks)] if mode == MAPPED else ["generate_batch"]
        self.tasks = [TaskRecord(name) for name in names]
        self.instances = {
            task.task_id: (FakeTaskInstance(task_id=task.task_id, map_index=i), FakeStateStore())
            for i, task in enumerate(self.tasks)
        }
        self.fired: list[Fired] = []
        self.trigger_errors: list[str] = []
        self.current = threading.local()
        self.lock = threading.Lock()
        self.remaining = len(self.tasks)
        self.all_done = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.triggerer = threading.Thread(target=self.loop.run_forever, name="triggerer", daemon=True)
        self.pool = ThreadPoolExecutor(settings.worker_slots, thread_name_prefix="worker")
        observe_submits(self.current)
        if mode == IN_WORKER:
            observe_poll_rounds(self.fired)

    def operator(self, task_id: str) -> Any:
        from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator, Ltx2GenerateVideoOperator

        common: dict[str, Any] = {
            "task_id": task_id,
            "poll_interval": self.settings.poll_interval,
            "timeout": self.settings.cap(self.limit),
        }
        if self.mode == MAPPED:
            return Ltx2GenerateVideoOperator(image_url=self.image_url, prompt=PROMPT, deferrable=True, **common)
        return Ltx2GenerateVideoBatchOperator(
            requests=self.rows,
            output_prefix=self.output_prefix,
            max_concurrent_jobs=self.limit,
            deferrable=self.mode == DEFERRED,
            **common,
        )

    def run(self) -> float:
        """Start every task at once (the scheduler queues them all; the pool's slots cap how many run)."""
        self.triggerer.start()
        started = time.time()
        for task in self.tasks:
            self.pool.submit(self.work, task, None, None)
        self.all_done.wait(self.settings.cap(self.limit))
        return started

    def stop(self) -> None:
        async def cancel_all() -> None:
            for running in asyncio.all_tasks() - {asyncio.current_task()}:
                running.cancel()

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.triggerer.join(10)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # the worker ------------------------------------------------------------------------------------

    def work(self, task: TaskRecord, method: str | None, next_kwargs: str | None) -> None:
        """One worker call; ``next_kwargs`` is the JSON the task runner would read from the API server."""
        from airflow.providers.common.compat.sdk import TaskDeferred
        from airflow.sdk.serde import deserialize

        from airflow_provider_ltx2.triggers.ltx2 import Ltx2BatchTrigger, Ltx2VideoTrigger

        call, cpu = WorkerCall(method or "execute", time.time()), time.thread_time()
        task.calls.append(call)
        ti, store = self.instances[task.task_id]
        context: Any = {"ti": ti, "task_state_store": store}
        self.current.call = call
        try:
            operator = self.operator(task.task_id)
            if method is None:
                result = operator.execute(context)
            else:
                result = operator.resume_execution(method, deserialize(json.loads(next_kwargs or "{}")), context)
        except TaskDeferred as deferred:
            call.end, call.outcome = time.time(), "deferred"
            call.trigger = type(deferred.trigger).__name__
            call.waits_for_job = isinstance(deferred.trigger, (Ltx2VideoTrigger, Ltx2BatchTrigger))
            try:
                self.defer(task, deferred)
            except Exception as error:  # the task runner fails a task whose deferral it cannot encode
                self.fail(task, call, error)
        except Exception as error:
            self.fail(task, call, error)
        else:
            call.end, call.outcome = time.time(), "success"
            ti.xcom_push("return_value", result)
            self.finish(task, "success")
        finally:
            call.cpu = time.thread_time() - cpu
            self.current.call = None

    def fail(self, task: TaskRecord, call: WorkerCall, error: Exception) -> None:
        call.end, call.outcome, call.error = time.time(), "failed", f"{type(error).__name__}: {error}"
        self.finish(task, "failed")

    def finish(self, task: TaskRecord, state: str) -> None:
        task.state = state
        with self.lock:
            self.remaining -= 1
            if self.remaining == 0:
                self.all_done.set()

    def defer(self, task: TaskRecord, deferred: Any) -> None:
        """What the task runner sends and the API server stores: the trigger's classpath and encoded kwargs."""
        from airflow.sdk.serde import serialize

        classpath, kwargs = deferred.trigger.serialize()
        stored_kwargs = json.dumps(serialize(kwargs))
        next_kwargs = json.dumps(serialize(deferred.kwargs or {}))
        timeout = deferred.timeout
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        coroutine = self.trigger(task, classpath, stored_kwargs, deferred.method_name, next_kwargs, seconds)
        asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    # the triggerer ---------------------------------------------------------------------------------

    async def trigger(
        self, task: TaskRecord, classpath: str, stored_kwargs: str, method: str, next_kwargs: str, timeout: float | None
    ) -> None:
        """Rebuild the trigger as the triggerer does, run it, and hand its first event back to a worker."""
        from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
        from airflow.sdk.serde import deserialize
        from airflow.serialization.decoders import smart_decode_trigger_kwargs

        def fail(reason: TriggerFailureReason, error: BaseException | None) -> None:
            lines = traceback.format_exception(error) if error is not None else ["exited without an event"]
            self.trigger_errors.append(f"{task.task_id}: {reason.value}: {lines[-1].strip()}")
            self.hand_back(task, TRIGGER_FAIL_REPR, {"error": reason.value, "traceback": lines})

        try:
            module, _, name = classpath.rpartition(".")
            decoded = deserialize(json.loads(stored_kwargs))
            assert isinstance(decoded, dict)
            kwargs = {key: smart_decode_trigger_kwargs(value) for key, value in decoded.items()}
            trigger = getattr(importlib.import_module(module), name)(**kwargs)
        except Exception as error:  # the triggerer fails a trigger it cannot load or inflate
            fail(TriggerFailureReason.TRIGGER_FAILURE, error)
            return
        trigger.task_instance = self.instances[task.task_id][0]
        resume_kwargs = deserialize(json.loads(next_kwargs))
        assert isinstance(resume_kwargs, dict)
        runner = asyncio.current_task()
        fired = False

        async def events() -> None:
            nonlocal fired
            async for event in trigger.run():
                if not fired:
                    fired = True
                    self.fired.append(Fired(time.time(), name, ended_jobs(event.payload)))
                    self.hand_back(task, method, {**resume_kwargs, "event": event.payload}, runner)

        try:
            await asyncio.wait_for(events(), timeout)
        except asyncio.CancelledError:
            if not fired:
                raise
            with contextlib.suppress(Exception):  # the triggerer's cancel of a trigger its task left
                await asyncio.wait_for(trigger.on_kill(), 5)
        except asyncio.TimeoutError as error:
            fail(TriggerFailureReason.TRIGGER_TIMEOUT, error)
        except Exception as error:
            fail(TriggerFailureReason.TRIGGER_FAILURE, error)
        else:
            if not fired:
                fail(TriggerFailureReason.TRIGGER_FAILURE, None)
        finally:
            with contextlib.suppress(Exception):
                await trigger.cleanup()

    def hand_back(
        self, task: TaskRecord, method: str, kwargs: dict[str, Any], runner: asyncio.Task[Any] | None = None
    ) -> None:
        """After the hand-off delay the task leaves the deferred state: its trigger is cancelled if still
        running, and a worker slot resumes it with the event in ``next_kwargs`` (serde + JSON, as stored)."""
        from airflow.sdk.serde import serialize

        encoded = json.dumps(serialize(kwargs))

        def resume() -> None:
            if runner is not None and not runner.done():
                runner.cancel()
            self.pool.submit(self.work, task, method, encoded)

        self.loop.call_later(self.settings.handoff_seconds, resume)


def worker() -> None:
    out = result_channel()
    setup = json.loads(sys.stdin.readline())
    settings = Settings(**{**setup["settings"], "limits": tuple(setup["settings"]["limits"])})
    for module in ("airflow_provider_ltx2.operators.ltx2", "airflow_provider_ltx2.triggers.ltx2", "airflow.sdk.serde"):
        importlib.import_module(module)  # imports are not the batch's time
    with tempfile.TemporaryDirectory(prefix="ltx2-bench-batch-") as folder:  # the batch operator's videos
        harness = Harness(settings, setup["limit"], setup["base_url"], setup["mode"], f"file://{folder}")
        late = time.time() - setup["start_at"]
        time.sleep(max(0.0, -late))
        started = harness.run()
        ended = max((call.end for task in harness.tasks for call in task.calls), default=time.time())
        harness.stop()
    result = {
        "cpu": time.process_time(),
        "late_start": max(0.0, late),
        "started": started,
        "ended": ended,
        "tasks": [asdict(task) for task in harness.tasks],
        "returned": [ti.xcom.get("return_value") for ti, _ in harness.instances.values()],
        "fired": [asdict(fired) for fired in harness.fired],
        "trigger_errors": harness.trigger_errors,
    }
    print(json.dumps(result), file=out, flush=True)


# --------------------------------------------------------------------------------------------------------
# The parent side


def handoffs(jobs: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Each freed slot's idle time until the next job took it, with the job that freed it: job ends matched to
    later starts, in order."""
    events = sorted(
        [(float(job["ended"]), 0, job["request_id"]) for job in jobs if job["ended"] is not None]
        + [(float(job["started"]), 1, job["request_id"]) for job in jobs]
    )
    free: deque[tuple[float, str]] = deque()
    pairs = []
    for moment, is_start, request_id in events:
        if not is_start:
            free.append((moment, request_id))
        elif free:
            freed_at, freed_by = free.popleft()
            pairs.append((freed_by, moment - freed_at))
    return pairs


def calls(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for task in tasks:
        yield from task["calls"]


def accepted(attempt: dict[str, Any]) -> bool:
    return attempt["status"] is not None and 200 <= attempt["status"] < 300


def refusal_runs(attempts: list[dict[str, Any]], start: float, end: float) -> Iterator[tuple[float, float, float]]:
    """Each run of refused submits (429s), in order, as (``start`` or the answer of the accepted submit before
    it, its first refusal's answer, the answer of the accepted submit that ended it or ``end``). A mapped task
    has one run at most; a batch task one each time the gateway was full when it had a row to submit."""
    before, refused = start, None
    for attempt in sorted(attempts, key=lambda a: a["sent"]):
        if attempt["status"] == 429 and refused is None:
            refused = attempt["answered"]
        elif accepted(attempt):
            if refused is not None:
                yield before, refused, attempt["answered"]
                refused = None
            before = attempt["answered"]
    if refused is not None:
        yield before, refused, end


def held_while_throttled(call: dict[str, Any]) -> float:
    """Worker time a call spent on a gateway at capacity: the whole call if it deferred to wait for room,
    else, for each run of refused submits, from the call's start (or its last accepted submit) until a submit
    got in again (or the call ended)."""
    if call["outcome"] == "deferred" and not call["waits_for_job"]:
        return float(call["end"] - call["start"])
    return float(sum(got_in - since for since, _, got_in in refusal_runs(call["attempts"], call["start"], call["end"])))


def waited_for_room(task: dict[str, Any]) -> float:
    """How long a task waited for room: from each first refused submit to the accepted one (or its end)."""
    attempts = [a for call in task["calls"] for a in call["attempts"]]
    end = max((call["end"] for call in task["calls"]), default=0.0)
    return float(sum(got_in - refused for _, refused, got_in in refusal_runs(attempts, 0.0, end)))


def retry_after_margins(task: dict[str, Any]) -> list[float]:
    """For each 429 with a Retry-After that the task followed with another submit: next sent - (answer + wait)."""
    attempts = sorted((a for call in task["calls"] for a in call["attempts"]), key=lambda a: a["sent"])
    return [
        later["sent"] - (earlier["answered"] + earlier["retry_after"])
        for earlier, later in itertools.pairwise(attempts)
        if earlier["status"] == 429 and earlier["retry_after"] is not None
    ]


def measure(sim: Any, limit: int, mode: str, settings: Settings, start_at: float) -> dict[str, Any]:
    """One batch at ``limit`` concurrent jobs, run as ``mode`` from ``start_at`` (epoch seconds); the worker's
    records joined with the simulator's."""
    from airflow_provider_ltx2.simulator.limits import slot_utilisation

    sim.reset()
    sim.configure(
        max_concurrent_jobs=limit, queue_seconds=settings.queue_seconds, processing_seconds=settings.processing_seconds
    )
    setup = {"settings": asdict(settings), "limit": limit, "mode": mode, "base_url": sim.base_url, "start_at": start_at}
    print(f"  batch at {limit} concurrent jobs, {mode}: started", file=sys.stderr, flush=True)
    env = {**os.environ, "AIRFLOW_CONN_LTX2_DEFAULT": sim.connection()}
    timeout = START_DELAY_SECONDS + settings.cap(limit) + 120
    batch = run_worker("bench.batches", [], stdin=json.dumps(setup) + "\n", timeout=timeout, env=env)
    stats = sim.stats()
    sim.reset()
    print(f"  batch at {limit} concurrent jobs, {mode}: done", file=sys.stderr, flush=True)
    jobs = stats.get("job_times", stats["jobs"])
    if not isinstance(jobs, list):
        raise RuntimeError("the simulator's stats have no job start/end records (job_times)")
    tasks = batch["tasks"]
    wall = batch["ended"] - batch["started"]
    ended = {job["request_id"]: job["ended"] for job in jobs}
    seen = {rid: f["at"] for f in batch["fired"] for rid, status in f["jobs"].items() if status == "succeeded"}
    pairs = handoffs(jobs)
    paid = [sum(accepted(a) for call in task["calls"] for a in call["attempts"]) for task in tasks]
    resumes = [sum(call["method"] != "execute" for call in task["calls"]) for task in tasks]
    margins = [margin for task in tasks for margin in retry_after_margins(task)]
    attempts = sum(len(call["attempts"]) for call in calls(tasks))
    if len(jobs) and not attempts:
        raise RuntimeError("no submit attempt was observed: the hook no longer submits through requests.Session")
    returned = [value for value in batch["returned"] if isinstance(value, dict)]
    return {
        "limit": limit,
        "mode": mode,
        "wall": wall,
        "utilisation": slot_utilisation(jobs, limit, start=batch["started"], end=batch["ended"]) if jobs else 0.0,
        "gaps": [gap for _, gap in pairs],
        # per hand-off: how long the job that freed the slot took to be seen finished (trigger event, poll round)
        "detection": [seen[freed_by] - ended[freed_by] for freed_by, _ in pairs if freed_by in seen],
        "throttled": stats.get("throttled", {}),
        "paid_jobs": len(jobs),
        "per_paid_job": [r / p for r, p in zip(resumes, paid, strict=True) if p],
        "resumes_per_paid": sum(resumes) / sum(paid) if sum(paid) else float("nan"),
        "held": [(held, call["cpu"]) for call in calls(tasks) if (held := held_while_throttled(call))],
        "waited": sum(waited_for_room(task) for task in tasks),
        "cpu": batch["cpu"],
        "late_start": batch["late_start"],
        "worker_seconds": sum(call["end"] - call["start"] for call in calls(tasks)),
        "worker_calls": sum(1 for _ in calls(tasks)),
        "failed": [task for task in tasks if task["state"] != "success"],
        # the videos made: a mapped task's success, a batch task's generated rows (its manifest's count)
        "videos": sum(value.get("generated", 0) for value in returned) if mode != MAPPED else len(returned),
        "margins": margins,
        "attempts": attempts,
        "trigger_errors": batch["trigger_errors"],
    }


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def utilisation_cell(settings: Settings, r: dict[str, Any], mapped: dict[str, Any] | None) -> str:
    """The slot utilisation against the best possible, and the batch operator's targets: in the worker a share
    of the best possible, deferrable the mapped tasks' figure of the same limit and run."""
    measured, best = r["utilisation"], settings.best(r["limit"])
    cell = f"{measured:.1%} ({best:.1%})"
    if r["mode"] == IN_WORKER:
        return f"{cell}: {measured / best:.1%} of best {verdict(measured >= IN_WORKER_SHARE_TARGET * best)}"
    if r["mode"] == DEFERRED:
        if mapped is None:
            return f"{cell}, no mapped row to compare {verdict(False)}"
        return f"{cell} vs mapped {mapped['utilisation']:.1%} {verdict(measured >= mapped['utilisation'])}"
    return cell


def resumes_cell(r: dict[str, Any]) -> str:
    """Worker resumes per paid video: the batch's mean, and for mapped tasks the median task's (its target)."""
    per_job, overall = r["per_paid_job"], r["resumes_per_paid"]
    if not per_job:
        return f"- {verdict(False)}"
    if r["mode"] != MAPPED:
        return f"{overall:.2f} {verdict(overall <= BATCH_RESUMES_TARGET)}"
    task = median(per_job)
    return f"{overall:.2f} ({task:g} / {max(per_job):g}) {verdict(task <= RESUMES_TARGET)}"


def row(settings: Settings, r: dict[str, Any], mapped: dict[str, Any] | None) -> list[str]:
    limit, gaps = r["limit"], r["gaps"]
    gap = mean(gaps)
    projected = PROJECTED_JOB_SECONDS / (PROJECTED_JOB_SECONDS + gap) if gaps else float("nan")
    held = sum(wall for wall, _ in r["held"])
    held_max = max((wall for wall, _ in r["held"]), default=0.0)
    held_cpu = sum(cpu for _, cpu in r["held"])
    early = [m for m in r["margins"] if m < 0]
    states = {task["state"] for task in r["failed"]}
    failures = f"{len(r['failed'])}" + (f" ({', '.join(sorted(states))})" if r["failed"] else "")
    complete = r["paid_jobs"] == settings.tasks == r["videos"] and not r["failed"]
    tasks = settings.tasks if r["mode"] == MAPPED else 1
    return [
        str(limit),
        f"{r['mode']} ({tasks} task{'s' if tasks > 1 else ''})",
        f"{r['wall']:.0f} ({settings.ideal(limit):.0f})",
        utilisation_cell(settings, r, mapped),
        f"{gap:.1f} / {max(gaps, default=float('nan')):.1f}",
        f"{projected:.0%} {verdict(projected >= UTILISATION_TARGET)}",
        f"{r['throttled'].get('submit', '-')} / {r['throttled'].get('poll', '-')}",
        resumes_cell(r),
        f"{held:.1f} (CPU {held_cpu:.2f}; max {held_max:.2f} a call; "
        f"{held / r['waited'] if r['waited'] else 0:.1%} of {r['waited']:,.0f} s waited) "
        f"{verdict(held_max < HELD_CALL_LIMIT)}",
        f"{len(early)} of {len(r['margins'])}"
        + (f" (min margin {min(r['margins']):+.2f} s)" if r["margins"] else "")
        + f" {verdict(not early)}",
        f"{r['paid_jobs']} / {failures} / {r['videos']} {verdict(complete)}",
    ]


def run(sim: Any, settings: Settings) -> Table:
    table = Table(
        title=(
            f"5. Batches at the gateway's limits: {settings.tasks} generations as mapped deferrable tasks or one "
            f"batch operator task, jobs of {settings.job_seconds:g} s (queue {settings.queue_seconds:g} + "
            f"processing {settings.processing_seconds:g}), poll interval {settings.poll_interval:g} s, "
            f"{settings.worker_slots} worker slots, hand-off {settings.handoff_seconds:g} s"
        ),
        columns=[
            "max concurrent jobs",
            "run as",
            "wall s (ideal)",
            "slot utilisation (best possible); target, batch operator: in the worker "
            f">= {IN_WORKER_SHARE_TARGET:.0%} of best, deferrable >= mapped",
            "idle gap per hand-off mean / max s",
            f"target: utilisation >= {UTILISATION_TARGET:.0%} for {PROJECTED_JOB_SECONDS:g} s jobs (projected)",
            "429s submit / poll",
            f"target: worker resumes per paid video, mean (median task / max task); mapped: median <= "
            f"{RESUMES_TARGET}, batch operator: <= {BATCH_RESUMES_TARGET:g}",
            f"target: worker-s held while throttled ~0 (no call >= {HELD_CALL_LIMIT:g} s)",
            "target: no submit sooner than Retry-After (early of followed 429s)",
            f"target: paid submits = {settings.tasks} / failures = 0 / videos = {settings.tasks}",
        ],
    )
    from airflow_provider_ltx2.simulator.process import SimulatorProcess

    runs = [(limit, mode) for limit in settings.limits for mode in MODES]
    with contextlib.ExitStack() as stack:
        # Side by side, each against its own simulator: a batch mostly waits, so they hardly meet on the CPU.
        sims = [sim, *(stack.enter_context(SimulatorProcess(key=KEY)) for _ in runs[1:])]
        with ThreadPoolExecutor(len(sims)) as pool:
            limits, modes = zip(*runs, strict=True)
            start_at = time.time() + START_DELAY_SECONDS
            batch = functools.partial(measure, settings=settings, start_at=start_at)
            results = list(pool.map(batch, sims, limits, modes))
    mapped = {r["limit"]: r for r in results if r["mode"] == MAPPED}
    table.rows += [row(settings, r, mapped.get(r["limit"])) for r in results]
    table.notes += [
        "Harness: one process per limit and way of running models Airflow's deferral: a triggerer (one asyncio "
        "loop in a thread running every deferred trigger's `run()` as a task, all tasks' triggers in one loop, "
        "each trigger rebuilt from `serialize()` through serde + JSON and its classpath), a worker pool of "
        f"{settings.worker_slots} threads running `execute(context)` and, after a trigger event, "
        "`resume_execution` (= `getattr(operator, method_name)(context, event=payload, **kwargs)`) on a fresh "
        f"operator, and a fixed hand-off of {settings.handoff_seconds:g} s from a trigger's event to its worker "
        "call (scheduler + executor; `--handoff-seconds`). A task's context: a fake `ti` (XCom in a dict), a "
        "dict-backed `task_state_store`, no `outlet_events`; no retries. Job time `--batch-queue-seconds` + "
        "`--batch-processing-seconds`, poll interval `--batch-poll-interval`. The rows run side by side, each "
        "against its own simulator, with the same settings; their batches start at the same moment, "
        f"{START_DELAY_SECONDS:g} s after their processes (once all have imported Airflow and the provider).",
        f"Mapped: {settings.tasks} `Ltx2GenerateVideoOperator` tasks (deferrable, no `output_uri`), all queued "
        f"at once. Batch operator: the same {settings.tasks} generations as one `Ltx2GenerateVideoBatchOperator` "
        "task (rows `r00000`..., the same image and prompt), `max_concurrent_jobs` = the gateway's limit, the "
        f"mapped tasks' poll interval ({settings.poll_interval:g} s), `output_prefix` a temporary `file://` "
        "folder (so each row's video is also downloaded and its sidecar written, and the manifest at the end, "
        "which the mapped tasks skip). In the worker (`deferrable=False`) one `execute` call runs the whole "
        "batch: fill the free slots, poll every job in flight, settle the ended ones, fill, rounds a poll "
        "interval apart. Deferrable, it defers to `Ltx2BatchTrigger` (all its jobs in flight polled over one "
        "session; an event when any ends), which resumes `resume_batch` after the hand-off like any trigger.",
        "Wall = first `execute` to the last task's end; ideal = ceil(N / limit) x job time. Slot utilisation = "
        "busy slot-seconds (the simulator's job start/end records: a job holds its slot from submit to end) / "
        "(limit x wall), via `slot_utilisation`; best possible = N / (limit x ceil(N / limit)) (the last round "
        "leaves slots idle). Idle gap per hand-off = time from a job's end until the next job took the freed "
        f"slot (ends matched to later starts in order); projected utilisation = {PROJECTED_JOB_SECONDS:g} / "
        f"({PROJECTED_JOB_SECONDS:g} + mean gap), the steady state for jobs of a minute. Batch operator "
        f"targets: in the worker, utilisation >= {IN_WORKER_SHARE_TARGET:.0%} of the best possible; deferrable, "
        "at least the mapped row's of the same limit in this run and the projection met.",
        "429s = the simulator's `throttled` counters. Worker resumes per paid video = calls of a method after a "
        "trigger event / accepted submits: first over all tasks (the mean), then, for mapped tasks, per task "
        "that got one (the median task's, its target, and the most). Worker-s held while throttled = the wall "
        "time of worker calls that deferred to a trigger other than `Ltx2VideoTrigger` or `Ltx2BatchTrigger` "
        "(waiting for capacity), plus, for any other call, each run of refused submits from the call's start (or "
        "its last accepted submit) until a submit got in (or it ended); in brackets the worker threads' CPU "
        "time in those calls (the rest of their wall time is waiting for the GIL: the "
        f"{settings.worker_slots} slots share one process here, where Airflow gives each task its own), the "
        "longest such call, and the total as a share of the time the tasks waited for room (first 429 -> "
        "accepted submit, summed: what waiting in the worker would hold). Met when no call held its slot "
        f"{HELD_CALL_LIMIT:g} s, the least Retry-After (whole seconds) any wait for room in a worker would take. "
        "Early submits: for every 429 with a Retry-After that the same task followed with "
        "another submit (in the same call or a later one), next submit sent - (429 answered + Retry-After); "
        "below 0 = early. Videos = the tasks that succeeded (mapped) or the rows the batch generated.",
    ]
    for r in results:
        table.notes += limit_notes(settings, r)
    return table


def limit_notes(settings: Settings, r: dict[str, Any]) -> list[str]:
    """Where one row's gaps come from (seeing the end, then the way to the next submit), what the operator's
    default poll interval would make of them, and any failure."""
    notes = []
    name = f"Limit {r['limit']}, {r['mode']}"
    if r["detection"] and len(r["detection"]) == len(r["gaps"]):
        gap, detect = mean(r["gaps"]), mean(r["detection"])
        default_gap = gap - detect + DEFAULT_POLL_INTERVAL / 2
        seen_by = "the poll round that saw it" if r["mode"] == IN_WORKER else "its trigger's event"
        handoff = "" if r["mode"] == IN_WORKER else f", the hand-off of {settings.handoff_seconds:g} s included"
        notes.append(
            f"{name}: in a gap, the freeing job's end -> {seen_by} took {detect:.2f} s on average (max "
            f"{max(r['detection']):.2f}; up to one poll interval), and from there to the next submit "
            f"{gap - detect:.2f} s{handoff}. The gap with that detection replaced by the one of the operator's "
            f"default poll interval ({DEFAULT_POLL_INTERVAL:g} s: about {DEFAULT_POLL_INTERVAL / 2:g} s) projects "
            f"{PROJECTED_JOB_SECONDS / (PROJECTED_JOB_SECONDS + default_gap):.0%} for {PROJECTED_JOB_SECONDS:g} s "
            f"jobs. Worker calls {r['worker_calls']} ({r['worker_seconds']:.1f} worker-s), submit attempts "
            f"{r['attempts']}; the batch's process used {r['cpu']:.0f} s CPU."
        )
    if r["late_start"]:
        notes.append(f"{name}: its batch started {r['late_start']:.1f} s after the others (imports took longer).")
    errors = sorted({task["calls"][-1]["error"] or task["state"] for task in r["failed"] if task["calls"]})
    if errors or r["trigger_errors"]:
        shown = "; ".join(error[:200] for error in [*errors[:3], *r["trigger_errors"][:3]])
        notes.append(f"{name}: {len(r['failed'])} tasks did not succeed: {shown}")
    return notes


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker()
