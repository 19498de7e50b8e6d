"""Table 1: N pollers in one asyncio loop: the provider's trigger, a providers-http baseline, and a floor.

The floor polls exactly as the trigger does (interval, jittered first poll, request, headers, timeout) with
bare aiohttp: one session over one kept-alive connection pool for the whole loop, no provider code, no
connection lookup. What the trigger spends above it is the provider's own overhead.

Each (client, N) runs in a fresh worker process (``python -m bench.triggers worker KIND INTERVAL``):

1. the worker imports everything and runs one poller to completion on an already finished job (warm-up),
   then says ``ready``;
2. the parent submits the N jobs straight to the simulator (not measured) and sends their ids;
3. the worker records its RSS, starts all N pollers at once in one event loop (as the triggerer runs
   triggers: one task per ``trigger.run()``), and reports CPU time, peak RSS, poll timings and events.

Poll lateness is measured by wrapping the call that polls (``Ltx2Hook.aget_status`` for the trigger, the
other clients' own poll functions): a poll is due ``poll_interval`` after the previous poll of the same job
returned (the trigger sleeps right after it), so lateness = actual start - due time. Small runs are noisy
(one N=100 run put the trigger at x1.36 of the baseline, another at x0.78): they are repeated, interleaved,
and the median run reported.

Two settings: the standard rows (``--sizes``, poll interval 2 s, jobs of 5 s queued + 10 s processing, so each
job needs about eight polls), and the scale rows (``--scale-sizes``, default 10,000 triggers at the provider's
default poll interval of 10 s, jobs of 40 s, so each job needs about five polls). The scale jobs are not
queued: the simulator answers a poll of a queued job by counting the queued jobs ahead of it over all its jobs,
so with 10,000 jobs it serves at most about 900 queued polls a second, below the 1,000 a second being measured
(see ``SCALE_QUEUE_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.common import (
    KEY,
    KEY_HEADER,
    POLL_HEADERS,
    RESULT_PATH,
    Table,
    current_rss,
    median,
    peak_rss,
    percentile,
    raise_fd_limit,
    result_channel,
    submit_jobs,
    submit_one,
    verdict,
    wrap_async_poll,
)

INTERVAL = 2.0
QUEUE_SECONDS = 5.0
PROCESSING_SECONDS = 10.0
JOB_SECONDS = QUEUE_SECONDS + PROCESSING_SECONDS
# The scale rows: the provider's default poll interval, jobs long enough to need about five polls. Not queued:
# the simulator's reply to a queued job's poll scans every job it holds (its queue position), 1.1 ms of its CPU
# per poll with 10,000 jobs against 0.09 ms for a processing job, so it would saturate and time the simulator.
SCALE_INTERVAL = 10.0
SCALE_QUEUE_SECONDS = 0.0
SCALE_PROCESSING_SECONDS = 40.0
GRACE_SECONDS = 45.0  # pollers give up this long after the jobs should have finished
CLIENTS = {"ltx2": "Ltx2VideoTrigger", "http": "HttpAsyncHook baseline", "floor": "floor: bare aiohttp"}
REPEAT_MAX_N, RUNS = 1000, 3  # standard rows up to this size are repeated, interleaved, and the median run reported
SCALE_CLIENTS = ("ltx2", "floor")  # the baseline opens a connection per poll: 10,000 of them are not its use
FLOOR_CONNECTIONS = 100  # as many as the provider's shared pool allows per loop
WARMUP_INTERVAL = 0.5  # the warm-up poller's first-poll jitter, whatever the interval measured


@dataclass(frozen=True)
class Setting:
    """One group of rows: N pollers at one poll interval against jobs of one length, each client ``runs`` times."""

    n: int
    interval: float
    queue_seconds: float
    processing_seconds: float
    clients: tuple[str, ...]
    runs: int = 1

    @property
    def job_seconds(self) -> float:
        return self.queue_seconds + self.processing_seconds

    def describe(self) -> str:
        return (
            f"N={self.n:,}, interval {self.interval:g} s, jobs {self.queue_seconds:g} s queued + "
            f"{self.processing_seconds:g} s processing"
        )


Runner = Callable[[list[str], float, float, "PollLog"], Coroutine[Any, Any, list[tuple[str, float]]]]


class PollLog:
    """Start and end of every poll, per job: gives lateness, response times and the first-poll burst."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.reset(1)

    def reset(self, pollers: int) -> None:
        """Start afresh for ``pollers`` pollers; note the CPU time and poll count once all polled once."""
        self.pollers = pollers
        self.first_round: tuple[float, int] | None = None
        self.t0 = time.monotonic()
        self.last_end: dict[str, float] = {}
        self.lateness: list[float] = []
        self.response: list[float] = []
        self.first_start: list[float] = []
        self.errors = 0
        self.lookups = 0  # connection lookups that reached Airflow (count_lookups), for the trigger

    async def timed(self, key: str, poll: Awaitable[Any]) -> Any:
        start = time.monotonic()
        previous = self.last_end.get(key)
        if previous is None:
            self.first_start.append(start - self.t0)
        else:
            self.lateness.append(start - previous - self.interval)
        try:
            return await poll
        finally:
            end = time.monotonic()
            self.response.append(end - start)
            self.last_end[key] = end
            if previous is None and len(self.last_end) == self.pollers:
                self.first_round = (time.process_time(), len(self.response))


