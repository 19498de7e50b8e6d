#!/usr/bin/env bash
# Run the whole test suite (unit, simulator integration, `airflow dags test` of the example DAGs).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not dags"` for the quick part only.
source "$(dirname "$0")/bootstrap.sh"
# The proxy tests (tests/test_network.py) run a real tinyproxy. Debian's tinyproxy-bin is its executable
# alone: no system service is set up or started. Without root it is left to the tests, which skip (fail in CI).
if ! command -v tinyproxy >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tinyproxy-bin; } \
        >/dev/null || echo "Could not install tinyproxy: the proxy tests will say so." >&2
fi
python -m pytest -q "$@"
