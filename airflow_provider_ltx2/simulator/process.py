"""Run the simulator in a child process on a free loopback port: for tests, the demo and benchmarks.

A DAG author can use it too, to test DAGs against a gateway that costs nothing::

    with SimulatorProcess(key="test-key") as sim:
        os.environ["AIRFLOW_CONN_LTX2_DEFAULT"] = sim.connection()
        ...

With ``tls_cert`` and ``tls_key`` it serves https (``base_url`` then says so); its own control calls
trust exactly that certificate, while clients under test need the CA that signed it.
"""

from __future__ import annotations

import json
import os
import select
import ssl
import subprocess
import sys
import tempfile
import time
from typing import IO, Any
from urllib.request import Request, urlopen

from airflow_provider_ltx2.simulator import DEFAULT_KEY


class SimulatorProcess:
    """A started simulator; ``base_url`` is where it listens. Stopped by pid on ``stop()`` / context exit."""

    def __init__(
        self,
        *args: str,
        key: str | None = DEFAULT_KEY,
        port: int = 0,
        env: dict[str, str] | None = None,
        start_timeout: float = 20.0,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        """``args`` go to the simulator's command line; ``key=None`` leaves the key to ``args`` or the env."""
        self.key = key or DEFAULT_KEY
        key_args = ["--key", key] if key else []
        tls_args = []
        self._control_tls: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            tls_args = ["--tls-cert", os.fspath(tls_cert), "--tls-key", os.fspath(tls_key)]
            # Pin the certificate itself: it is our own child, whatever CA (or none) signed it and whatever
            # names it holds (the control calls go to the address it printed).
            self._control_tls = ssl.create_default_context(cafile=os.fspath(tls_cert))
            self._control_tls.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            self._control_tls.check_hostname = False
        elif tls_cert is not None or tls_key is not None:
            raise ValueError("tls_cert and tls_key go together")
        self._command = [
            *(sys.executable, "-m", "airflow_provider_ltx2.simulator", "--port", str(port)),
            *key_args,
            *tls_args,
            *args,
        ]
        self._env = env
        self._start_timeout = start_timeout
        self._stderr: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read after it stops
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self) -> SimulatorProcess:
        self.process = subprocess.Popen(self._command, stdout=subprocess.PIPE, stderr=self._stderr, env=self._env)
        printed = self._read_until_listening()
        listening = [line.strip() for line in printed.split("\n")[:-1] if " listening on " in line]
        if not listening:
            self.stop()
            raise RuntimeError(f"The LTX-2 simulator did not start: {printed!r} {self.errors()}")
        self.base_url = listening[0].rsplit(" ", 1)[1]
        return self

    def _read_until_listening(self) -> str:
        """Its stdout up to the whole "listening on" line (or EOF, or the timeout).

        Lines before it are skipped: Airflow, imported by the provider's modules, may log one first.
        """
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + self._start_timeout
        printed = b""
        while not any(b" listening on " in line for line in printed.split(b"\n")[:-1]):  # whole lines only
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            printed += chunk
        return printed.decode(errors="replace")

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
        with urlopen(request, timeout=10, context=self._control_tls) as reply:
            return dict(json.loads(reply.read()))

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change timings, outcome, faults or limits (``max_concurrent_jobs``, ``rate_limit_per_minute``)."""
        return self._control("config", config)

    def reset(self) -> dict[str, Any]:
        return self._control("reset", {})

    def stats(self) -> dict[str, Any]:
        """Calls received, 429s answered by the limits (``throttled``) and each job's ``job_times``."""
        return self._control("stats")