async def run_ltx2(ids: list[str], interval: float, deadline: float, log: PollLog) -> list[tuple[str, float]]:
    """The provider's trigger, N of them, each driven the way the triggerer drives one."""
    from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger

    wrap_async_poll(log.timed)
    count_lookups(log)

    async def drive(trigger: Ltx2VideoTrigger) -> tuple[str, float]:
        status = "no event"
        async for event in trigger.run():
            status = event.payload["status"]
        return status, time.time()

    triggers = [Ltx2VideoTrigger(request_id=rid, deadline=deadline, poll_interval=interval) for rid in ids]
    return list(await asyncio.gather(*(drive(trigger) for trigger in triggers)))


def count_lookups(log: PollLog) -> None:
    """Count the connection lookups that reach Airflow's Task SDK (``Connection.async_get`` looks each one up
    through ``_async_get_connection``), whichever way the hook calls it and whatever it caches in front."""
    from airflow.sdk.execution_time import context

    original = getattr(context._async_get_connection, "bench_original", context._async_get_connection)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        log.lookups += 1
        return await original(*args, **kwargs)

    counted.bench_original = original  # type: ignore[attr-defined]
    context._async_get_connection = counted


async def run_http(ids: list[str], interval: float, deadline: float, log: PollLog) -> list[tuple[str, float]]:
    """What a user writes with apache-airflow-providers-http: HttpAsyncHook, a new session per poll
    (as ``HttpSensorTrigger`` does), the legacy result call with the key header, until a video URL shows.
    """
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    async def poll_once(hook: HttpAsyncHook, request_id: str) -> Any:
        async with aiohttp.ClientSession() as session:
            response = await hook.run(
                session=session, endpoint=RESULT_PATH, json={"request_id": request_id}, headers={KEY_HEADER: KEY}
            )
            return await response.json()

    async def poller(request_id: str) -> tuple[str, float]:
        hook = HttpAsyncHook(method="POST", http_conn_id="http_default")
        while time.time() < deadline:
            try:
                body = await log.timed(request_id, poll_once(hook, request_id))
            except Exception:
                log.errors += 1
                body = None
            if isinstance(body, dict) and (body.get("video") or {}).get("url"):
                return "succeeded", time.time()
            await asyncio.sleep(interval)
        return "timeout", time.time()

    return list(await asyncio.gather(*(poller(rid) for rid in ids)))


