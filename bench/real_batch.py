"""Table 7: a batch operator task in a real Airflow task (``airflow dags test``), and where its time goes per row.

Table 6 runs the batch operator in a bare process with a dict for the task state store. Here the same
operator runs as a task of a DAG under ``airflow dags test``: a temporary ``AIRFLOW_HOME`` migrated on
SQLite, the DAG file in its dags folder, the connection through ``AIRFLOW_CONN_LTX2_DEFAULT``. The task
state store is then Airflow's own: every ``set`` is a message to the supervisor, which calls the execution
API (in-process under ``dags test``: an ASGI app on a thread of its own, a SQLite write per call).

Each limit (``max_concurrent_jobs``) runs plainly against a simulator whose jobs end at once, for rows/s and
ms per row, with timers around the calls that matter (the task state store's writes, the submits, the
polls, the deliveries...) on the task's thread, and the CPU of each of the process's threads. One limit
also runs under ``cProfile`` for the finer detail: a profiler around the operator's ``execute`` on the
task's thread, and one per thread started after the DAG file was parsed (the execution API's event loop and
its worker threads, the download threads), so that a write of the task state store is seen from both ends:
what the task waits for, and what the API server does meanwhile.

``python -m bench --only real-batch`` (not part of the default run, nor of ``--only batches``).
"""

from __future__ import annotations

import cProfile
import functools
import json
import math
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.batches import batch_rows
from bench.common import KEY, Table, verdict

DAG_ID = "ltx2_bench_real_batch"
TASK_ID = "generate_batch"
SETUP_ENV = "LTX2_BENCH_REAL_BATCH"  # the run's settings, as JSON, for the DAG file
ROOT = Path(__file__).resolve().parent.parent
DAG_FILE = f'''"""A batch operator task for bench.real_batch (an Airflow DAG, settings from ${SETUP_ENV})."""

from bench.real_batch import build_dag

dag = build_dag()
'''


@dataclass(frozen=True)
class RealBatchSettings:
    """The batch: its rows, the limits to run (``max_concurrent_jobs``; the simulator's is the largest), the
    poll interval, the limits also run under cProfile, and how long a run may take (flags)."""

    rows: int = 1_100
    limits: tuple[int, ...] = (8, 50)
    poll_interval: float = 0.05
    profile_limits: tuple[int, ...] = (50,)  # the limits also run under cProfile
    cap_seconds: float = 240.0
    profile_dir: str | None = None  # where to keep the runs' .prof files (for pstats or snakeviz)


# --------------------------------------------------------------------------------------------------------
# The task side: imported by the DAG file in the `airflow dags test` process

_THREAD_PROFILES: list[tuple[str, cProfile.Profile]] = []


def _profile_new_thread(frame: Any, event: str, arg: Any) -> None:
    """``threading.setprofile`` hook: the first event of a new thread gives it a profiler of its own."""
    profiler = cProfile.Profile()
    _THREAD_PROFILES.append((threading.current_thread().name, profiler))
    profiler.enable()  # replaces this hook in this thread


def build_dag() -> Any:
    """The DAG of one run: one batch operator task, its settings from the environment."""
    from airflow.sdk import DAG

    setup = json.loads(os.environ[SETUP_ENV])
    if setup["profile"]:
        threading.setprofile(_profile_new_thread)  # the execution API's threads start after the parse
    with DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        measured_operator()(
            task_id=TASK_ID,
            requests=batch_rows(setup["rows"], f"{setup['base_url']}/files/sample.jpg"),
            output_prefix=f"file://{setup['folder']}",
            max_concurrent_jobs=setup["limit"],
            poll_interval=setup["poll_interval"],
            deferrable=False,
            timeout=setup["cap_seconds"],
        )
    return dag


