"""Shared fixtures: a real simulator on loopback, and an Airflow home with a migrated metadata DB."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Airflow reads its configuration at import time: point it at a private home before anything imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ltx2-airflow-home-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "true")

import pytest  # noqa: E402

from airflow_provider_ltx2.simulator.process import SimulatorProcess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "test-key-5f0c1e9a7b"  # distinctive, so a leak is easy to find in any log or table
FAST = {"queue_seconds": 0.2, "processing_seconds": 0.3}


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(key=KEY) as sim:
        yield sim


@pytest.fixture
def simulator(simulator_process: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> SimulatorProcess:
    """A reset simulator with fast jobs, and ``ltx2_default`` pointing at it."""
    simulator_process.reset()
    simulator_process.configure(**FAST)
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", simulator_process.connection())
    return simulator_process


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """An Airflow home with a migrated SQLite metadata DB, for ``airflow`` CLI subprocesses."""
    home = Path(tempfile.mkdtemp(prefix="ltx2-dags-test-"))
    env = airflow_env(home)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    return home


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "LTX2_", "PYTEST")) or key == "AIRFLOW_CONN_LTX2_DEFAULT"
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        **extra,
    )
    return env
