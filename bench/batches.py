"""Table 5: batches of deferrable generations against a gateway that runs only a few jobs at once.

One worker process per limit (``python -m bench.batches worker``, settings on stdin) runs a batch of
``Ltx2GenerateVideoOperator`` tasks through a one-process model of Airflow's deferral:

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
and answered, the status and the ``Retry-After``, per worker call. The parent configures the simulator's
limit and reads its job start/end records and 429 counters after the batch.
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
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from bench.common import KEY, SUBMIT_PATH, FakeTaskInstance, Table, median, result_channel, run_worker, verdict

PROJECTED_JOB_SECONDS = 60.0
UTILISATION_TARGET = 0.90
RESUMES_TARGET = 3
# "About 0" worker-seconds held while throttled: no call holds its slot as long as the least Retry-After the
# gateway gives (whole seconds, at least 1), which any wait for room in a worker would.
HELD_CALL_LIMIT = 1.0
DEFAULT_POLL_INTERVAL = 10.0  # the operator's default, for the projection note
PROMPT = "waves roll in at sunset, slow dolly forward"


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
    video_trigger: bool = False
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
    """A trigger's first event, as the triggerer saw it."""

    at: float
    trigger: str
    request_id: str | None
    status: str | None


class StateStore:
    """``context["task_state_store"]`` of one task instance: a dict, its values kept as JSON as in the DB."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


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


class Harness:
    """A triggerer (one event loop in a thread) and a worker pool running one batch of deferrable tasks."""

    def __init__(self, settings: Settings, limit: int, base_url: str) -> None:
        self.settings = settings
        self.limit = limit
        self.image_url = f"{base_url}/files/sample.jpg"
        self.tasks = [TaskRecord(f"generate_{i:03d}") for i in range(settings.tasks)]
        self.instances = {
            task.task_id: (FakeTaskInstance(task.task_id, i), StateStore()) for i, task in enumerate(self.tasks)
        }
        self.fired: list[Fired] = []
        self.trigger_errors: list[str] = []
        self.current = threading.local()
        self.lock = threading.Lock()
        self.remaining = settings.tasks
        self.all_done = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.triggerer = threading.Thread(target=self.loop.run_forever, name="triggerer", daemon=True)
        self.pool = ThreadPoolExecutor(settings.worker_slots, thread_name_prefix="worker")
        observe_submits(self.current)

    def operator(self, task_id: str) -> Any:
        from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator

        return Ltx2GenerateVideoOperator(
            task_id=task_id,
            image_url=self.image_url,
            prompt=PROMPT,
            deferrable=True,
            poll_interval=self.settings.poll_interval,
            timeout=self.settings.cap(self.limit),
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

        from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger

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
            call.video_trigger = isinstance(deferred.trigger, Ltx2VideoTrigger)
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
                    payload = event.payload if isinstance(event.payload, dict) else {}
                    self.fired.append(Fired(time.time(), name, payload.get("request_id"), payload.get("status")))
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
    harness = Harness(settings, setup["limit"], setup["base_url"])
    for module in ("airflow_provider_ltx2.operators.ltx2", "airflow_provider_ltx2.triggers.ltx2", "airflow.sdk.serde"):
        importlib.import_module(module)  # imports are not the batch's time
    started = harness.run()
    ended = max((call.end for task in harness.tasks for call in task.calls), default=time.time())
    harness.stop()
    result = {
        "cpu": time.process_time(),
        "started": started,
        "ended": ended,
        "tasks": [asdict(task) for task in harness.tasks],
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


def held_while_throttled(call: dict[str, Any]) -> float:
    """Worker time a call spent on a gateway at capacity: the whole call if it deferred to wait for room,
    else, if a submit of it was refused, the time until its submit got in (or the call ended)."""
    if call["outcome"] == "deferred" and not call["video_trigger"]:
        return float(call["end"] - call["start"])
    if not any(attempt["status"] == 429 for attempt in call["attempts"]):
        return 0.0
    accepted = [a["answered"] for a in call["attempts"] if a["status"] is not None and 200 <= a["status"] < 300]
    return float((accepted[0] if accepted else call["end"]) - call["start"])


def waited_for_room(task: dict[str, Any]) -> float:
    """How long a task waited for room: from its first refused submit to its accepted one (or its end)."""
    attempts = [a for call in task["calls"] for a in call["attempts"]]
    refused = [a["answered"] for a in attempts if a["status"] == 429]
    if not refused:
        return 0.0
    accepted = [a["answered"] for a in attempts if a["status"] is not None and 200 <= a["status"] < 300]
    end = accepted[0] if accepted else max(call["end"] for call in task["calls"])
    return float(end - min(refused))


def retry_after_margins(task: dict[str, Any]) -> list[float]:
    """For each 429 with a Retry-After that the task followed with another submit: next sent - (answer + wait)."""
    attempts = sorted((a for call in task["calls"] for a in call["attempts"]), key=lambda a: a["sent"])
    return [
        later["sent"] - (earlier["answered"] + earlier["retry_after"])
        for earlier, later in itertools.pairwise(attempts)
        if earlier["status"] == 429 and earlier["retry_after"] is not None
    ]


def measure(sim: Any, limit: int, settings: Settings) -> dict[str, Any]:
    """One batch at ``limit`` concurrent jobs; the worker's records joined with the simulator's."""
    from airflow_provider_ltx2.simulator.limits import slot_utilisation

    sim.reset()
    sim.configure(
        max_concurrent_jobs=limit, queue_seconds=settings.queue_seconds, processing_seconds=settings.processing_seconds
    )
    setup = json.dumps({"settings": asdict(settings), "limit": limit, "base_url": sim.base_url}) + "\n"
    print(f"  batch at {limit} concurrent jobs: started", file=sys.stderr, flush=True)
    env = {**os.environ, "AIRFLOW_CONN_LTX2_DEFAULT": sim.connection()}
    batch = run_worker("bench.batches", [], stdin=setup, timeout=settings.cap(limit) + 120, env=env)
    stats = sim.stats()
    sim.reset()
    print(f"  batch at {limit} concurrent jobs: done", file=sys.stderr, flush=True)
    jobs = stats.get("job_times", stats["jobs"])
    if not isinstance(jobs, list):
        raise RuntimeError("the simulator's stats have no job start/end records (job_times)")
    tasks = batch["tasks"]
    wall = batch["ended"] - batch["started"]
    ended = {job["request_id"]: job["ended"] for job in jobs}
    seen = {f["request_id"]: f["at"] for f in batch["fired"] if f["status"] == "succeeded"}
    pairs = handoffs(jobs)
    paid = [
        sum(a["status"] is not None and 200 <= a["status"] < 300 for call in task["calls"] for a in call["attempts"])
        for task in tasks
    ]
    resumes = [sum(call["method"] != "execute" for call in task["calls"]) for task in tasks]
    margins = [margin for task in tasks for margin in retry_after_margins(task)]
    attempts = sum(len(call["attempts"]) for call in calls(tasks))
    if len(jobs) and not attempts:
        raise RuntimeError("no submit attempt was observed: the hook no longer submits through requests.Session")
    return {
        "limit": limit,
        "wall": wall,
        "utilisation": slot_utilisation(jobs, limit, start=batch["started"], end=batch["ended"]) if jobs else 0.0,
        "gaps": [gap for _, gap in pairs],
        # per hand-off: how long the job that freed the slot took to be seen finished by its trigger
        "detection": [seen[freed_by] - ended[freed_by] for freed_by, _ in pairs if freed_by in seen],
        "throttled": stats.get("throttled", {}),
        "paid_jobs": len(jobs),
        "per_paid_job": [r / p for r, p in zip(resumes, paid, strict=True) if p],
        "held": [(held, call["cpu"]) for call in calls(tasks) if (held := held_while_throttled(call))],
        "waited": sum(waited_for_room(task) for task in tasks),
        "cpu": batch["cpu"],
        "worker_seconds": sum(call["end"] - call["start"] for call in calls(tasks)),
        "worker_calls": sum(1 for _ in calls(tasks)),
        "failed": [task for task in tasks if task["state"] != "success"],
        "margins": margins,
        "attempts": attempts,
        "trigger_errors": batch["trigger_errors"],
    }


def row(settings: Settings, r: dict[str, Any]) -> list[str]:
    limit, gaps = r["limit"], r["gaps"]
    gap = sum(gaps) / len(gaps) if gaps else float("nan")
    projected = PROJECTED_JOB_SECONDS / (PROJECTED_JOB_SECONDS + gap) if gaps else float("nan")
    best = settings.tasks / (limit * math.ceil(settings.tasks / limit))
    per_job = r["per_paid_job"]
    resumes = median(per_job)
    held = sum(wall for wall, _ in r["held"])
    held_max = max((wall for wall, _ in r["held"]), default=0.0)
    held_cpu = sum(cpu for _, cpu in r["held"])
    early = [m for m in r["margins"] if m < 0]
    states = {task["state"] for task in r["failed"]}
    failures = f"{len(r['failed'])}" + (f" ({', '.join(sorted(states))})" if r["failed"] else "")
    complete = r["paid_jobs"] == settings.tasks and not r["failed"]
    return [
        str(limit),
        f"{r['wall']:.0f} ({settings.ideal(limit):.0f})",
        f"{r['utilisation']:.0%} ({best:.0%})",
        f"{gap:.1f} / {max(gaps, default=float('nan')):.1f}",
        f"{projected:.0%} {verdict(projected >= UTILISATION_TARGET)}",
        f"{r['throttled'].get('submit', '-')} / {r['throttled'].get('poll', '-')}",
        f"{resumes:g} / {max(per_job, default=float('nan')):g} {verdict(resumes <= RESUMES_TARGET)}"
        if per_job
        else f"- {verdict(False)}",
        f"{held:.1f} (CPU {held_cpu:.2f}; max {held_max:.2f} a call; "
        f"{held / r['waited'] if r['waited'] else 0:.1%} of {r['waited']:,.0f} s waited) "
        f"{verdict(held_max < HELD_CALL_LIMIT)}",
        f"{len(early)} of {len(r['margins'])}"
        + (f" (min margin {min(r['margins']):+.2f} s)" if r["margins"] else "")
        + f" {verdict(not early)}",
        f"{r['paid_jobs']} / {failures} {verdict(complete)}",
    ]


def run(sim: Any, settings: Settings) -> Table:
    table = Table(
        title=(
            f"5. Batches at the gateway's limits: {settings.tasks} deferrable generations, jobs of "
            f"{settings.job_seconds:g} s (queue {settings.queue_seconds:g} + processing "
            f"{settings.processing_seconds:g}), poll interval {settings.poll_interval:g} s, "
            f"{settings.worker_slots} worker slots, hand-off {settings.handoff_seconds:g} s"
        ),
        columns=[
            "max concurrent jobs",
            "wall s (ideal)",
            "slot utilisation (best possible)",
            "idle gap per hand-off mean / max s",
            f"target: utilisation >= {UTILISATION_TARGET:.0%} for {PROJECTED_JOB_SECONDS:g} s jobs (projected)",
            "429s submit / poll",
            f"target: worker resumes per paid job, median <= {RESUMES_TARGET} (/ max)",
            f"target: worker-s held while throttled ~0 (no call >= {HELD_CALL_LIMIT:g} s)",
            "target: no submit sooner than Retry-After (early of followed 429s)",
            f"target: paid submits = {settings.tasks} / failures = 0",
        ],
    )
    from airflow_provider_ltx2.simulator.process import SimulatorProcess

    with contextlib.ExitStack() as stack:
        # Side by side, each against its own simulator: a batch mostly waits, so they hardly meet on the CPU.
        sims = [sim, *(stack.enter_context(SimulatorProcess(key=KEY)) for _ in settings.limits[1:])]
        with ThreadPoolExecutor(len(sims)) as pool:
            results = list(pool.map(functools.partial(measure, settings=settings), sims, settings.limits))
    table.rows += [row(settings, r) for r in results]
    table.notes += [
        "Harness: one process per limit models Airflow's deferral: a triggerer (one asyncio loop in a thread "
        "running every deferred trigger's `run()` as a task, all tasks' triggers in one loop, each trigger "
        "rebuilt from `serialize()` through serde + JSON and its classpath), a worker pool of "
        f"{settings.worker_slots} threads running `execute(context)` and, after a trigger event, "
        "`resume_execution` (= `getattr(operator, method_name)(context, event=payload, **kwargs)`) on a fresh "
        f"operator, and a fixed hand-off of {settings.handoff_seconds:g} s from a trigger's event to its worker "
        "call (scheduler + executor; `--handoff-seconds`). A task's context: a fake `ti` (XCom in a dict), a "
        "dict-backed `task_state_store`, no `outlet_events`; no retries. Job time `--batch-queue-seconds` + "
        "`--batch-processing-seconds`, poll interval `--batch-poll-interval`. The limits run side by side, each "
        "against its own simulator.",
        "Wall = first `execute` to the last task's end; ideal = ceil(N / limit) x job time. Slot utilisation = "
        "busy slot-seconds (the simulator's job start/end records: a job holds its slot from submit to end) / "
        "(limit x wall), via `slot_utilisation`; best possible = N / (limit x ceil(N / limit)) (the last round "
        "leaves slots idle). Idle gap per hand-off = time from a job's end until the next job took the freed "
        f"slot (ends matched to later starts in order); projected utilisation = {PROJECTED_JOB_SECONDS:g} / "
        f"({PROJECTED_JOB_SECONDS:g} + mean gap), the steady state for jobs of a minute.",
        "429s = the simulator's `throttled` counters. Worker resumes per paid job = calls of a method after a "
        "trigger event / accepted submits, per task that got one. Worker-s held while throttled = the wall time "
        "of worker calls that deferred to a trigger other than `Ltx2VideoTrigger` (waiting for room), plus, for "
        "any other call with a refused submit, its time until its submit got in (or it ended); in brackets the "
        "worker threads' CPU time in those calls (the rest of their wall time is waiting for the GIL: the "
        f"{settings.worker_slots} slots share one process here, where Airflow gives each task its own), the "
        "longest such call, and the total as a share of the time the tasks waited for room (first 429 -> "
        "accepted submit, summed: what waiting in the worker would hold). Met when no call held its slot "
        f"{HELD_CALL_LIMIT:g} s, the least Retry-After (whole seconds) any wait for room in a worker would take. "
        "Early submits: for every 429 with a Retry-After that the same task followed with "
        "another submit (in the same call or a later one), next submit sent - (429 answered + Retry-After); "
        "below 0 = early.",
    ]
    for r in results:
        table.notes += limit_notes(settings, r)
    return table


def limit_notes(settings: Settings, r: dict[str, Any]) -> list[str]:
    """Where one limit's gaps come from, what a longer poll interval would make of them, and any failure."""
    notes = []
    if r["detection"] and len(r["detection"]) == len(r["gaps"]):
        gap, detect = sum(r["gaps"]) / len(r["gaps"]), sum(r["detection"]) / len(r["detection"])
        default_gap = gap - detect + DEFAULT_POLL_INTERVAL / 2
        notes.append(
            f"Limit {r['limit']}: in a gap, the freeing job's end -> its trigger's event took {detect:.2f} s on "
            f"average (max {max(r['detection']):.2f}; up to one poll interval), the hand-off "
            f"{settings.handoff_seconds:g} s. The gap with that detection replaced by the one of the operator's "
            f"default poll interval ({DEFAULT_POLL_INTERVAL:g} s: about {DEFAULT_POLL_INTERVAL / 2:g} s) projects "
            f"{PROJECTED_JOB_SECONDS / (PROJECTED_JOB_SECONDS + default_gap):.0%} for {PROJECTED_JOB_SECONDS:g} s "
            f"jobs. Worker calls {r['worker_calls']} ({r['worker_seconds']:.1f} worker-s), submit attempts "
            f"{r['attempts']}; the batch's process used {r['cpu']:.0f} s CPU."
        )
    errors = sorted({task["calls"][-1]["error"] or task["state"] for task in r["failed"] if task["calls"]})
    if errors or r["trigger_errors"]:
        shown = "; ".join(error[:200] for error in [*errors[:3], *r["trigger_errors"][:3]])
        notes.append(f"Limit {r['limit']}: {len(r['failed'])} tasks did not succeed: {shown}")
    return notes


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker()
