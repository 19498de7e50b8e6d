#!/usr/bin/env bash
# Run the whole test suite (unit, simulator integration, `airflow dags test` of the example DAGs).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not dags"` for the quick part only.
source "$(dirname "$0")/bootstrap.sh"
python -m pytest -q "$@"
