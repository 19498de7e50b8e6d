#!/usr/bin/env bash
# Benchmark the provider against its simulator: pollers at scale, DAG-parse cost, download, latency.
# Prints four tables (5-10 minutes on 2 cores) and writes them to bench/RESULTS.md.
# Arguments go to `python -m bench`, e.g. `scripts/bench.sh --only parse` or `--sizes 100,1000`.
source "$(dirname "$0")/bootstrap.sh"
python -c "import psutil" 2>/dev/null || python -m pip install -q psutil
if ! command -v curl >/dev/null; then  # table 3 compares the download with curl
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q curl >/dev/null
fi
python -m bench "$@"