async def run_floor(
    base_url: str, ids: list[str], interval: float, deadline: float, log: PollLog
) -> list[tuple[str, float]]:
    """The trigger's way of polling with nothing but aiohttp: the least CPU a poll can cost in this loop."""
    import aiohttp

    url = base_url + RESULT_PATH
    timeout = aiohttp.ClientTimeout(sock_connect=10, total=60)  # the trigger's connect and read timeouts

    async def poll_once(session: aiohttp.ClientSession, request_id: str) -> Any:
        async with session.post(url, json={"request_id": request_id}, headers=POLL_HEADERS, timeout=timeout) as reply:
            return json.loads(await reply.text())

    async def poller(session: aiohttp.ClientSession, request_id: str) -> tuple[str, float]:
        await asyncio.sleep(random.uniform(0, interval))  # the trigger's spread of first polls
        while time.time() < deadline:
            try:
                body = await log.timed(request_id, poll_once(session, request_id))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                log.errors += 1
                body = None
            if isinstance(body, dict) and (body.get("video") or body.get("status") == "FAILED"):
                return ("succeeded" if body.get("video") else "failed"), time.time()
            await asyncio.sleep(interval)
        return "timeout", time.time()

    connector = aiohttp.TCPConnector(limit=FLOOR_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        return list(await asyncio.gather(*(poller(session, rid) for rid in ids)))


RUNNERS: dict[str, Runner] = {"ltx2": run_ltx2, "http": run_http}


def runner(kind: str, base_url: str) -> Runner:
    """The pollers of ``kind``; the floor is given the gateway's URL instead of looking up a connection."""
    return functools.partial(run_floor, base_url) if kind == "floor" else RUNNERS[kind]


@contextlib.asynccontextmanager
async def polling(hook: Any, gateway: Any) -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
    """A poll function on a connected hook, with whichever async API the hook has.

    A hook that holds its session and gateway is entered with ``aconnect()``; the older hook is given a
    new session and ``gateway``, looked up once beforehand.
    """
    if hasattr(hook, "aconnect"):
        async with hook.aconnect():
            yield hook.aget_status
    else:
        async with hook.async_session() as session:
            yield functools.partial(hook.aget_status, session, gateway)


async def lookup_cost(conn_id: str, rounds: int) -> dict[str, float]:
    """CPU of one connection lookup as a trigger start makes it: the first in this process, then on average."""
    from airflow.providers.common.compat.connection import get_async_connection

    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

    async def lookup(hook: Ltx2Hook) -> Any:
        if hasattr(hook, "agateway"):
            return await hook.agateway()
        return await get_async_connection(conn_id, hook=hook)

    cpu = time.process_time()
    await lookup(Ltx2Hook(ltx2_conn_id=conn_id))
    first = time.process_time() - cpu
    hooks = [Ltx2Hook(ltx2_conn_id=conn_id) for _ in range(rounds)]  # one per trigger start, as in a triggerer
    cpu = time.process_time()
    for hook in hooks:
        await lookup(hook)
    return {"lookup_first": first, "lookup": (time.process_time() - cpu) / rounds}


async def setup_parts(request_id: str, rounds: int = 100) -> dict[str, float]:
    """What a trigger's start and polls cost, one call at a time so the process CPU time is theirs alone."""
    from airflow_provider_ltx2.api.jobs import Job
    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

    job = Job(request_id)
    parts = await lookup_cost(Ltx2Hook.default_conn_name, rounds)
    gateway = await Ltx2Hook().agateway() if hasattr(Ltx2Hook, "agateway") else None
    async with contextlib.AsyncExitStack() as others:
        # As in a triggerer, other triggers of the loop keep the shared connection pool open.
        poll = await others.enter_async_context(polling(Ltx2Hook(), gateway))
        await poll(job)
        cpu = time.process_time()
        for _ in range(rounds):
            async with polling(Ltx2Hook(), gateway) as fresh_poll:
                await fresh_poll(job)
        fresh = (time.process_time() - cpu) / rounds
        cpu = time.process_time()
        for _ in range(rounds):
            await poll(job)
        kept = (time.process_time() - cpu) / rounds
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(rounds):
            await (await others.enter_async_context(polling(Ltx2Hook(), gateway)))(job)
        gc.collect()
        held = (len(gc.get_objects()) - before) / rounds
    return {**parts, "fresh": fresh, "kept": kept, "objects": held, "aconnect": hasattr(Ltx2Hook, "aconnect")}


class GcPauses:
    """Time the interpreter spends in garbage collection (it stops the event loop meanwhile)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.full_collections = 0
        self.started = 0.0
        gc.callbacks.append(self.callback)

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self.started)
            self.full_collections += info["generation"] == 2


def worker(kind: str, interval: float, job_seconds: float) -> None:
    out = result_channel()
    raise_fd_limit()
    if kind == "floor":
        # A triggerer has Airflow loaded whatever its triggers are: the floor runs on the same heap.
        import airflow.triggers.base  # noqa: F401
    log = PollLog(interval)
    setup = json.loads(sys.stdin.readline())
    run = runner(kind, setup["base_url"])
    asyncio.run(run([setup["warmup_id"]], min(interval, WARMUP_INTERVAL), time.time() + 30, log))
    print("ready", file=out, flush=True)

    ids = json.loads(sys.stdin.readline())
    gc.collect()
    tracked = len(gc.get_objects())
    rss_before = current_rss()
    log.reset(len(ids))
    gc_log = GcPauses()
    cpu0, t0 = time.process_time(), time.time()
    results = asyncio.run(run(ids, interval, t0 + job_seconds + GRACE_SECONDS, log))
    cpu_end = time.process_time()
    first_cpu, first_polls = log.first_round or (cpu_end, len(log.response))
    later_polls = len(log.response) - first_polls
    summary: dict[str, Any] = {
        "tracked_objects": tracked,
        "cpu_s": cpu_end - cpu0,
        "cpu_first": (first_cpu - cpu0) / len(ids),
        "cpu_later": (cpu_end - first_cpu) / later_polls if later_polls else None,
        "rss_before": rss_before,
        "rss_peak": peak_rss(),
        "t0": t0,
        "statuses": [status for status, _ in results],
        "event_times": [when for _, when in results],
        "client_polls": len(log.response),
        "errors": log.errors,
        "lookups": log.lookups,
        "lateness": [percentile(log.lateness, q) for q in (50, 99, 100)],
        "response": [percentile(log.response, q) for q in (50, 99)],
        "first_poll_by": max(log.first_start, default=float("nan")),
        "gc": [sum(gc_log.pauses), max(gc_log.pauses, default=0.0), gc_log.full_collections],
    }
    print(json.dumps(summary), file=out, flush=True)
    sys.stdin.readline()  # the parent has read the simulator's counters: the extra polls below are not counted
    parts = asyncio.run(setup_parts(setup["warmup_id"])) if kind == "ltx2" else {}
    print(json.dumps(parts), file=out, flush=True)


# --------------------------------------------------------------------------------------------------------
# The parent side


def measure(sim: Any, kind: str, setting: Setting) -> dict[str, Any]:
    """One (client, setting) run in a fresh worker; returns the worker's figures plus the simulator's."""
    import psutil

    n, interval = setting.n, setting.interval
    sim.reset()
    sim.configure(queue_seconds=0, processing_seconds=0)
    warmup_id = submit_one(sim.base_url)
    sim.configure(queue_seconds=setting.queue_seconds, processing_seconds=setting.processing_seconds)
    env = {
        **os.environ,
        "AIRFLOW_CONN_LTX2_DEFAULT": sim.connection(),
        "AIRFLOW_CONN_HTTP_DEFAULT": json.dumps({"conn_type": "http", "host": sim.base_url}),
    }
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.triggers", "worker", kind, str(interval), str(setting.job_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"warmup_id": warmup_id, "base_url": sim.base_url}) + "\n")
        process.stdin.flush()
        if process.stdout.readline().strip() != "ready":
            process.kill()
            stderr.seek(0)
            raise RuntimeError(f"trigger worker did not start: {stderr.read()[-3000:]}")
        jobs = asyncio.run(submit_jobs(sim.base_url, n))
        simulator = psutil.Process(sim.process.pid)
        polls0, sim_cpu0, wall0 = sim.stats()["polls"], sum(simulator.cpu_times()[:2]), time.time()
        busy0, overflows0 = busy_cpu_seconds(), listen_overflows()
        process.stdin.write(json.dumps([rid for rid, _ in jobs]) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        sim_cpu, wall = sum(simulator.cpu_times()[:2]) - sim_cpu0, time.time() - wall0
        busy, overflows = busy_cpu_seconds() - busy0, listen_overflows() - overflows0
        polls = sim.stats()["polls"] - polls0
        process.stdin.close()
        parts = process.stdout.readline()
        process.wait(30)
        if not line or not parts:
            stderr.seek(0)
            raise RuntimeError(f"trigger worker failed: {stderr.read()[-3000:]}")
    result = json.loads(line)
    result["parts"] = json.loads(parts)
    finished = [submitted + setting.job_seconds for _, submitted in jobs]
    lags = [event - done for event, done in zip(result["event_times"], finished, strict=True)]
    result.update(
        n=n,
        kind=kind,
        polls=polls,
        sim_cpu_share=sim_cpu / wall,
        listen_overflows=overflows,
        others_cpu_share=max(0.0, busy - sim_cpu - result["cpu_s"]) / wall,
        interval=interval,
        lag=[percentile(lags, 50), max(lags)],
        last_event=max(result["event_times"]) - result["t0"],
        last_job_done=max(finished) - result["t0"],
        succeeded=result["statuses"].count("succeeded"),
    )
    return result


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all processes, all cores)."""
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def listen_overflows() -> int:
    """Connections the kernel refused because a listening socket's accept queue was full (all sockets)."""
    with open("/proc/net/netstat") as netstat:
        lines = [line.split() for line in netstat if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True)).get("ListenOverflows", 0))


