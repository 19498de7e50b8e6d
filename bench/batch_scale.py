"""Table 6: a dataset-scale batch in one task, what it costs in memory and time.

A fresh process (``python -m bench.batch_scale worker``, settings on stdin) runs one
``Ltx2GenerateVideoBatchOperator`` in the worker (``deferrable=False``) over a table of thousands of rows
against a simulator whose jobs end at once: the gateway's limit, the polls, the downloads and the writes
set the pace, and whatever the batch keeps per row shows as growth of the process's resident set. The
process is fresh so that its RSS is the batch's own: measured after the imports, before the table's list of
rows is built (the list counts), sampled while the batch runs, and checked against the kernel's high-water
mark. A batch still running at the time cap is stopped there and reported as not finished, with its
progress from the task state store.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.batches import batch_rows
from bench.common import (
    KEY,
    MIB,
    Table,
    current_rss,
    peak_rss,
    process_cpu,
    result_channel,
    run_worker,
    verdict,
)
from tests.fakes import FakeStateStore, FakeTaskInstance, task_context

RSS_TARGET_MIB = 100.0
SAMPLE_SECONDS = 0.02
# What the batch imports when it runs (the rest comes with the operator's module): loaded before the start RSS
TASK_MODULES = (
    "airflow_provider_ltx2.operators.ltx2",
    "airflow_provider_ltx2.batches.run",
    "airflow_provider_ltx2.delivery",
    "airflow_provider_ltx2.events",
    "airflow.providers.common.compat.sdk",
    "requests",
)


@dataclass(frozen=True)
class ScaleSettings:
    """The scale batch: its rows, the gateway's limit (= ``max_concurrent_jobs``), the poll interval, and how
    long it may run before it is stopped and reported unfinished (all flags)."""

    rows: int = 10_000
    limit: int = 50
    poll_interval: float = 0.05
    cap_seconds: float = 240.0


def worker() -> None:
    """Run the batch in a thread of this process and sample the process's RSS until it ends or the cap."""
    import importlib

    out = result_channel()
    setup = json.loads(sys.stdin.readline())
    settings = ScaleSettings(**setup["settings"])
    for module in TASK_MODULES:
        importlib.import_module(module)
    from airflow_provider_ltx2.batches.progress import BATCH_STATE_KEY
    from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator

    start_rss, start_peak = current_rss(), peak_rss()
    operator = Ltx2GenerateVideoBatchOperator(
        task_id="generate_batch",
        requests=batch_rows(settings.rows, f"{setup['base_url']}/files/sample.jpg"),
        output_prefix=f"file://{setup['folder']}",
        max_concurrent_jobs=settings.limit,
        poll_interval=settings.poll_interval,
        deferrable=False,
        timeout=settings.cap_seconds + 60,
    )
    store, outcome = FakeStateStore(), dict[str, Any]()
    context: Any = task_context(store, ti=FakeTaskInstance(task_id="generate_batch"))

    def execute() -> None:
        try:
            outcome["returned"] = operator.execute(context)
        except Exception as error:  # reported, not raised: the figures so far still count
            outcome["error"] = f"{type(error).__name__}: {error}"[:500]

    started, cpu = time.time(), time.process_time()
    batch = threading.Thread(target=execute, name="batch", daemon=True)
    batch.start()
    sampled = start_rss
    while batch.is_alive() and time.time() - started < settings.cap_seconds:
        sampled = max(sampled, current_rss())
        batch.join(SAMPLE_SECONDS)
    wall = time.time() - started
    high = peak_rss()
    # A high-water mark that rose during the batch is its exact peak; else the samples are the best there is.
    peak = high if high > start_peak else sampled
    manifest = Path(setup["folder"], "manifest.jsonl")
    result = {
        "finished": not batch.is_alive(),
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "start_rss": start_rss,
        "peak_growth": peak - start_rss,
        "sampled_growth": sampled - start_rss,
        "returned": outcome.get("returned"),
        "error": outcome.get("error"),
        "progress": store.get(BATCH_STATE_KEY),  # gone once a batch finishes; its progress where it stopped
        "manifest_lines": sum(1 for _ in manifest.open()) if manifest.exists() else 0,
    }
    print(json.dumps(result), file=out, flush=True)
    os._exit(0)  # a batch stopped at the cap is still running in its thread


