#!/usr/bin/env bash
# Run the example DAG end to end (deferrable) against the local simulator and print where the MP4 is.
# With AIRFLOW_CONN_LTX2_DEFAULT set to a real connection, the real gateway is used instead.
source "$(dirname "$0")/bootstrap.sh"
python scripts/demo.py "$@"