Results = dict[tuple[str, Setting], list[dict[str, Any]]]


def cpu_per_poll(r: dict[str, Any]) -> float:
    return float(r["cpu_s"]) / max(r["polls"], 1)


def rss_per_trigger(r: dict[str, Any]) -> float:
    return float(r["rss_peak"] - r["rss_before"]) / r["n"]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose CPU per poll is the median (the lower middle one for an even count)."""
    return sorted(runs, key=cpu_per_poll)[(len(runs) - 1) // 2]


def row(runs: list[dict[str, Any]], setting: Setting, floor_cpu: float | None) -> list[str]:
    r = median_run(runs)
    ms = ["-" if math.isnan(x) else f"{1000 * x:.0f}" for x in (*r["lateness"], *r["gc"][:2], *r["response"])]
    later = "-" if r["cpu_later"] is None else f"{1000 * r['cpu_later']:.2f}"
    others = {status: r["statuses"].count(status) for status in set(r["statuses"]) - {"succeeded"}}
    spread = [1000 * cpu_per_poll(run) for run in runs]
    cpu = f"{1000 * cpu_per_poll(r):.2f}" + (f" ({min(spread):.2f}-{max(spread):.2f})" if len(runs) > 1 else "")
    return [
        str(r["n"]) + (f" (median of {len(runs)})" if len(runs) > 1 else ""),
        f"{setting.interval:g} ({setting.queue_seconds:g} + {setting.processing_seconds:g})",
        CLIENTS[r["kind"]],
        f"{r['succeeded']}/{r['n']}" + "".join(f" ({count} {status})" for status, count in others.items()),
        cpu,
        "-" if floor_cpu is None else f"x{cpu_per_poll(r) / floor_cpu:.2f}",
        f"{1000 * r['cpu_first']:.2f} / {later}",
        f"{rss_per_trigger(r) / 1024:.1f}",
        f"{ms[0]} / {ms[1]} / {ms[2]}",
        f"{ms[3]} / {ms[4]} ({r['gc'][2]})",
        f"{ms[5]} / {ms[6]}",
        f"{r['first_poll_by']:.2f}",
        f"{r['last_event']:.1f} ({r['last_job_done']:.1f})",
        f"{r['lag'][0]:.2f} / {r['lag'][1]:.2f}",
        f"{r['polls'] / r['n']:.1f}",
        str(r["listen_overflows"]),
        f"{100 * r['sim_cpu_share']:.0f}%",
        f"{100 * r['others_cpu_share']:.0f}%",
    ]


def settings(
    sizes: list[int],
    scale_sizes: list[int],
    clients: tuple[str, ...] = tuple(CLIENTS),
    scale_clients: tuple[str, ...] = SCALE_CLIENTS,
    runs: int = RUNS,
) -> list[Setting]:
    """The standard rows (repeated up to ``REPEAT_MAX_N``), then the scale rows (one run each)."""
    standard = [
        Setting(n, INTERVAL, QUEUE_SECONDS, PROCESSING_SECONDS, clients, runs if n <= REPEAT_MAX_N else 1)
        for n in sizes
    ]
    scale = [
        Setting(n, SCALE_INTERVAL, SCALE_QUEUE_SECONDS, SCALE_PROCESSING_SECONDS, scale_clients) for n in scale_sizes
    ]
    return [setting for setting in (*standard, *scale) if setting.clients]


def run(sim: Any, chosen: list[Setting]) -> Table:
    started = time.monotonic()
    table = Table(
        title=(
            "1. Pollers at scale: one asyncio loop, one process; poll interval s (job s queued + processing) per row"
        ),
        columns=[
            "N",
            "interval s (job s)",
            "client",
            "succeeded",
            "CPU ms/poll",
            "CPU/poll vs floor",
            "CPU ms: set-up + 1st poll / later poll",
            "peak RSS/trigger KB",
            "lateness p50/p99/max ms",
            "GC pauses total/max ms (full)",
            "response p50/p99 ms",
            "all first polls by s",
            "last event s (jobs done)",
            "done->event p50/max s",
            "requests/job",
            "refused connects",
            "simulator CPU",
            "other processes CPU",
        ],
    )
    results: Results = {}
    for setting in chosen:
        for repeat in range(setting.runs):  # interleaved: load elsewhere hits every client alike
            for kind in setting.clients:
                results.setdefault((kind, setting), []).append(measure(sim, kind, setting))
                print(f"  {CLIENTS[kind]}, {setting.describe()} (run {repeat + 1}): done", file=sys.stderr, flush=True)
        floor_cpu = middle(results, "floor", setting, cpu_per_poll) if "floor" in setting.clients else None
        table.rows += [row(results[kind, setting], setting, floor_cpu) for kind in setting.clients]
    ideals = sorted({(s.interval, s.job_seconds, math.ceil(s.job_seconds / s.interval) + 1) for s in chosen})
    table.notes.append(
        "CPU ms/poll = the pollers' process CPU time / polls counted by the simulator (so it includes each "
        "poller's set-up: connection lookup, session); CPU/poll vs floor = that / the floor's at the same N and "
        "interval (a ratio of medians where repeated); "
        "peak RSS/trigger = (peak RSS - RSS before creating the "
        "pollers) / N; CPU set-up + 1st poll = CPU time until every poller had polled once / N, later poll = the "
        "CPU time after that / the polls after that; lateness = poll start - (previous poll's end + interval), '-' "
        "when no poller polled twice; GC pauses = time the pollers' process spent in garbage collection (the loop "
        "stands still meanwhile), with the number of full collections; response = one poll call's "
        "duration; 'last event' and 'jobs done' in seconds after the pollers started; done->event = event time - "
        "(submit reply + job s); ideal requests/job about "
        + ", ".join(f"{ideal} at {interval:g} s ({job:g} s jobs)" for interval, job, ideal in ideals)
        + "; refused connects = the kernel's "
        "ListenOverflows counter over the run (connects dropped because the simulator's accept queue was full; "
        "the client retries after 1, 2, 4... s); "
        "simulator CPU = its CPU time / the run's wall time (100% = one core, saturated); other processes CPU = "
        "the rest of the machine's busy time over the run (this machine is shared; 200% = both cores)."
    )
    repeated = [s for s in chosen if s.runs > 1]
    if repeated:
        runs = repeated[0].runs
        table.notes.append(
            f"Medians: at interval {INTERVAL:g} s and N <= {REPEAT_MAX_N} every client ran {runs} times, "
            "interleaved (each client once, then each again); its row is its median run by CPU ms/poll (every "
            f"figure of the row from that one run; the {runs} runs' CPU ms/poll range in brackets), and its ratios "
            f"are of medians of {runs} (CPU per poll, RSS per trigger). Other rows: one run each."
        )
    if any(s.interval == SCALE_INTERVAL for s in chosen):
        table.notes.append(
            f"Rows at {SCALE_INTERVAL:g} s (the provider's default poll interval): jobs are not queued "
            f"({SCALE_QUEUE_SECONDS:g} s), only processing, because the simulator answers a queued job's poll by "
            "counting the queued jobs ahead of it over all the jobs it holds: with 10,000 jobs that costs it 1.1 ms "
            "of CPU per poll (at most about 900 polls/s on one core, below the 1,000/s of 10,000 pollers at 10 s) "
            "against 0.09 ms for a processing job; queued polls would time the simulator, not the pollers."
        )
    table.notes.append(
        "The floor polls as the trigger does (same interval, first poll jittered over one interval, the same "
        "legacy result POST with the same headers and timeouts) with bare aiohttp: one session over one "
        f"kept-alive `TCPConnector(limit={FLOOR_CONNECTIONS})` for all pollers of the loop, no provider code, no "
        "connection lookup. Its process imports `airflow.triggers.base` first, as a triggerer has Airflow "
        "loaded: GC-tracked objects before the pollers start: "
        + ", ".join(
            f"{CLIENTS[kind]} {found[0]['tracked_objects']:,}"
            for kind in CLIENTS
            if (found := first_runs(results, kind))
        )
        + " (every full collection walks all of them)."
    )
    if first_runs(results, "ltx2"):
        table.notes.append(parts_note(results))
    table.notes += targets(results, chosen)
    table.notes.append(f"Table 1 took {time.monotonic() - started:.0f} s.")
    return table


def first_runs(results: Results, kind: str) -> list[dict[str, Any]]:
    """The runs of ``kind`` in the first setting that has it (the most repeated one comes first)."""
    return next((runs for (k, _), runs in results.items() if k == kind), [])


def middle(results: Results, kind: str, setting: Setting, metric: Callable[[dict[str, Any]], float]) -> float:
    return median([metric(r) for r in results[kind, setting]])


def parts_note(results: Results) -> str:
    """The trigger's set-up and poll costs one call at a time, above all the connection lookup."""
    runs = first_runs(results, "ltx2")
    n = runs[0]["n"]
    parts = {key: 1000 * median([r["parts"][key] for r in runs]) for key in ("lookup", "fresh", "kept")}
    first = 1000 * median([r["parts"]["lookup_first"] for r in runs])
    per_job = 1000 * median([r["cpu_s"] / r["n"] for r in runs])
    session = (
        "`hook.aconnect()` (it looks the connection up too) + " if runs[0]["parts"]["aconnect"] else "new session + "
    )
    return (
        f"The trigger's parts, timed one call at a time after each N={n} run (CPU ms per call, median of "
        f"{len(runs)}): connection lookup per trigger start (`Ltx2Hook.agateway()`, i.e. `get_async_connection` + "
        f"reading the connection) **{parts['lookup']:.2f}** (the first in a process {first:.2f}), that is "
        f"{parts['lookup'] / per_job:.0%} of the trigger's whole CPU per job at N={n} ({per_job:.1f} ms) and "
        f"x{parts['lookup'] / parts['kept']:.1f} one kept-alive poll; {session}connect + one poll + close "
        f"{parts['fresh']:.2f}; "
        f"one poll on a kept-alive connection {parts['kept']:.2f}. An open session with its connection holds "
        f"{median([r['parts']['objects'] for r in runs]):.0f} GC-tracked objects. The connection comes from an "
        "environment variable here; in a triggerer the lookup also makes a round trip to its supervisor and a "
        "DB or secrets-backend query (their time is not in these figures). Lookups made during the runs, the "
        "triggers all starting together: "
        + "; ".join(
            f"N={k[1].n:,}: {median([r.get('lookups', -1) for r in found]):,.0f} for {k[1].n:,} triggers"
            for k, found in results.items()
            if k[0] == "ltx2"
        )
        + " (a lookup cached for the loop spares only the triggers that start after the first one has finished; "
        "a count of 0 would mean the lookups went by another path than the Task SDK's)."
    )


