"""Run the simulator in a child process on a free loopback port: for tests, the demo and benchmarks.

A DAG author can use it too, to test DAGs against a gateway that costs nothing::

    with SimulatorProcess(key="test-key") as sim:
        os.environ["AIRFLOW_CONN_LTX2_DEFAULT"] = sim.connection()
        ...
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from typing import IO, Any
from urllib.request import Request, urlopen

DEFAULT_KEY = "sim-key"


class SimulatorProcess:
    """A started simulator; ``base_url`` is where it listens. Stopped by pid on ``stop()`` / context exit."""

    def __init__(
        self,
        *args: str,
        key: str | None = DEFAULT_KEY,
        port: int = 0,
        env: dict[str, str] | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        """``args`` go to the simulator's command line; ``key=None`` leaves the key to ``args`` or the env."""
        self.key = key or DEFAULT_KEY
        key_args = ["--key", key] if key else []
        self._command = [sys.executable, "-m", "airflow_provider_ltx2.simulator", "--port", str(port), *key_args, *args]
        self._env = env
        self._start_timeout = start_timeout
        self._stderr: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read after it stops
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> SimulatorProcess:
        self.process = subprocess.Popen(
            self._command, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=self._env
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], self._start_timeout)
        line = self.process.stdout.readline().strip() if ready else ""
        if " listening on " not in line:
            self.stop()
            raise RuntimeError(f"The LTX-2 simulator did not start: {line!r} {self.errors()}")
        self.base_url = line.rsplit(" ", 1)[1]
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def errors(self) -> str:
        """What the simulator wrote to stderr (it stays silent unless something is wrong)."""
        self._stderr.seek(0)
        return self._stderr.read()

    def connection(self) -> str:
        """The ``ltx2`` connection pointing at this simulator, as JSON for ``AIRFLOW_CONN_*``."""
        return json.dumps({"conn_type": "ltx2", "host": self.base_url, "password": self.key})

    def _control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = Request(f"{self.base_url}/_sim/{path}", data=data, headers={"Content-Type": "application/json"})
        with urlopen(request, timeout=10) as reply:
            return dict(json.loads(reply.read()))

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change timings, outcome or faults for the jobs submitted next (see the README)."""
        return self._control("config", config)

    def reset(self) -> dict[str, Any]:
        return self._control("reset", {})

    def stats(self) -> dict[str, Any]:
        """How many submits, polls and downloads the simulator received."""
        return self._control("stats")
