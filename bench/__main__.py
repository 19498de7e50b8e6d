"""Run the benchmarks, print the tables, and write them to bench/RESULTS.md (usage: ``python -m bench -h``)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench import batch_scale, batches, download, latency, ledger, parse, real_batch, triggers
from bench.common import KEY, Table, machine_info, raise_fd_limit

TABLES = ("triggers", "parse", "download", "latency", "batches", "ledger", "real-batch")
DEFAULT_TABLES = TABLES[:-1]  # real-batch (table 7) runs only when named: --only real-batch


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_TABLES),
        help=f"comma-separated tables to run ({', '.join(TABLES)}; default all but real-batch)",
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    group = parser.add_argument_group(
        "pollers at scale (table 1)",
        "Table 1 alone: --only triggers (about 8 minutes on 2 cores). A quick look at the trigger's CPU against "
        "the floor's (about 2 minutes): --only triggers --sizes 1000 --scale-sizes '' --clients ltx2,floor "
        "--output /tmp/table1.md",
    )
    group.add_argument(
        "--sizes",
        default="100,1000",
        help=f"trigger counts at a {triggers.INTERVAL:g} s poll interval, '' for none (default 100,1000)",
    )
    group.add_argument(
        "--scale-sizes",
        default="10000",
        help=f"trigger counts at the default {triggers.SCALE_INTERVAL:g} s poll interval, '' for none (default 10000)",
    )
    group.add_argument(
        "--clients",
        default=",".join(triggers.CLIENTS),
        help=f"pollers of the --sizes rows: {', '.join(triggers.CLIENTS)} (default all)",
    )
    group.add_argument(
        "--scale-clients",
        default=",".join(triggers.SCALE_CLIENTS),
        help=f"pollers of the --scale-sizes rows (default {','.join(triggers.SCALE_CLIENTS)})",
    )
    group.add_argument(
        "--runs",
        type=int,
        default=triggers.RUNS,
        help=f"runs of each client, interleaved, at N <= {triggers.REPEAT_MAX_N} of --sizes; the median is "
        f"reported (default {triggers.RUNS})",
    )
    batch = batches.Settings()
    group = parser.add_argument_group("batches (table 5)")
    group.add_argument("--batch-tasks", type=int, default=batch.tasks, help="generations per batch")
    group.add_argument("--batch-limits", default=",".join(map(str, batch.limits)), help="max concurrent jobs")
    group.add_argument("--worker-slots", type=int, default=batch.worker_slots, help="worker pool size")
    group.add_argument(
        "--handoff-seconds", type=float, default=batch.handoff_seconds, help="trigger event -> worker call"
    )
    group.add_argument("--batch-queue-seconds", type=float, default=batch.queue_seconds, help="job queue time")
    group.add_argument("--batch-processing-seconds", type=float, default=batch.processing_seconds)
    group.add_argument("--batch-poll-interval", type=float, default=batch.poll_interval)
    scale = batch_scale.ScaleSettings()
    group = parser.add_argument_group("a dataset-scale batch (table 6, run with the batches)")
    group.add_argument("--batch-scale-rows", type=int, default=scale.rows, help="rows of the batch, 0 for no table 6")
    group.add_argument(
        "--batch-scale-cap", type=float, default=scale.cap_seconds, help="seconds before an unfinished batch is stopped"
    )
    real = real_batch.RealBatchSettings()
    group = parser.add_argument_group(
        "a batch in a real Airflow task (table 7, only with --only real-batch)",
        "The batch operator under `airflow dags test` (SQLite), and where its time goes per row: about 3 minutes.",
    )
    group.add_argument("--real-batch-rows", type=int, default=real.rows, help="rows of the batch")
    group.add_argument(
        "--real-batch-limits", default=",".join(map(str, real.limits)), help="max_concurrent_jobs, a plain run each"
    )
    group.add_argument(
        "--real-batch-profile-limits",
        default=",".join(map(str, real.profile_limits)),
        help="max_concurrent_jobs also run under cProfile, '' for none",
    )
    group.add_argument("--real-batch-poll-interval", type=float, default=real.poll_interval)
    group.add_argument("--real-batch-profiles", default=None, help="a folder to keep the .prof files in")
    args = parser.parse_args()
    chosen = [name for name in TABLES if name in args.only.split(",")]
    unknown = {name for name in args.only.split(",") if name.strip()} - set(TABLES)
    if unknown:
        parser.error(f"--only: unknown table(s) {', '.join(sorted(unknown))}; choose from {', '.join(TABLES)}")
    pollers = triggers.settings(
        sizes=numbers(args.sizes),
        scale_sizes=numbers(args.scale_sizes),
        clients=kinds(parser, args.clients),
        scale_clients=kinds(parser, args.scale_clients),
        runs=args.runs,
    )
    if "triggers" in chosen and not pollers:
        parser.error("table 1 has no rows: give --sizes or --scale-sizes (and clients)")
    batch = batches.Settings(
        tasks=args.batch_tasks,
        limits=tuple(int(n) for n in args.batch_limits.split(",")),
        worker_slots=args.worker_slots,
        handoff_seconds=args.handoff_seconds,
        queue_seconds=args.batch_queue_seconds,
        processing_seconds=args.batch_processing_seconds,
        poll_interval=args.batch_poll_interval,
    )
    scale = batch_scale.ScaleSettings(rows=args.batch_scale_rows, cap_seconds=args.batch_scale_cap)
    real = real_batch.RealBatchSettings(
        rows=args.real_batch_rows,
        limits=tuple(numbers(args.real_batch_limits)),
        profile_limits=tuple(numbers(args.real_batch_profile_limits)),
        poll_interval=args.real_batch_poll_interval,
        profile_dir=args.real_batch_profiles,
    )

    # Airflow reads its home at import: give the workers a private one, and keep example DAGs out of it.
    with tempfile.TemporaryDirectory(prefix="ltx2-bench-airflow-") as home:
        os.environ.setdefault("AIRFLOW_HOME", home)
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
        # Inherited by the simulator and the workers: one socket per connection, and the baseline opens one per poll.
        raise_fd_limit(max((setting.n for setting in pollers), default=0) + 1024)
        run(chosen, pollers, batch, scale, real, args.output)


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def kinds(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    found = tuple(kind for kind in text.split(",") if kind.strip())
    unknown = set(found) - set(triggers.CLIENTS)
    if unknown:
        parser.error(f"unknown client(s) {', '.join(sorted(unknown))}; choose from {', '.join(triggers.CLIENTS)}")
    return found


def run(
    chosen: list[str],
    pollers: list[triggers.Setting],
    batch: batches.Settings,
    scale: batch_scale.ScaleSettings,
    real: real_batch.RealBatchSettings,
    output: Path,
) -> None:
    from airflow_provider_ltx2.simulator.process import SimulatorProcess

    started = time.monotonic()
    info = machine_info()
    header = "# airflow-provider-ltx2 benchmarks\n\n" + "\n".join(f"- {key}: {value}" for key, value in info) + "\n"
    print(header, flush=True)
    tables: list[Table] = []
    with SimulatorProcess(key=KEY) as sim:
        os.environ["AIRFLOW_CONN_LTX2_DEFAULT"] = sim.connection()
        for name in chosen:
            print(f"Running {name}...", file=sys.stderr, flush=True)
            if name == "triggers":
                made = [triggers.run(sim, pollers)]
            elif name == "parse":
                made = [parse.run()]
            elif name == "download":
                made = [download.run(sim)]
            elif name == "latency":
                made = [latency.run(sim)]
            elif name == "real-batch":
                made = [real_batch.run(real)]
            elif name == "ledger":
                made = [ledger.run()]
            else:
                made = [batches.run(sim, batch)]
                if scale.rows:  # after table 5's batches, so that it has the machine to itself
                    print(made[0].markdown(), flush=True)
                    made.append(batch_scale.run(scale))
            print(made[-1].markdown(), flush=True)
            tables += made
    sections = {number(table.title): table.markdown() for table in tables}
    kept = {key: text for key, text in earlier_sections(output).items() if key not in sections}
    footer = (
        f"Total run time {time.monotonic() - started:.0f} s"
        + (f" for table {', '.join(map(str, sorted(sections)))}" if kept else "")
        + "; load average at the end "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + "."
        + (f" Table {', '.join(map(str, sorted(kept)))} kept from an earlier run of this file." if kept else "")
        + " Reproduce with `scripts/bench.sh`."
    )
    print(footer)
    merged = {**kept, **sections}
    output.write_text("\n".join([header, *(merged[key] for key in sorted(merged)), footer]) + "\n")
    print(f"Written to {output}", file=sys.stderr)


def number(title: str) -> int:
    """A table's number: its title starts with it ("5. Batches ...")."""
    return int(title.split(".", 1)[0])


def earlier_sections(output: Path) -> dict[int, str]:
    """The tables already in ``output`` by number, so a run of some tables (``--only``) keeps the others."""
    if not output.exists():
        return {}
    blocks = re.split(r"(?m)^## ", output.read_text())[1:]
    return {number(block): "## " + block.split("\nTotal run time", 1)[0].rstrip() + "\n" for block in blocks}


if __name__ == "__main__":
    main()