# What the plain runs time, on the task's thread only: (label, module, attribute). A call is counted under its
# label, and also under the label of the nearest timed call around it (``save_progress <- fill``). An attribute
# that is missing (the code changed) is left out; the table says so by its absence.
TIMED = (
    ("in_worker", "airflow_provider_ltx2.batches.run", "BatchRun.in_worker"),
    ("fill", "airflow_provider_ltx2.batches.run", "BatchRun.fill"),
    ("settle", "airflow_provider_ltx2.batches.run", "BatchRun.settle"),
    ("poll_due", "airflow_provider_ltx2.batches.run", "BatchRun.poll_due"),
    ("report", "airflow_provider_ltx2.batches.run", "BatchRun.report"),
    ("finish", "airflow_provider_ltx2.batches.run", "BatchRun.finish"),
    ("survey", "airflow_provider_ltx2.batches.run", "survey"),
    ("planned", "airflow_provider_ltx2.batches.run", "BatchRun._planned"),
    ("store", "airflow_provider_ltx2.batches.run", "store"),
    ("save_progress", "airflow_provider_ltx2.batches.progress", "BatchRecord.save_progress"),
    ("to_dict", "airflow_provider_ltx2.batches.progress", "BatchProgress.to_dict"),
    ("sdk_set", "airflow.sdk.execution_time.context", "TaskStateStoreAccessor.set"),
    ("sdk_delete", "airflow.sdk.execution_time.context", "TaskStateStoreAccessor.delete"),
    ("sdk_get", "airflow.sdk.execution_time.context", "TaskStateStoreAccessor.get"),
    ("supervisor", "airflow.sdk.execution_time.supervisor", "InProcessSupervisorComms.send"),
    ("submit", "airflow_provider_ltx2.lifecycle", "Generation.submit"),
    ("http_submit", "airflow_provider_ltx2.hooks.ltx2", "Ltx2Hook.submit"),
    ("http_poll", "airflow_provider_ltx2.hooks.ltx2", "Ltx2Hook.get_status"),
    ("save_video", "airflow_provider_ltx2.delivery", "save_video"),
    ("write_sidecar", "airflow_provider_ltx2.storage", "write_sidecar"),
    ("path", "airflow_provider_ltx2.storage", "_path"),
    ("metrics", "airflow_provider_ltx2.metrics", "count"),
    ("metrics", "airflow_provider_ltx2.metrics", "seconds"),
    ("log", "structlog._base", "BoundLoggerBase._proxy_to_logger"),
    ("sleep", "time", "sleep"),
)