def run(settings: ScaleSettings) -> Table:
    """The scale batch against a simulator of its own (its jobs would slow another's limit checks)."""
    from airflow_provider_ltx2.simulator.process import SimulatorProcess

    with SimulatorProcess(key=KEY) as sim, tempfile.TemporaryDirectory(prefix="ltx2-bench-scale-") as folder:
        assert sim.process is not None
        sim.configure(max_concurrent_jobs=settings.limit, queue_seconds=0, processing_seconds=0)
        setup = {"settings": asdict(settings), "base_url": sim.base_url, "folder": folder}
        env = {**os.environ, "AIRFLOW_CONN_LTX2_DEFAULT": sim.connection()}
        print(f"  a batch of {settings.rows:,} rows: started", file=sys.stderr, flush=True)
        sim_cpu = process_cpu(sim.process.pid)
        batch = run_worker(
            "bench.batch_scale", [], stdin=json.dumps(setup) + "\n", timeout=settings.cap_seconds + 300, env=env
        )
        sim_cpu = process_cpu(sim.process.pid) - sim_cpu
        stats = sim.stats()
        print(f"  a batch of {settings.rows:,} rows: done", file=sys.stderr, flush=True)
    return table(settings, batch, stats, sim_cpu)


def table(settings: ScaleSettings, batch: dict[str, Any], stats: dict[str, Any], sim_cpu: float) -> Table:
    jobs = stats.get("job_times", [])
    paid = len(jobs) if isinstance(jobs, list) else int(stats["jobs"])
    returned = batch["returned"] or {}
    progress = batch["progress"] or {}
    generated = returned.get("generated", progress.get("generated", 0))
    failed = returned.get("failed", len(progress.get("failed", {})))
    growth = batch["peak_growth"] / MIB
    if batch["finished"]:
        finished = "yes" if batch["error"] is None else "failed"
    else:
        finished = f"no: stopped at the {settings.cap_seconds:g} s cap"
    done = batch["finished"] and batch["error"] is None
    rows = settings.rows
    result = Table(
        title=(
            f"6. A dataset-scale batch: {rows:,} rows in one batch operator task in the worker, jobs that end "
            f"at once, gateway limit {settings.limit}, poll interval {settings.poll_interval:g} s"
        ),
        columns=[
            "rows",
            f"target: finished (cap {settings.cap_seconds:g} s)",
            "wall s",
            "rows settled per s",
            "CPU s: the task's process / the simulator",
            f"target: peak RSS growth <= {RSS_TARGET_MIB:g} MiB (RSS at start)",
            f"target: paid submits = {rows:,} (429s)",
            f"target: manifest lines = {rows:,}",
            "generated / failed rows",
        ],
    )
    result.rows.append(
        [
            f"{rows:,}",
            f"{finished} {verdict(done)}",
            f"{batch['wall']:.0f}",
            f"{(generated + failed) / batch['wall']:.0f}",
            f"{batch['cpu']:.0f} / {sim_cpu:.0f}",
            f"{growth:.1f}{'' if done else ' when stopped'} ({batch['start_rss'] / MIB:.0f}) "
            f"{verdict(done and growth <= RSS_TARGET_MIB)}",
            f"{paid:,} ({stats.get('throttled', {}).get('submit', '-')}) {verdict(paid == rows)}",
            f"{batch['manifest_lines']:,} {verdict(batch['manifest_lines'] == rows)}",
            f"{generated:,} / {failed:,}",
        ]
    )
    result.notes += [
        f"One `Ltx2GenerateVideoBatchOperator` (`deferrable=False`, `max_concurrent_jobs={settings.limit}`) over "
        f"{rows:,} rows (`r00000`..., one image from the simulator's `/files/`, one short prompt) with a "
        f"temporary `file://` folder as `output_prefix`: each row's video (the simulator's small sample MP4) is "
        "downloaded and its sidecar written, and the manifest at the end. The simulator's jobs take 0 s "
        f"(queue and processing), its limit is {settings.limit}. `--batch-scale-rows`, `--batch-scale-cap`.",
        "A fresh process: RSS at start = after importing the operator and what it uses at run time, before "
        "the list of rows is built (the list counts as growth). Peak RSS growth = the kernel's high-water mark "
        "(`ru_maxrss`) when it rose during the batch, else the highest of the samples taken every "
        f"{SAMPLE_SECONDS * 1000:g} ms ({batch['sampled_growth'] / MIB:.1f} MiB sampled) - the RSS at start. "
        "Wall = `execute` called to returned (or the cap); rows settled per s = (generated + failed) / wall. "
        "Paid submits = the jobs the simulator created; manifest lines = the lines of `manifest.jsonl`.",
    ]
    if not done:
        why = batch["error"] or (
            f"{progress.get('cursor', 0):,} rows submitted, {generated:,} generated when the cap stopped it"
        )
        result.notes.append(f"The batch did not finish: {why}.")
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker()
