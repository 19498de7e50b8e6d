#!/usr/bin/env bash
# Benchmark the provider against its simulator: pollers at scale, DAG-parse cost, download, latency, and
# batches at the gateway's concurrency limits (mapped tasks and the batch operator), a 10,000-row batch, and
# the spend guard's ledger with a month of records (`--only ledger`, under 2 minutes).
# Prints seven tables (about 27 minutes on 2 cores; the batches alone, `--only batches`, about 8) and writes
# them to bench/RESULTS.md (a subset replaces only its tables); `--only real-batch` runs table 7, a batch in a
# real Airflow task under `airflow dags test` (about 3 minutes), which the default run leaves out.
# Arguments go to `python -m bench`, e.g. `scripts/bench.sh --only parse`, `--sizes 100,1000`, `-h` for all.
source "$(dirname "$0")/bootstrap.sh"
python -c "import psutil" 2>/dev/null || python -m pip install -q psutil
if ! command -v curl >/dev/null; then  # table 3 compares the download with curl
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q curl >/dev/null
fi
python -m bench "$@"