def thread_cpu() -> dict[str, float]:
    """CPU seconds each live thread of this process has used, by thread name (from /proc, all threads)."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        name = names.get(int(task.name), "unnamed")
        used[f"{name}#{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
    return used


THREAD_GROUPS = (
    "the task's thread (main)",
    "the execution API's event loop (a2wsgi)",
    "threads that ended during the batch (the downloads' readers, the execution API's worker threads)",
    "other threads",
)


def thread_group(name: str) -> str:
    """The kind of a thread, from its name: the task's, the execution API's loop, its worker threads..."""
    name = name.split("#", 1)[0]
    if name == "MainThread":
        return "the task's thread (main)"
    if name.startswith("InProcessExecutionAPI"):
        return "the execution API's event loop (a2wsgi)"
    return "other threads"


class Timers:
    """Wall time and calls per label, of the calls made on one thread (the task's) while installed."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.stack: list[str] = []
        self.figures: dict[str, list[float]] = {}  # label or "label <- enclosing" -> [seconds, calls]
        self.undo: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        import importlib

        for label, module_name, path in TIMED:
            try:
                owner: Any = importlib.import_module(module_name)
                *parents, name = path.split(".")
                for parent in parents:
                    owner = getattr(owner, parent)
                original = owner.__dict__[name] if name in vars(owner) else getattr(owner, name)
            except (ImportError, AttributeError, KeyError):
                continue
            self.undo.append((owner, name, original))
            setattr(owner, name, self.timed(label, original))

    def remove(self) -> None:
        for owner, name, original in reversed(self.undo):
            setattr(owner, name, original)

    def timed(self, label: str, function: Any) -> Any:
        timers = self

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != timers.thread or label in timers.stack:  # not the task's, or nested
                return function(*args, **kwargs)
            around = timers.stack[-1] if timers.stack else None
            timers.stack.append(label)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                timers.stack.pop()
                for key in (label, f"{label} <- {around}"):
                    entry = timers.figures.setdefault(key, [0.0, 0])
                    entry[0] += took
                    entry[1] += 1

        return call


@functools.cache
def measured_operator() -> type:
    from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator

    class Measured(Ltx2GenerateVideoBatchOperator):
        """The batch operator, its ``execute`` timed (and profiled) and the figures written to a file."""

        def execute(self, context: Any) -> dict[str, Any]:
            setup = json.loads(os.environ[SETUP_ENV])
            out = Path(setup["out"])
            profiler = cProfile.Profile() if setup["profile"] else None
            timers = None if setup["profile"] else Timers()
            outcome: dict[str, Any] = {"returned": None, "error": None}
            before = thread_cpu()
            started, cpu = time.time(), time.process_time()
            try:
                if profiler is not None:
                    profiler.enable()
                if timers is not None:
                    timers.install()
                outcome["returned"] = super().execute(context)
                return outcome["returned"]
            except BaseException as error:
                outcome["error"] = f"{type(error).__name__}: {error}"[:500]
                raise
            finally:
                if profiler is not None:
                    profiler.disable()
                if timers is not None:
                    timers.remove()
                    outcome["timers"] = timers.figures
                outcome.update(wall=time.time() - started, cpu=time.process_time() - cpu)
                after = thread_cpu()
                groups: dict[str, float] = {}
                for name, seconds in after.items():
                    group = thread_group(name)
                    groups[group] = groups.get(group, 0.0) + seconds - before.get(name, 0.0)
                # Threads that ended during the batch (a download's reader each, the API's route workers) are in the
                # process's total only
                groups[THREAD_GROUPS[2]] = outcome["cpu"] - sum(groups.values())
                outcome["thread_cpu"] = groups
                outcome["threads"] = {name: seconds - before.get(name, 0.0) for name, seconds in after.items()}
                if profiler is not None:
                    profiler.dump_stats(out / "task.prof")
                    threads = [(name, profile) for name, profile in _THREAD_PROFILES if profile.getstats()]
                    server = [profile for name, profile in threads if not name.startswith("ltx2-read")]
                    reads = [profile for name, profile in threads if name.startswith("ltx2-read")]
                    for name, group in (("server.prof", server), ("reads.prof", reads)):
                        if group:
                            pstats.Stats(*group).dump_stats(out / name)  # type: ignore[arg-type]
                (out / "outcome.json").write_text(json.dumps(outcome))

    Measured.__name__ = Measured.__qualname__ = "MeasuredBatchOperator"
    return Measured


def __getattr__(name: str) -> Any:
    # The operator class is made on first use: the parent process (python -m bench) imports no Airflow for it.
    if name == "MeasuredBatchOperator":
        cls = measured_operator()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------------------
# The bench side: an Airflow home, the simulator, one `airflow dags test` per run


@dataclass
class RunResult:
    limit: int
    profiled: bool
    command_wall: float
    outcome: dict[str, Any]
    paid: int
    throttled: int
    manifest_lines: int
    breakdown: list[tuple[str, float, float]] | None = None  # (what, ms per row, calls per row)


def run(settings: RealBatchSettings) -> Table:
    from airflow_provider_ltx2.simulator.process import SimulatorProcess

    results: list[RunResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="ltx2-bench-real-") as scratch,
        SimulatorProcess(key=KEY) as sim,
    ):
        home = Path(scratch, "airflow")
        (home / "dags").mkdir(parents=True)
        (home / "dags" / "ltx2_bench_real_batch.py").write_text(DAG_FILE)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "false",
            "AIRFLOW_CONN_LTX2_DEFAULT": sim.connection(),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        print("  airflow db migrate (SQLite)", file=sys.stderr, flush=True)
        _airflow(["db", "migrate"], env, Path(scratch, "migrate.log"), timeout=300)
        runs = [(limit, False) for limit in settings.limits]
        runs += [(limit, True) for limit in settings.profile_limits]
        for number, (limit, profiled) in enumerate(runs):
            sim.reset()
            sim.configure(max_concurrent_jobs=gateway_limit(settings), queue_seconds=0, processing_seconds=0)
            out = Path(scratch, f"run{number}")
            folder = out / "videos"
            folder.mkdir(parents=True)
            setup = {
                "rows": settings.rows,
                "limit": limit,
                "poll_interval": settings.poll_interval,
                "cap_seconds": settings.cap_seconds,
                "profile": profiled,
                "base_url": sim.base_url,
                "folder": str(folder),
                "out": str(out),
            }
            kind = "profiled" if profiled else "plain"
            print(
                f"  {settings.rows:,} rows, max_concurrent_jobs={limit}, {kind}: started", file=sys.stderr, flush=True
            )
            started = time.monotonic()
            _airflow(
                ["dags", "test", DAG_ID, f"2026-01-{number + 1:02d}"],
                {**env, SETUP_ENV: json.dumps(setup)},
                out / "dags-test.log",
                timeout=settings.cap_seconds + 240,
                check=False,
            )
            command_wall = time.monotonic() - started
            outcome_file = out / "outcome.json"
            if not outcome_file.exists():
                tail = (out / "dags-test.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow dags test ran no batch (max_concurrent_jobs={limit}): {tail}")
            outcome = json.loads(outcome_file.read_text())
            stats = sim.stats()
            jobs = stats.get("job_times", [])
            manifest = folder / "manifest.jsonl"
            result = RunResult(
                limit=limit,
                profiled=profiled,
                command_wall=command_wall,
                outcome=outcome,
                paid=len(jobs) if isinstance(jobs, list) else int(stats["jobs"]),
                throttled=int(stats.get("throttled", {}).get("submit", 0)),
                manifest_lines=sum(1 for _ in manifest.open()) if manifest.exists() else 0,
            )
            rows = max(1, settled(outcome) or settings.rows)
            if not profiled:
                result.breakdown = timer_breakdown(outcome, rows) + thread_lines(outcome, rows)
            else:
                if settings.profile_dir:
                    kept = Path(settings.profile_dir)
                    kept.mkdir(parents=True, exist_ok=True)
                    for prof in out.glob("*.prof"):
                        shutil.copy(prof, kept / f"limit{limit}-{prof.name}")
                profiles = [out / name for name in ("task.prof", "server.prof", "reads.prof")]
                task, server, reads = (pstats.Stats(str(path)) if path.exists() else None for path in profiles)
                assert task is not None, "the profiled run wrote no profile of its task"
                result.breakdown = profile_breakdown(task, server, reads, rows)
            print(f"  ... done in {command_wall:.0f} s ({rows_per_second(result):.1f} rows/s)", file=sys.stderr)
            results.append(result)
    return table(settings, results)