def ratio(results: Results, setting: Setting, metric: Callable[[dict[str, Any]], float], over: str) -> float:
    return middle(results, "ltx2", setting, metric) / middle(results, over, setting, metric)


def accept_backlog() -> str:
    """The simulator's listen backlog as the kernel applies it (capped by somaxconn)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as somaxconn:
            return f"{min(4096, int(somaxconn.read()))} (asked 4096, somaxconn caps it)"
    except (OSError, ValueError):
        return "4096 asked, capped by the kernel's somaxconn"


def targets(results: Results, chosen: list[Setting]) -> list[str]:
    notes = []
    with_ltx2 = [s for s in chosen if "ltx2" in s.clients]
    for setting in with_ltx2:
        figures = [
            f"trigger / {name}: CPU per poll x{ratio(results, setting, cpu_per_poll, kind):.2f}, RSS per trigger "
            f"x{ratio(results, setting, rss_per_trigger, kind):.2f}"
            for kind, name in (("http", "baseline"), ("floor", "floor"))
            if kind in setting.clients
        ]
        if figures:
            notes.append(f"{setting.describe()}: " + "; ".join(figures) + ".")
    for setting in with_ltx2:
        if setting.n == 1000 and setting.interval == INTERVAL and "floor" in setting.clients:
            worst = ratio(results, setting, cpu_per_poll, "floor")
            notes.append(
                f"Target CPU per poll <= x1.2 the floor's at N=1000 (medians of {setting.runs}, same run): "
                f"{verdict(worst <= 1.2)} (x{worst:.2f})."
            )
            p99 = median_run(results["ltx2", setting])["lateness"][1]
            notes.append(f"Target 1000 triggers, p99 lateness < 1 s: {verdict(p99 < 1)} (p99 {1000 * p99:.0f} ms).")
        if setting.n >= 10000 and setting.interval == SCALE_INTERVAL:
            r = median_run(results["ltx2", setting])
            p99, refused = r["lateness"][1], r["listen_overflows"]
            ok = p99 < 1 and refused == 0 and r["succeeded"] == setting.n
            notes.append(
                f"Target {setting.n:,} triggers at {setting.interval:g} s in one process, p99 lateness < 1 s, no "
                f"refused connects: {verdict(ok)} (p99 {1000 * p99:.0f} ms, {refused} refused, "
                f"{r['succeeded']:,}/{setting.n:,} succeeded)."
            )
    with_http = [s for s in with_ltx2 if "http" in s.clients]
    if with_http:
        worst_cpu = max(ratio(results, s, cpu_per_poll, "http") for s in with_http)
        notes.append(
            f"Target CPU per poll <= 1/2 of the baseline's: {verdict(worst_cpu <= 0.5)} (worst ratio x{worst_cpu:.2f})."
        )
    if with_ltx2:
        worst_rss = max(middle(results, "ltx2", s, rss_per_trigger) for s in with_ltx2) / 1024
        notes.append(f"Target RSS per trigger < 50 KB: {verdict(worst_rss < 50)} (worst {worst_rss:.1f} KB).")
    biggest = max(chosen, key=lambda s: (s.n / s.interval, s.n))  # the most polls a second
    runs = [median_run(results[kind, biggest]) for kind in biggest.clients]
    served = all(r["succeeded"] == biggest.n for r in runs) and all(r["sim_cpu_share"] < 0.9 for r in runs)
    notes.append(
        f"Simulator serving {biggest.n:,} pollers at {biggest.interval:g} s: {verdict(served)} ("
        + "; ".join(
            f"{CLIENTS[r['kind']]}: {r['succeeded']:,}/{biggest.n:,} succeeded, simulator CPU "
            f"{100 * r['sim_cpu_share']:.0f}% of a core, {r['listen_overflows']} connects refused"
            for r in runs
        )
        + f"). Refused connects would come from the simulator's accept queue (listen backlog {accept_backlog()}) "
        "overflowing when thousands of pollers connect at once; the pollers here share a pool of at most "
        f"{FLOOR_CONNECTIONS} kept-alive connections per loop (the baseline opens one per poll)."
    )
    return notes


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
