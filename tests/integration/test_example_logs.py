"""A successful run of an example DAG logs no error: what a user copies must not teach them to ignore ERROR lines.

Each of these DAGs reads a mapped generation's results in a downstream task. On Airflow 3 those results are a
lazy sequence, and a plain ``for`` loop over it asks for one item past the end, which the task SDK logs as an
ERROR "XCom not found" in every run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import S3_BUCKET, airflow_env, example_dag_env

pytestmark = [pytest.mark.dags, pytest.mark.slow]

READS_MAPPED_RESULTS = ["example_ltx2_batch_from_csv", "example_ltx2_taskflow", "example_ltx2_to_object_storage"]

# A record at ERROR or CRITICAL level as Airflow prints it: 3.x's console ("[error    ]"), 2.11's
# ("{file.py:12} ERROR - "), or a JSON task log file ("level": "error").
ERROR_RECORD = re.compile(r"\[(error|critical) *\]| (ERROR|CRITICAL) - |\"level\": ?\"(error|critical)\"")


def task_log_files(home: Path, dag_id: str, since: float) -> str:
    """The task log files the run wrote, if this Airflow writes any under ``dags test`` (3.3 prints them only)."""
    written = [
        path
        for path in sorted((home / "logs").rglob("*"))
        if path.is_file() and f"dag_id={dag_id}" in str(path) and path.stat().st_mtime >= since
    ]
    return "".join(path.read_text(errors="replace") for path in written)


@pytest.mark.parametrize("dag_id", READS_MAPPED_RESULTS)
def test_example_run_logs_no_error(
    simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path, request: pytest.FixtureRequest, dag_id: str
) -> None:
    env = example_dag_env(simulator, tmp_path)
    if dag_id == "example_ltx2_to_object_storage":
        request.getfixturevalue("bucket")  # moto's S3 on loopback and the ltx2_s3 connection to it
        env.update(
            AIRFLOW_CONN_LTX2_S3=os.environ["AIRFLOW_CONN_LTX2_S3"],
            LTX2_EXAMPLE_BUCKET=S3_BUCKET,
            LTX2_EXAMPLE_STORAGE_CONN_ID="ltx2_s3",
        )
    started = time.time() - 1  # file times may be coarser than the clock
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id],
        env=airflow_env(airflow_home, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr + task_log_files(airflow_home, dag_id, started)
    assert done.returncode == 0 and "state=success" in log, log[-5000:]
    assert simulator.stats()["submits"] > 0, "the run made no video: nothing downstream read any results"

    errors = [line for line in log.splitlines() if "XCom not found" in line or ERROR_RECORD.search(line)]
    assert errors == [], "\n".join(errors)
