"""The end-to-end sessions: real Airflow deployments (see ``deployment.py``) shared by the e2e tests.

They need a PostgreSQL server, which ``scripts/e2e.sh`` starts and announces through
``LTX2_E2E_DATABASE_URL`` (and ``LTX2_E2E_PG_BIN``, where ``pg_dump`` is); the Celery deployment also
needs the Redis broker of ``scripts/e2e.sh --celery`` (``LTX2_E2E_REDIS_URL``). Without them, as in the
default test suite, the e2e tests are skipped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.deployment import BATCH_PARALLELISM, CELERY_WORKERS, GATEWAY_SLOTS, PARALLELISM, Deployment

DEFAULT_TIMINGS = {"queue_seconds": 1, "processing_seconds": 20}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _deploy(tmp_path_factory: pytest.TempPathFactory, broker_url: str | None = None) -> Iterator[Deployment]:
    database_url = os.environ.get("LTX2_E2E_DATABASE_URL")
    if not database_url:
        pytest.skip("the end-to-end tests need PostgreSQL: run scripts/e2e.sh")
    # timeout(1) ends the run with SIGTERM: make it an interruption, so the deployment is still stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = os.environ.get("LTX2_E2E_WORKDIR")
    root = Path(workdir) if workdir else tmp_path_factory.mktemp("e2e")
    pg_bin = Path(os.environ.get("LTX2_E2E_PG_BIN", "/usr/bin"))
    yield from served(Deployment(database_url, pg_bin, root, broker_url=broker_url))


def served(deployed: Deployment) -> Iterator[Deployment]:
    """Bring ``deployed`` up for a fixture and stop it after; a failed start prints what went wrong."""
    try:
        deployed.up()
    except BaseException:
        print(deployed.diagnostics())
        deployed.stop_all()
        raise
    yield deployed
    deployed.stop_all()


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The LocalExecutor deployment."""
    yield from _deploy(tmp_path_factory)


@pytest.fixture(scope="session")
def celery_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The CeleryExecutor deployment: Redis broker, two workers, two triggerers."""
    broker_url = os.environ.get("LTX2_E2E_REDIS_URL")
    if not broker_url:
        pytest.skip("the CeleryExecutor tests need Redis: run scripts/e2e.sh --celery")
    yield from _deploy(tmp_path_factory, broker_url)


def _ready(deployment: Deployment) -> Deployment:
    """Every component alive and a reset simulator (no jobs, zero counters, the default timings)."""
    for name in deployment.components:
        deployment.check_alive(name)
    assert deployment.sim is not None
    deployment.sim.reset()
    deployment.sim.configure(**DEFAULT_TIMINGS)
    return deployment


@pytest.fixture
def e2e(deployment: Deployment) -> Deployment:
    """The deployment with every component up, one triggerer, and a reset simulator (no jobs, zero counters)."""
    for name in [name for name in deployment.components if name.startswith("triggerer-")]:
        deployment.stop(name)  # left over by a failed test
    if "triggerer" not in deployment.components:
        deployment.start_triggerer("triggerer")
    return _ready(deployment)


@pytest.fixture(scope="module")
def limited(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment with a gateway of ``GATEWAY_SLOTS`` concurrent jobs (the simulator started with
    ``--max-concurrent-jobs``) and a scheduler with room for a whole batch; restored after the module."""
    deployment.parallelism = BATCH_PARALLELISM
    deployment.sim_args = ("--max-concurrent-jobs", str(GATEWAY_SLOTS))
    try:
        restart_scheduler_and_simulator(deployment)
        yield deployment
    finally:
        deployment.parallelism = PARALLELISM
        deployment.sim_args = ()
        restart_scheduler_and_simulator(deployment)


def jobs_of(e2e: Deployment, queue_seconds: float, processing_seconds: float) -> Deployment:
    """The (reset, ``limited``) deployment's simulator given jobs of these phases; its limit stays as started."""
    assert e2e.sim is not None
    config = e2e.sim.configure(queue_seconds=queue_seconds, processing_seconds=processing_seconds)
    assert config["max_concurrent_jobs"] == GATEWAY_SLOTS
    return e2e


def restart_scheduler_and_simulator(deployment: Deployment) -> None:
    """Both read their limits when they start: ``[core] parallelism``, ``--max-concurrent-jobs``."""
    if "scheduler" in deployment.components:
        deployment.stop("scheduler")
    deployment.start_scheduler()
    deployment.restart_simulator()


@pytest.fixture
def celery(celery_deployment: Deployment) -> Deployment:
    """The Celery deployment with both workers up (a test may have killed one) and a reset simulator."""
    for name in CELERY_WORKERS:
        if name not in celery_deployment.components:
            celery_deployment.start_celery_worker(name)
    return _ready(celery_deployment)
