#!/usr/bin/env bash
# Run the whole test suite (unit, simulator integration, `airflow dags test` of the example DAGs), the slow tests
# included, on every core (pytest-xdist). Extra arguments go to pytest and come last, so they win:
# `scripts/test.sh -n 0` runs serially, `scripts/test.sh -m "not slow"` skips the slow tests,
# `scripts/test.sh tests/unit` runs one folder.
source "$(dirname "$0")/bootstrap.sh"
# The proxy tests (tests/integration/test_network.py) run a real tinyproxy. Debian's tinyproxy-bin is its
# executable alone: no system service is set up or started. Without root it is left to the tests, which skip
# (fail in CI).
if ! command -v tinyproxy >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tinyproxy-bin; } \
        >/dev/null || echo "Could not install tinyproxy: the proxy tests will say so." >&2
fi
# -n auto: one worker per core. --dist loadfile: a module runs whole on one worker, so its module fixtures (such
# as the finished `airflow dags test` runs the plugin's tests share) are made once; --no-loadscope-reorder keeps
# the order tests/conftest.py gives the modules, the costliest first.
python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder "$@"