def _airflow(args: list[str], env: dict[str, str], log: Path, timeout: float, check: bool = True) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("w") as output:
        done = subprocess.run(
            [str(airflow), *args], env=env, stdout=output, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT
        )
    if check and done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}): {log.read_text()[-3000:]}")


def settled(outcome: dict[str, Any]) -> int:
    returned = outcome.get("returned") or {}
    return int(returned.get("generated", 0)) + int(returned.get("failed", 0))


def rows_per_second(result: RunResult) -> float:
    return settled(result.outcome) / result.outcome["wall"] if result.outcome.get("wall") else 0.0


# --------------------------------------------------------------------------------------------------------
# Reading the timers (plain runs)

Line = tuple[str, float, float]  # (what, ms per row settled, calls per row); NaN figures: a heading


def timer_breakdown(outcome: dict[str, Any], rows: int) -> list[Line]:
    """Where the task's thread spent ``execute``'s wall time, per row settled, from the plain run's timers.

    Lines starting with "-" are parts of the line above them; the others add up to ``execute``.
    """
    figures: dict[str, list[float]] = outcome.get("timers") or {}
    wall: float = outcome["wall"]

    def get(key: str) -> tuple[float, float]:
        seconds, calls = figures.get(key, (0.0, 0))
        return seconds, calls

    lines: list[Line] = []

    def line(what: str, figure: tuple[float, float]) -> float:
        lines.append((what, figure[0] * 1000 / rows, figure[1] / rows))
        return figure[0]

    def minus(a: tuple[float, float], *others: tuple[float, float]) -> tuple[float, float]:
        return a[0] - sum(other[0] for other in others), a[1]

    top = line("`task_state_store` writes: `BatchRecord.save_progress`", get("save_progress"))
    line("- after a paid submit (in `BatchRun.fill`)", get("save_progress <- fill"))
    line("- after settling (in `BatchRun.settle`)", get("save_progress <- settle"))
    line("- before the first submit (in `execute`)", get("save_progress <- None"))
    line("- of which `BatchProgress.to_dict`", get("to_dict <- save_progress"))
    line("- of which the SDK's `TaskStateStoreAccessor.set`", get("sdk_set <- save_progress"))
    line("  - of which the supervisor round trip (`SUPERVISOR_COMMS.send`)", get("supervisor <- sdk_set"))
    top += line(
        "`task_state_store` read and delete (`get` at the start, `delete` at the end)",
        (
            get("sdk_get <- None")[0] + get("sdk_delete <- None")[0],
            get("sdk_get <- None")[1] + get("sdk_delete <- None")[1],
        ),
    )
    submit = get("submit <- fill")
    top += line("paid submits: `Generation.submit`", submit)
    line("- of which the HTTP call (`Ltx2Hook.submit`)", get("http_submit <- submit"))
    line("- of which `time.sleep(capacity.submit_delay())` (0 s asked)", get("sleep <- submit"))
    line("- of which its log line", get("log <- submit"))
    line("- of which metrics", get("metrics <- submit"))
    planned = get("planned <- fill")
    fill = get("fill <- in_worker")
    top += line(
        "the rest of `BatchRun.fill` (the row's generation, the progress kept)",
        minus(fill, submit, get("save_progress <- fill")),
    )
    line("- of which `BatchRun._planned`", planned)
    polls = get("poll_due <- in_worker")
    top += line("polls: `BatchRun.poll_due`", polls)
    line("- of which the HTTP call (`Ltx2Hook.get_status`)", get("http_poll <- poll_due"))
    store = get("store <- settle")
    top += line("delivery: `delivery.store`", store)
    line("- of which the download and the MP4's write (`save_video`)", get("save_video <- store"))
    line("- of which the sidecar (`storage.write_sidecar`)", get("write_sidecar <- store"))
    line("- of which its log line", get("log <- store"))
    line("- of which metrics", get("metrics <- store"))
    settle = get("settle <- in_worker")
    top += line("the rest of `BatchRun.settle`", minus(settle, store, get("save_progress <- settle")))
    top += line("idle: `time.sleep` in `BatchRun.in_worker` (no job due, no free slot)", get("sleep <- in_worker"))
    top += line("progress lines (`BatchRun.report`)", get("report <- in_worker"))
    loop = get("in_worker <- None")
    top += line(
        "the rest of `BatchRun.in_worker`",
        minus(loop, fill, polls, settle, get("sleep <- in_worker"), get("report <- in_worker")),
    )
    top += line("the survey before paying (`survey`)", get("survey <- None"))
    top += line("the manifest (`BatchRun.finish`)", get("finish <- None"))
    line("the rest of `execute` (the table read, leftovers cleared...)", (wall - top, 0))
    lines.append(("**`execute` in all (wall)**", wall * 1000 / rows, 1 / rows))
    lines.append(("across the above:", float("nan"), float("nan")))
    line("- log lines (structlog)", get("log"))
    line("- metrics (`metrics.count`/`seconds`)", get("metrics"))
    line("- `ObjectStoragePath` made (`storage._path`)", get("path"))
    return lines


