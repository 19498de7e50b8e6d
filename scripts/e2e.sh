#!/usr/bin/env bash
# End-to-end tests in a real Airflow deployment (tests/e2e/).
#
#   scripts/e2e.sh [pytest arguments]            e.g.  scripts/e2e.sh -k triggerer -x
#   scripts/e2e.sh tests/e2e/test_batches.py -x  only the tests named (default: all of tests/e2e)
#   scripts/e2e.sh --celery [pytest arguments]   the CeleryExecutor deployment (tests/e2e/test_celery.py)
#
# What it does:
#   1. makes or reuses the project's virtualenv (scripts/bootstrap.sh) and adds what the deployment needs:
#      Airflow's postgres extra (psycopg2, asyncpg) and hypothesis;
#   2. installs Debian's `postgresql` with apt-get when initdb/pg_ctl are missing (needs root);
#   3. starts a private PostgreSQL cluster in a temporary directory, on a free loopback port, with a
#      random password (as the `postgres` user when run as root: the server refuses to run as root);
#   4. runs `pytest tests/e2e`, which migrates the metadata DB and starts the api-server, the scheduler
#      (LocalExecutor), the dag-processor and the triggerer(s) as separate processes, plus the LTX-2
#      simulator, then triggers DAG runs through the REST API and checks what happened.
# With --celery it also installs the Celery provider (into the virtualenv) and Debian's `redis-server`
# when missing, starts a private Redis on a free loopback port as the broker, and runs
# tests/e2e/test_celery.py: the deployment of docker-compose.yaml, with two Celery workers.
# Everything started is stopped by pid on exit, also on failure, on Ctrl-C and at the time bound.
# Takes about 15 minutes on 2 cores (all of tests/e2e), 5 with --celery.
#
# Environment:
#   LTX2_E2E_TIMEOUT   bound on the pytest run, as for timeout(1) (default 40m)
#   LTX2_E2E_KEEP=1    keep the work directory (component logs, task logs, DB log) after a pass;
#                      it is always kept after a failure, and its path printed
CELERY=0
if [ "${1:-}" = --celery ]; then
    CELERY=1
    shift
fi
source "$(dirname "$0")/bootstrap.sh"

if ! python -c "import psycopg2, asyncpg, hypothesis, airflow.providers.postgres" 2>/dev/null; then
    echo "Installing the deployment's extras into $VENV..." >&2
    python -m pip install -q -c scripts/constraints.txt "apache-airflow[postgres]==$AIRFLOW_VERSION" hypothesis
fi
# The Celery provider (3.26) imports celery.backends.database.retry, which celery 5.7 no longer has.
if [ "$CELERY" = 1 ] && ! python -c "import airflow.providers.celery; from celery.backends.database import retry" 2>/dev/null
then
    echo "Installing the Celery provider into $VENV..." >&2
    python -m pip install -q -c scripts/constraints.txt "apache-airflow==$AIRFLOW_VERSION" \
        apache-airflow-providers-celery "celery[redis]<5.7"
fi

# Install Debian packages (needs root) without letting them start their default servers: this script
# runs its own, in its work directory.
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "Missing server binaries: install Debian's $* package(s) (as root)." >&2
        exit 1
    fi
    echo "Installing $* (Debian packages)..." >&2
    (
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    )
}

find_pg_bin() {
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
    fi
}
PG_BIN="$(find_pg_bin)"
if [ -z "$PG_BIN" ]; then
    apt_install postgresql
    PG_BIN="$(find_pg_bin)"
    [ -n "$PG_BIN" ] || { echo "PostgreSQL installed, but no initdb/pg_ctl under /usr/lib/postgresql" >&2; exit 1; }
fi
if [ "$CELERY" = 1 ] && ! command -v redis-server >/dev/null; then
    apt_install redis-server
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ltx2-e2e.XXXXXX")"
chmod 755 "$WORK"
mkdir -p "$WORK/pg" "$WORK/deployment"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$WORK/pg"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
PG_PID=""
REDIS_PID=""

