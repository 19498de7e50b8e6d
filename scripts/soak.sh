#!/usr/bin/env bash
# The soak: a real Airflow deployment under load for a long while (tests/e2e/test_soak.py).
#
#   scripts/soak.sh                  the full run: 300 mapped generations, 50 sensors, a batch of 2,000 rows
#   scripts/soak.sh --quick          the same in small (30, 10, 40 rows, jobs of 2-6 s): about 5 minutes
#   scripts/soak.sh --celery [...]   in the CeleryExecutor layout of `scripts/e2e.sh --celery`
#   scripts/soak.sh --write-results  also write the quick run's table into bench/RESULTS.md
#   scripts/soak.sh --no-results     do not write the full run's table into bench/RESULTS.md
#
# It runs `scripts/e2e.sh tests/e2e/test_soak.py`, so it installs and starts what the e2e tests do (Airflow's
# postgres extra, Debian's postgresql, and with --celery redis-server and the Celery provider; as root on a
# fresh machine), and stops everything by pid on exit. The deployment: the simulator at a limit of concurrent
# jobs with jobs of random length, 3% of polls answering 503 and bursts of 429 on submits, all on one key;
# api-server, scheduler, dag-processor, two triggerers. Mid-run a triggerer is SIGKILLed and restarted, the
# scheduler restarted, and the task process of a running generation SIGKILLed. At the end it prints the
# soak's table (failed tasks, state mismatches, paid vs delivered, the manifest, hand-off times, slot
# utilisation, the batch's cost per row, metadata DB writes per row), writes it as section 8 of
# bench/RESULTS.md (the full run; the quick run only with --write-results), and fails when a target is missed:
# a task not successful, a "state mismatch", a paid job not delivered exactly once, a manifest line missing.
# The full run's gateway alone needs over two hours at the defaults (it prints the bound when it starts).
#
# Environment (defaults: the full run's; --quick changes the first seven: 30, 10, 40, 2, 6, 30 and 3):
#   LTX2_SOAK_MAPPED (300), LTX2_SOAK_SENSORS (50), LTX2_SOAK_BATCH_ROWS (2000), LTX2_SOAK_JOB_MIN (5),
#   LTX2_SOAK_JOB_MAX (30) seconds per job, LTX2_SOAK_BURST_EVERY (60) seconds between bursts of
#   LTX2_SOAK_BURST_SECONDS (5) in which every submit gets a 429 (Retry-After 2),
#   LTX2_SOAK_BATCH_CONCURRENCY (4), LTX2_SOAK_GATEWAY_LIMIT (8),
#   LTX2_SOAK_POLL_FAULTS (0.03) share of polls answering 503, LTX2_SOAK_POLL_INTERVAL (2) seconds,
#   LTX2_SOAK_PARALLELISM (12) worker slots of the LocalExecutor;
#   LTX2_E2E_TIMEOUT bounds the run (default 6h, 25m with --quick); LTX2_E2E_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=full
CELERY=()
WRITE=""
for arg in "$@"; do
    case "$arg" in
        --quick) MODE=quick ;;
        --celery) CELERY=(--celery) ;;
        --write-results) WRITE=yes ;;
        --no-results) WRITE=no ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "scripts/soak.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$MODE" = quick ]; then
    export LTX2_SOAK_MAPPED="${LTX2_SOAK_MAPPED:-30}" LTX2_SOAK_SENSORS="${LTX2_SOAK_SENSORS:-10}"
    export LTX2_SOAK_BATCH_ROWS="${LTX2_SOAK_BATCH_ROWS:-40}" LTX2_SOAK_JOB_MIN="${LTX2_SOAK_JOB_MIN:-2}"
    export LTX2_SOAK_JOB_MAX="${LTX2_SOAK_JOB_MAX:-6}" LTX2_SOAK_BURST_EVERY="${LTX2_SOAK_BURST_EVERY:-30}"
    export LTX2_SOAK_BURST_SECONDS="${LTX2_SOAK_BURST_SECONDS:-3}"
    : "${LTX2_E2E_TIMEOUT:=25m}"
    [ "$WRITE" = yes ] || WRITE=no
else
    : "${LTX2_E2E_TIMEOUT:=6h}"
    [ "$WRITE" = no ] || WRITE=yes
fi
export LTX2_SOAK="$MODE" LTX2_E2E_TIMEOUT
if [ "$WRITE" = yes ]; then
    export LTX2_SOAK_RESULTS="$PWD/bench/RESULTS.md"
else
    unset LTX2_SOAK_RESULTS
fi
started=$SECONDS
status=0
scripts/e2e.sh "${CELERY[@]}" tests/e2e/test_soak.py -s -p no:cacheprovider || status=$?
echo "== soak ($MODE) took $((SECONDS - started)) s, exit status $status" >&2
exit "$status"