def thread_lines(outcome: dict[str, Any], rows: int) -> list[Line]:
    """The process's CPU while ``execute`` ran, per row settled, by kind of thread."""
    lines: list[Line] = []
    cpu = outcome.get("thread_cpu") or {}
    if cpu:
        lines.append(("CPU ms per row, by thread (the process's, while `execute` ran):", float("nan"), float("nan")))
        for group in THREAD_GROUPS:
            lines.append((f"- {group}", cpu.get(group, 0.0) * 1000 / rows, float("nan")))
    return lines


# --------------------------------------------------------------------------------------------------------
# Reading the profiles (profiled runs)

Key = tuple[str, int, str]
PROVIDER = "airflow_provider_ltx2/"
SDK_CONTEXT = "airflow/sdk/execution_time/context.py"


class Profile:
    """A pstats profile, looked up by (file suffix, function name): cumulative seconds and calls, in all or
    from some callers."""

    def __init__(self, stats: pstats.Stats) -> None:
        self.stats: dict[Key, Any] = stats.stats  # type: ignore[attr-defined]

    def keys(self, where: str, name: str) -> list[Key]:
        return [key for key in self.stats if key[2] == name and key[0].replace(os.sep, "/").endswith(where)]

    def cumulative(self, where: str, name: str) -> tuple[float, int]:
        """Seconds spent in the function and what it called, and its calls (outermost calls only)."""
        found = [self.stats[key] for key in self.keys(where, name)]
        return sum(entry[3] for entry in found), sum(entry[1] for entry in found)

    def called_from(self, where: str, name: str, callers: Iterable[tuple[str, str]]) -> tuple[float, int]:
        """The function's cumulative seconds and calls when called from one of ``callers``."""
        wanted = {key for caller in callers for key in self.keys(*caller)}
        seconds, calls = 0.0, 0
        for key in self.keys(where, name):
            for caller, figures in self.stats[key][4].items():
                if caller in wanted:
                    seconds += figures[3]
                    calls += figures[0]
        return seconds, calls