# Stop, by pid, whatever is still running: the deployment's processes (pytest stops them itself; this is
# for a crash or the time bound) and the PostgreSQL server.
stop_pid() {  # pid, then seconds to wait after SIGTERM (or the signal given as $3)
    local pid="$1" wait="$2" sig="${3:-TERM}"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq $((wait * 5))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pids=() pid cwd proc
    # The deployment's processes all work in its directory; the simulator's pid is in its pid list.
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        cwd="$(readlink "$proc/cwd" 2>/dev/null || true)"
        case "$cwd" in "$WORK/deployment"*) pids+=("$pid") ;; esac
    done
    if [ -f "$WORK/deployment/pids" ]; then
        while read -r pid; do
            if grep -qa airflow_provider_ltx2.simulator "/proc/$pid/cmdline" 2>/dev/null; then pids+=("$pid"); fi
        done <"$WORK/deployment/pids"
    fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do stop_pid "$pid" 20; done
    if [ -n "$REDIS_PID" ]; then stop_pid "$REDIS_PID" 10; fi
    if [ -n "$PG_PID" ]; then stop_pid "$PG_PID" 30 INT; fi  # SIGINT: PostgreSQL's fast shutdown
    if [ "$status" = 0 ] && [ "${LTX2_E2E_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "e2e work directory kept: $WORK (components/*.log, airflow-home/logs, pg/postgres.log, redis/)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG_PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PG_PASSWORD="$(python -c 'import secrets; print(secrets.token_hex(16))')"
printf '%s\n' "$PG_PASSWORD" >"$WORK/pg/pwfile"
chmod 600 "$WORK/pg/pwfile"
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK/pg/pwfile"; fi
echo "== PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT, in $WORK/pg" >&2
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U airflow --pwfile="$WORK/pg/pwfile" --auth=scram-sha-256 \
    -E UTF8 --no-sync >"$WORK/pg/initdb.log" 2>&1 || { cat "$WORK/pg/initdb.log" >&2; exit 1; }
rm -f "$WORK/pg/pwfile"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -t 60 -o \
    "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $WORK/pg -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$WORK/pg/postgres.log" >&2; exit 1; }
PG_PID="$(head -n 1 "$WORK/pg/data/postmaster.pid")"
PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U airflow -d postgres -q \
    -c "CREATE DATABASE airflow"

TARGET=tests/e2e
if [ "$CELERY" = 1 ]; then
    TARGET=tests/e2e/test_celery.py
    mkdir -p "$WORK/redis"
    REDIS_PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    echo "== Redis ($(command -v redis-server)) on 127.0.0.1:$REDIS_PORT, in $WORK/redis" >&2
    # In memory only (no snapshots, no append-only file): the broker lives as long as this run.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --logfile "$WORK/redis/redis.log" \
        --daemonize no --save "" --appendonly no >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then break; fi
        kill -0 "$REDIS_PID" 2>/dev/null || { cat "$WORK/redis/redis.log" >&2; exit 1; }
        sleep 0.2
    done
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || { echo "Redis did not start" >&2; exit 1; }
    export LTX2_E2E_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi
# The tests named on the command line, or all of $TARGET.
for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then TARGET=""; break; fi
done

export LTX2_E2E_DATABASE_URL="postgresql+psycopg2://airflow:$PG_PASSWORD@127.0.0.1:$PG_PORT/airflow"
export LTX2_E2E_PG_BIN="$PG_BIN"
export LTX2_E2E_WORKDIR="$WORK/deployment"
echo "== pytest ${TARGET:-$*} (bound: ${LTX2_E2E_TIMEOUT:-40m})" >&2
# timeout(1) sends SIGTERM at the bound: the e2e conftest turns it into an interruption, so pytest still
# stops the deployment; the trap above catches whatever is left.
timeout --foreground --kill-after=60s "${LTX2_E2E_TIMEOUT:-40m}" python -m pytest $TARGET -q -rA --durations=0 "$@"
