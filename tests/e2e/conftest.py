"""The end-to-end session: one real Airflow deployment (see ``deployment.py``) shared by every e2e test.

It needs a PostgreSQL server, which ``scripts/e2e.sh`` starts and announces through
``LTX2_E2E_DATABASE_URL`` (and ``LTX2_E2E_PG_BIN``, where ``pg_dump`` is). Without them, as in the
default test suite, the e2e tests are skipped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.deployment import Deployment

DEFAULT_TIMINGS = {"queue_seconds": 1, "processing_seconds": 20}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    database_url = os.environ.get("LTX2_E2E_DATABASE_URL")
    if not database_url:
        pytest.skip("the end-to-end tests need PostgreSQL: run scripts/e2e.sh")
    # timeout(1) ends the run with SIGTERM: make it an interruption, so the deployment is still stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = os.environ.get("LTX2_E2E_WORKDIR")
    root = Path(workdir) if workdir else tmp_path_factory.mktemp("e2e")
    deployed = Deployment(database_url, Path(os.environ.get("LTX2_E2E_PG_BIN", "/usr/bin")), root)
    try:
        deployed.up()
    except BaseException:
        print(deployed.diagnostics())
        deployed.stop_all()
        raise
    yield deployed
    deployed.stop_all()


@pytest.fixture
def e2e(deployment: Deployment) -> Deployment:
    """The deployment with every component up, one triggerer, and a reset simulator (no jobs, zero counters)."""
    for name in [name for name in deployment.components if name.startswith("triggerer-")]:
        deployment.stop(name)  # left over by a failed test
    if "triggerer" not in deployment.components:
        deployment.start_triggerer("triggerer")
    for name in deployment.components:
        deployment.check_alive(name)
    assert deployment.sim is not None
    deployment.sim.reset()
    deployment.sim.configure(**DEFAULT_TIMINGS)
    return deployment
