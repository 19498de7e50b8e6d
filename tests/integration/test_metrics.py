"""The provider's metrics as a StatsD server receives them, from ``airflow dags test`` runs against the simulator."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ltx2 import metrics
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import example_dag_env
from tests.integration.test_dags import airflow

pytestmark = [pytest.mark.dags, pytest.mark.slow]

PREFIX = "airflow"


class StatsdServer:
    """A UDP socket on loopback that keeps every StatsD line it receives, read by a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)

    def _receive(self) -> None:
        while True:
            try:
                packet = self.sock.recv(65535)
            except TimeoutError:  # nothing buffered: done once asked to stop
                if self._stop.is_set():
                    return
                continue
            self.lines.extend(packet.decode(errors="replace").splitlines())  # a packet may carry several

    def __enter__(self) -> StatsdServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.collected()
        self.sock.close()

    def collected(self) -> list[str]:
        """Every ``ltx2.`` line received, once the socket's buffer is drained (call after the run)."""
        self._stop.set()
        self._thread.join(10)
        return [line for line in self.lines if line.startswith(f"{PREFIX}.ltx2.")]


@pytest.fixture
def statsd() -> Iterator[StatsdServer]:
    with StatsdServer() as server:
        yield server


def counted(name: str, times: int = 1) -> str:
    return f"{PREFIX}.{name}:{times}|c"


def timed(name: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(PREFIX)}\.{re.escape(name)}:\d+(\.\d+)?\|ms")


@pytest.mark.parametrize(
    ("simulated", "expected", "absent"),
    [
        pytest.param(
            {},
            [counted(metrics.PAID_SUBMITS), timed(metrics.GENERATION_SECONDS), timed(metrics.DOWNLOAD_SECONDS)],
            [metrics.THROTTLED_SUBMITS, metrics.FAILURES],
            id="success",
        ),
        pytest.param(
            {"faults": [{"on": "submit", "status": 429, "count": 1, "retry_after": "1"}]},
            [counted(metrics.THROTTLED_SUBMITS), counted(metrics.PAID_SUBMITS), timed(metrics.DOWNLOAD_SECONDS)],
            [metrics.FAILURES],
            id="throttled-first-submit",
        ),
        pytest.param(
            {"outcome": "fail"},
            [counted(metrics.PAID_SUBMITS), counted(f"{metrics.FAILURES}.Ltx2GenerationFailed")],
            [metrics.DOWNLOAD_SECONDS, metrics.GENERATION_SECONDS],
            id="generation-failed",
        ),
    ],
)
def test_a_dag_run_sends_the_provider_metrics_to_statsd(
    simulator: SimulatorProcess,
    airflow_home: Path,
    tmp_path: Path,
    statsd: StatsdServer,
    simulated: dict[str, Any],
    expected: list[str | re.Pattern[str]],
    absent: list[str],
) -> None:
    if simulated:
        simulator.configure(**simulated)
    # A capped key: the spend guard reserves before the submit and reports the day's spend as a gauge.
    capped = {
        **json.loads(simulator.connection()),
        "extra": {"daily_budget_usd": "5", "spend_ledger_uri": f"file://{tmp_path}/ledger"},
    }
    done = airflow(
        airflow_home,
        "dags",
        "test",
        "example_ltx2_single_video",
        **example_dag_env(simulator, tmp_path, AIRFLOW_CONN_LTX2_DEFAULT=json.dumps(capped)),
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(statsd.port),
        AIRFLOW__METRICS__STATSD_PREFIX=PREFIX,
    )
    log = done.stdout + done.stderr
    assert ("state=failed" if "outcome" in simulated else "state=success") in log, log[-5000:]

    received = statsd.collected()
    for metric in expected:
        if isinstance(metric, str):
            assert received.count(metric) == 1, f"{metric} once in {received}"
        else:
            assert sum(bool(metric.fullmatch(line)) for line in received) == 1, f"{metric.pattern} in {received}"
    for name in absent:
        assert not [line for line in received if line.startswith(f"{PREFIX}.{name}")], received
    assert simulator.stats()["jobs"] == 1, "one paid submit, as counted"
    # Once per reservation (a task woken for capacity reserves again, after freeing its first one): USD 0.60.
    gauged = [line for line in received if line.startswith(f"{PREFIX}.{metrics.SPEND_USD}:")]
    assert gauged and set(gauged) == {f"{PREFIX}.{metrics.SPEND_USD}:0.6|g"}, received
    (settled,) = (tmp_path / "ledger").rglob("*.json")
    assert settled.name.endswith("_r60_s60_settled.json")
