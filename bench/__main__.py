"""Run the benchmarks, print the tables, and write them to bench/RESULTS.md (usage: ``python -m bench -h``)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import download, latency, parse, triggers
from bench.common import KEY, Table, machine_info, raise_fd_limit

TABLES = ("triggers", "parse", "download", "latency")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(TABLES), help="comma-separated tables to run")
    parser.add_argument("--sizes", default="100,1000,5000", help="trigger counts for table 1")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    chosen = [name for name in TABLES if name in args.only.split(",")]

    # Airflow reads its home at import: give the workers a private one, and keep example DAGs out of it.
    with tempfile.TemporaryDirectory(prefix="ltx2-bench-airflow-") as home:
        os.environ.setdefault("AIRFLOW_HOME", home)
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
        raise_fd_limit()  # inherited by the simulator, which holds one socket per poller
        run(chosen, [int(n) for n in args.sizes.split(",")], args.output)


def run(chosen: list[str], sizes: list[int], output: Path) -> None:
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
                table = triggers.run(sim, sizes)
            elif name == "parse":
                table = parse.run()
            elif name == "download":
                table = download.run(sim)
            else:
                table = latency.run(sim)
            tables.append(table)
            print(table.markdown(), flush=True)
    footer = (
        f"Total run time {time.monotonic() - started:.0f} s; load average at the end "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + ". Reproduce with `scripts/bench.sh`."
    )
    print(footer)
    output.write_text("\n".join([header, *(table.markdown() for table in tables), footer]) + "\n")
    print(f"Written to {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