def profile_breakdown(
    task: pstats.Stats, server: pstats.Stats | None, reads: pstats.Stats | None, rows: int
) -> list[Line]:
    """What the profiles show, per row settled: the task's thread, the execution API's threads, the downloads'."""
    profile = Profile(task)
    lines: list[Line] = []

    def line(what: str, figure: tuple[float, int]) -> None:
        lines.append((what, figure[0] * 1000 / rows, figure[1] / rows))

    def heading(what: str) -> None:
        lines.append((what, float("nan"), float("nan")))

    heading("the task's thread:")
    line("`execute`", profile.cumulative(PROVIDER + "operators/ltx2.py", "execute"))
    line(
        "- `BatchRecord.save_progress` (every write of the task state store)",
        profile.cumulative(PROVIDER + "batches/progress.py", "save_progress"),
    )
    line(
        "  - `BatchProgress.to_dict` (`dataclasses.asdict`)",
        profile.cumulative(PROVIDER + "batches/progress.py", "to_dict"),
    )
    line("  - the SDK's `TaskStateStoreAccessor.set`", profile.cumulative(SDK_CONTEXT, "set"))
    line(
        "    - the execution API call (`client.task_state_store.set`: httpx -> a2wsgi -> the API's threads)",
        profile.cumulative("airflow/sdk/api/client.py", "set"),
    )
    line("- `Generation.submit`", profile.cumulative(PROVIDER + "lifecycle.py", "submit"))
    line(
        "  - `time.sleep(capacity.submit_delay())` (0 s asked: the GIL given up)",
        profile.called_from("~", "<built-in method time.sleep>", [(PROVIDER + "lifecycle.py", "submit")]),
    )
    line(
        "- `Ltx2Hook.submit` + `get_status` (`_call`, the gateway's HTTP calls)",
        profile.cumulative(PROVIDER + "hooks/ltx2.py", "_call"),
    )
    line(
        "  - requests' scan of the environment for proxies (`get_environ_proxies`, each request)",
        profile.called_from(
            "requests/sessions.py", "merge_environment_settings", [("requests/sessions.py", "request")]
        ),
    )
    line("- `delivery.store`", profile.cumulative(PROVIDER + "delivery.py", "store"))
    line(
        "  - the download's reader thread started (`Thread.start`, one per video)",
        profile.called_from("threading.py", "start", [(PROVIDER + "hooks/ltx2.py", "_fetch")]),
    )
    line("  - `storage.write_sidecar`", profile.cumulative(PROVIDER + "storage.py", "write_sidecar"))
    line(
        "    - `json.dump(..., indent=2)` through the file object",
        profile.called_from("json/__init__.py", "dump", [(PROVIDER + "storage.py", "write_sidecar")]),
    )
    line(
        "  - `ObjectStoragePath` file wrapper (`_TrackingFileWrapper`: lineage + `str(path)` per `write`)",
        profile.cumulative("airflow/sdk/io/path.py", "wrapper"),
    )
    line("- `storage._path` (`ObjectStoragePath(...)`)", profile.cumulative(PROVIDER + "storage.py", "_path"))
    line("- log lines (structlog `_proxy_to_logger`)", profile.cumulative("structlog/_base.py", "_proxy_to_logger"))
    counted = [profile.cumulative(PROVIDER + "metrics.py", name) for name in ("count", "seconds")]
    line("- metrics (`metrics.count`/`seconds`)", (sum(f[0] for f in counted), sum(f[1] for f in counted)))
    if server is not None:
        api = Profile(server)
        routes = "execution_api/routes/task_state_store.py"
        heading("meanwhile, the execution API's threads (in-process under `dags test`; the task waits for them):")
        line(
            "FastAPI's analysis of the routes' dependencies, redone per request (`get_dependant` in "
            "`solve_dependencies`)",
            api.called_from(
                "fastapi/dependencies/utils.py",
                "get_dependant",
                [("fastapi/dependencies/utils.py", "solve_dependencies")],
            ),
        )
        line("the route `set_task_state_store`", api.cumulative(routes, "set_task_state_store"))
        line(
            "- the task instance looked up (`_get_task_scope_for_ti`)",
            api.cumulative(routes, "_get_task_scope_for_ti"),
        )
        line("- the write (`MetastoreBackend.set`)", api.cumulative("airflow/state/metastore.py", "set"))
        line("SQLite commits (every request)", api.cumulative("~", "<method 'commit' of 'sqlite3.Connection' objects>"))
    if reads is not None:
        pumps = Profile(reads)
        heading("the downloads' reader threads (one per video):")
        line("the video read (`_fetch_chunks`)", pumps.cumulative(PROVIDER + "hooks/ltx2.py", "_fetch_chunks"))
        line(
            "- requests' scan of the environment for proxies (`get_environ_proxies`)",
            pumps.cumulative("requests/utils.py", "get_environ_proxies"),
        )
    return lines


