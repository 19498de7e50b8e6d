#!/usr/bin/env bash
# The provider in Airflow's UI, seen by a real browser: the `ltx2` connection form, the "LTX-2 video" extra
# link, and the plugin's "LTX-2 video" tab and "LTX-2 videos" gallery (playing, seeking, access checks),
# checked in headless Chromium (tests/browser); screenshots go to docs/screenshots/.
#
# Installs what it needs when missing: Debian's `chromium` (apt-get, needs root) and the `playwright`
# package in the project's virtualenv (its own browser download is not used). Extra arguments go to
# pytest. LTX2_BROWSER_TEST_TIMEOUT bounds the test run in seconds (default 600).
source "$(dirname "$0")/bootstrap.sh"

CHROMIUM="${LTX2_CHROMIUM:-/usr/bin/chromium}"
TIME_LIMIT="${LTX2_BROWSER_TEST_TIMEOUT:-600}"

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "Chromium not found at $CHROMIUM: install Debian's chromium package (apt-get install chromium) as root." >&2
        exit 1
    fi
    echo "Installing chromium with apt-get..." >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
if ! python -c "import playwright.sync_api" 2>/dev/null; then
    echo "Installing playwright into $VENV..." >&2
    python -m pip install -q playwright
fi

RUN_DIR="$(mktemp -d -t ltx2-browser-XXXXXX)"
export LTX2_BROWSER_RUN_DIR="$RUN_DIR" LTX2_BROWSER_TESTS=1 LTX2_CHROMIUM="$CHROMIUM"

# The tests record every process they start in $RUN_DIR/pids (most lead their own process group) and
# stop them on teardown; this catches whatever is left if pytest itself was killed.
stop_recorded() {
    local status=$? pid
    if [ -f "$RUN_DIR/pids" ]; then
        while read -r pid; do
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        done <"$RUN_DIR/pids"
        sleep 1
        while read -r pid; do
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        done <"$RUN_DIR/pids"
    fi
    echo "Logs (and captures of failed pages, under failures/): $RUN_DIR" >&2
    exit "$status"
}
trap stop_recorded EXIT

# pytest runs under `timeout` (SIGTERM at the limit, SIGKILL 30 s later); on SIGTERM it tears down
# what it started. A signal to this script is passed on the same way.
timeout --kill-after=30 "$TIME_LIMIT" python -m pytest tests/browser -q "$@" &
TEST_PID=$!
trap 'kill -TERM "$TEST_PID" 2>/dev/null || true' INT TERM
while :; do
    status=0
    wait "$TEST_PID" || status=$?
    kill -0 "$TEST_PID" 2>/dev/null || break  # still running: wait was interrupted by a signal
done
if [ "$status" -eq 124 ]; then
    echo "The browser tests did not finish within ${TIME_LIMIT}s." >&2
fi
exit "$status"