# --------------------------------------------------------------------------------------------------------
# The table


def gateway_limit(settings: RealBatchSettings) -> int:
    return max((*settings.limits, *settings.profile_limits))


def table(settings: RealBatchSettings, results: list[RunResult]) -> Table:
    rows = settings.rows
    plain = [result for result in results if not result.profiled]
    profiled = [result for result in results if result.profiled]
    made = Table(
        title=(
            f"7. A batch in a real Airflow task: {rows:,} rows under `airflow dags test` (SQLite), jobs that end at "
            f"once, poll interval {settings.poll_interval:g} s; where the time goes per row"
        ),
        columns=[
            "max_concurrent_jobs",
            "rows/s",
            "ms per row",
            "of which `task_state_store` writes: ms per row (writes per row)",
            "ms per write",
            "CPU s (the process)",
            f"paid submits = {rows:,} (429s)",
            f"manifest lines = {rows:,}",
            "`dags test` wall s",
            "finished",
        ],
    )
    for result in [*plain, *profiled]:
        outcome = result.outcome
        count = settled(outcome)
        seconds, calls = (outcome.get("timers") or {}).get("save_progress", (float("nan"), 0))
        made.rows.append(
            [
                f"{result.limit}{' (cProfile)' if result.profiled else ''}",
                f"{rows_per_second(result):.1f}",
                f"{outcome['wall'] * 1000 / count:.1f}" if count else "-",
                f"{seconds * 1000 / count:.1f} ({calls / count:.2f})" if count and calls else "-",
                f"{seconds * 1000 / calls:.1f}" if calls else "-",
                f"{outcome['cpu']:.0f}",
                f"{result.paid:,} ({result.throttled}) {verdict(result.paid == rows)}",
                f"{result.manifest_lines:,} {verdict(result.manifest_lines == rows)}",
                f"{result.command_wall:.0f}",
                "yes" if outcome.get("error") is None else f"no: {outcome['error'][:120]}",
            ]
        )
    made.notes.append(
        f"One `Ltx2GenerateVideoBatchOperator` (`deferrable=False`) over {rows:,} rows as in table 6, the one task of "
        "a DAG run by `airflow dags test` in a temporary `AIRFLOW_HOME` (SQLite): Airflow's in-process supervisor "
        "and execution API, so `context['task_state_store']` is Airflow's own, each `set` a round trip through "
        "the supervisor to the API and a SQLite write. The simulator's jobs take 0 s, its limit is "
        f"{gateway_limit(settings)}. Rows/s and ms per row = rows settled / the wall time of `execute` (survey and "
        "manifest included); `dags test` wall adds the CLI's start, the DAG's parse and the run's bookkeeping. "
        "`--real-batch-rows`, `--real-batch-limits`, `--real-batch-profile-limits`."
    )
    if plain:
        by_limit = [(result, result.breakdown or []) for result in plain]
        header = " | ".join(f"max_concurrent_jobs={result.limit}: ms per row (calls per row)" for result, _ in by_limit)
        body = []
        for index, (what, _, _) in enumerate(by_limit[0][1]):
            cells = [cell(lines[index][1], lines[index][2]) for _, lines in by_limit]
            body.append(f"  | {what} | " + " | ".join(cells) + " |")
        made.notes.append(
            "Where the wall time of `execute` goes per row, plain runs (timers around the calls named, on the task's "
            'thread; lines starting with "-" are parts of the line above, the others add up to `execute`):\n\n'
            + "\n".join([f"  | where | {header} |", "  | --- |" + " ---: |" * len(by_limit), *body])
        )
    for result in profiled:
        made.notes.append(
            f"Under cProfile, max_concurrent_jobs={result.limit} (cumulative ms per row settled and calls per row; "
            "cProfile slows Python calls, so compare these lines with each other, not with the plain runs):\n\n"
            + "\n".join(
                ["  | where | ms per row | calls per row |", "  | --- | ---: | ---: |"]
                + [
                    f"  | {what} | {fmt(ms, '.2f')} | {fmt(calls, '.2f')} |"
                    for what, ms, calls in result.breakdown or []
                ]
            )
        )
    return made


def fmt(value: float, spec: str) -> str:
    return "" if math.isnan(value) else format(value, spec)  # NaN: a heading


def cell(ms: float, calls: float) -> str:
    if math.isnan(ms):
        return ""
    return f"{ms:.2f}" if math.isnan(calls) else f"{ms:.2f} ({calls:.2f})"


def main() -> None:
    """``python -m bench.real_batch [rows] [limits] [profile folder]``: the table alone, printed (RESULTS.md
    untouched); the profiles are kept in the folder when one is given."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else RealBatchSettings.rows
    limits = tuple(int(n) for n in sys.argv[2].split(",")) if len(sys.argv) > 2 else RealBatchSettings.limits
    kept = sys.argv[3] if len(sys.argv) > 3 else None
    print(run(RealBatchSettings(rows=rows, limits=limits, profile_dir=kept)).markdown())


if __name__ == "__main__":
    main()
