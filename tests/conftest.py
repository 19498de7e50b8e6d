"""Shared fixtures: a real simulator on loopback, a throwaway CA for https, a migrated Airflow home."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Airflow reads its configuration at import time: point it at a private home before anything imports it. Each
# test process has its own, removed when it ends: every pytest-xdist worker too (a home that another process's
# conftest made reaches a worker through the environment, and is not shared). An AIRFLOW_HOME set by hand is used.
_HOME_MADE_BY = "LTX2_TEST_AIRFLOW_HOME_PID"  # LTX2_*: not passed on to the `airflow` subprocesses (airflow_env)
if "AIRFLOW_HOME" not in os.environ or os.environ.get(_HOME_MADE_BY, str(os.getpid())) != str(os.getpid()):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="ltx2-airflow-home-")
    os.environ[_HOME_MADE_BY] = str(os.getpid())
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "true")
# No scheduler in process: a batch trigger need not hold its event back (triggers.resume_guard_seconds).
os.environ.setdefault("AIRFLOW__LTX2__RESUME_GUARD_SECONDS", "0")

import pytest  # noqa: E402

from airflow_provider_ltx2.api.jobs import Job, JobState, JobStatus  # noqa: E402
from airflow_provider_ltx2.api.replies import Reply  # noqa: E402
from airflow_provider_ltx2.simulator.process import SimulatorProcess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "test-key-5f0c1e9a7b"  # distinctive, so a leak is easy to find in any log or table
# The spend guard's connection extras, as DESIGN.md names them (the form, the view and the docs use these).
SPEND_EXTRAS = ("daily_budget_usd", "monthly_budget_usd", "spend_ledger_uri", "spend_ledger_conn_id")
# Jobs of 0.15 s (queued 0.05 s, then running): most tests wait for several, one after another.
FAST = {"queue_seconds": 0.05, "processing_seconds": 0.1}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``scripts/test.sh``: ``--dist loadfile --no-loadscope-reorder``) every module runs whole
    on one worker, in this order: the costliest first, by their ``airflow dags test`` runs (marker ``dags``) and
    then their other slow tests, so that the quick modules at the end even the workers out. Every worker orders
    alike; a serial run keeps the files' order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    cost: dict[Path, int] = {}
    for item in items:
        weight = 10 if item.get_closest_marker("dags") else 1 if item.get_closest_marker("slow") else 0
        cost[item.path] = cost.get(item.path, 0) + weight
    items.sort(key=lambda item: -cost[item.path])  # stable: a module's tests stay together, in their order


# Tables a module prints when it finishes (the fault matrix): a pytest-xdist worker has no terminal, so it hands
# them over in ``config.workeroutput[WORKER_TABLES]`` as (title, lines), and the controller prints them at the end.
WORKER_TABLES = "ltx2_tables"
_tables_from_workers: list[tuple[str, list[str]]] = []


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: called in the controller as each worker ends
def pytest_testnodedown(node: Any, error: Any) -> None:
    _tables_from_workers.extend(getattr(node, "workeroutput", {}).get(WORKER_TABLES, []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, lines in _tables_from_workers:
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


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


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway CA and of a server certificate it signed for 127.0.0.1 and localhost."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="session")
def throwaway_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made for this test session and a server certificate (SAN IP 127.0.0.1, DNS localhost), valid a day.

    Serve with ``server_cert``/``server_key``; a client trusts the server with ``verify=ca_cert`` only.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ltx2 test CA")])

    def key_usage(*allowed: str) -> x509.KeyUsage:
        names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
        names += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{name: name in allowed for name in names})

    def certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )

    ca = (
        certificate(ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage("key_cert_sign", "crl_sign"), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), server_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage("digital_signature"), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """An Airflow home with a migrated SQLite metadata DB, for ``airflow`` CLI subprocesses; removed at the end."""
    with tempfile.TemporaryDirectory(prefix="ltx2-dags-test-") as folder:
        home = Path(folder)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=airflow_env(home),
            check=True,
            capture_output=True,
            timeout=300,
        )
        yield home


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
        AIRFLOW__LTX2__RESUME_GUARD_SECONDS="0",  # `dags test` runs triggers inline: no scheduler to race
    )
    env.update(extra)  # may name another dags folder
    return env


# Run in a fresh interpreter, as the dag-processor imports a DAG file: argv is the file, the DAG id, the task
# whose kind and options to report (or "").
_IMPORT_CHECK = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get(sys.argv[2])
chain = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else None
task = dag.get_task(sys.argv[3]) if dag and sys.argv[3] else None
detail = task and {"type": type(task).__name__, "options": task.options, "multiple": task.multiple}
print(json.dumps({"errors": bag.import_errors, "dags": list(bag.dag_ids), "chain": chain, "detail": detail}))
"""


def import_example(dag_id: str, home: Path, detail_of: str = "") -> dict[str, Any]:
    """Import ``example_dags/<dag_id>.py`` as the dag-processor does: its import errors, the DAG ids it defines,
    its tasks' upstreams, and the kind and options of the task ``detail_of`` (a human-in-the-loop task)."""
    dag_file = REPO / "example_dags" / f"{dag_id}.py"
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, str(dag_file), dag_id, detail_of],
        env=airflow_env(home),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def example_dag_env(simulator: SimulatorProcess, output_dir: Path, **extra: str) -> dict[str, str]:
    """What the example DAGs read (connection, image, output folder, fast polls), for ``airflow dags test``."""
    return {
        "AIRFLOW_CONN_LTX2_DEFAULT": simulator.connection(),
        "LTX2_EXAMPLE_OUTPUT_DIR": str(output_dir),
        "LTX2_EXAMPLE_POLL_INTERVAL": "0.5",
        "LTX2_EXAMPLE_IMAGE_URL": f"{simulator.base_url}/files/sample.jpg",
        "LTX2_EXAMPLE_IMAGE_BASE_URL": f"{simulator.base_url}/files/",
        **extra,
    }


# ------------------------------------------------------------------------------------------ S3 (moto)

S3_BUCKET = "ltx2-test-videos"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server in its own process on loopback (a real S3 API: signatures, ACLs), stopped by pid.

    It binds a port the OS picks (``-p 0``) and says which in its log: no other process, another pytest-xdist
    worker's moto included, can take that port between a probe and the bind.
    """
    pytest.importorskip("moto", reason="the S3 tests need the test extra (boto3, s3fs, moto)")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"], stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty private bucket ``S3_BUCKET`` (a boto3 client on it), and the ``ltx2_s3`` connection to it."""
    boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3, s3fs, moto)")
    pytest.importorskip("s3fs")
    pytest.importorskip("airflow.providers.amazon")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_S3", json.dumps(connection))
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=S3_BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []):
        client.delete_object(Bucket=S3_BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=S3_BUCKET)


def bucket_keys(client: Any) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []))


@dataclass(frozen=True)
class ImageFolder:
    """A folder served over http on loopback, as a CDN serves product photos: replace a file, same URL."""

    path: Path
    base_url: str

    def put(self, name: str, content: bytes) -> str:
        (self.path / name).write_bytes(content)
        return f"{self.base_url}/{name}"


@pytest.fixture
def image_folder(tmp_path: Path) -> Iterator[ImageFolder]:
    import http.server
    import threading

    folder = tmp_path / "images"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ImageFolder(folder, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()
    thread.join(5)


# ------------------------------------------------------------------------------------------ running a task


@dataclass
class Deferrals:
    """What ``run_deferrable`` saw: each trigger's class name, its serialized kwargs and the event it emitted."""

    triggers: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)


def run_deferrable(operator: Any, context: dict[str, Any], seen: Deferrals | None = None, limit: int = 50) -> Any:
    """Run a task as Airflow runs a deferrable one: ``execute``, then for every deferral the trigger rebuilt
    from ``serialize()`` (as the triggerer does, so kwargs must round-trip and hold no key) to its first
    event, then the method it named, until the task returns or raises."""
    import asyncio
    import importlib

    from airflow.providers.common.compat.sdk import TaskDeferred

    seen = seen if seen is not None else Deferrals()
    call: Any = functools.partial(operator.execute, context)
    for _ in range(limit):
        try:
            return call()
        except TaskDeferred as deferred:
            classpath, kwargs = deferred.trigger.serialize()
            assert KEY not in repr(kwargs), "the key must never be in trigger kwargs"
            module, name = classpath.rsplit(".", 1)
            trigger = getattr(importlib.import_module(module), name)(**kwargs)

            async def first_event(trigger: Any = trigger) -> dict[str, Any]:
                async for event in trigger.run():
                    return dict(event.payload)
                raise AssertionError(f"{type(trigger).__name__} ended without an event")

            event = asyncio.run(first_event())
            assert KEY not in repr(event), "the key must never be in a trigger event"
            seen.triggers.append(name)
            seen.events.append(event)
            seen.kwargs.append(dict(kwargs))
            method = getattr(operator, deferred.method_name)
            call = functools.partial(method, context, event=event, **(deferred.kwargs or {}))
    raise AssertionError(f"the task deferred more than {limit} times")


# Statuses and jobs as the gateway reports them, shared by the tests of waits and events.
VIDEO_URL = "https://pub-1234.r2.dev/out/output.mp4"
LEGACY_JOB = Job("ltx2-v-7a3b")
UNIVERSAL_JOB = Job("ltx-2-video-api-581_019d", "https://gateway.pixazo.ai/v2/requests/status/ltx-2-video-api-581_019d")
QUEUED = JobStatus(JobState.QUEUED, raw_status="IN_QUEUE")
RUNNING = JobStatus(JobState.RUNNING, raw_status="IN_PROGRESS")
SUCCEEDED = JobStatus(JobState.SUCCEEDED, raw_status="COMPLETED", video_url=VIDEO_URL)
FAILED = JobStatus(JobState.FAILED, raw_status="FAILED", error="Content policy violation")
REJECTED = JobStatus(JobState.FAILED, error="Image could not be decoded", input_rejected=True)
CLOCK_START = 1_750_000_000.0


def unknown_status(raw: str = "WARMING_UP") -> JobStatus:
    return JobStatus(JobState.UNKNOWN, raw_status=raw)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Pin ``time.time`` at ``CLOCK_START``; set ``clock[0]`` to move it."""
    now = [CLOCK_START]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


# ------------------------------------------------------------------------------------------ gateway replies

# The gateway, a key and a reply, shared by the unit tests of the api package.
BASE = "https://gateway.pixazo.ai"
SECRET = "sk-5f0c1e9a7b-secret"
APIM_401 = {
    "statusCode": 401,
    "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
    "subscription.",
}


def reply(status: int, body: Any = None, *, text: str | None = None, retry_after: str | None = None) -> Reply:
    """A ``Reply`` with ``body`` as JSON, or with the raw ``text`` given."""
    return Reply(status, text if text is not None else json.dumps(body), retry_after)


# ------------------------------------------------------------------------------------------ hostile peers


@dataclass(frozen=True)
class Heard:
    """One request a loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: str


Answer = tuple[int, dict[str, str], bytes]


class LoopbackServer:
    """A real HTTP server on loopback whose every answer a test scripts (``answer(heard)``); keeps what it heard.

    ``answer`` returns ``(status, headers, body)``, or an iterable of the raw response's pieces, written as they
    come (a host that drips).

    For peers the simulator will not play: a gateway that echoes secrets, a host that redirects, drips or
    records where a key was sent.
    """

    def __init__(self, answer: Any) -> None:
        import http.server
        import threading

        heard = self.heard = []  # type: list[Heard]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                request = Heard(self.command, self.path, dict(self.headers), self.rfile.read(size).decode())
                heard.append(request)
                answered = answer(request)
                if not isinstance(answered, tuple):  # the raw response, written piece by piece as it comes
                    self.close_connection = True  # its end is where the body ends
                    for piece in answered:
                        self.wfile.write(piece)
                        self.wfile.flush()
                    return
                status, headers, body = answered
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def loopback_server() -> Iterator[Any]:
    """Start ``LoopbackServer(answer)`` servers; all are stopped at the end of the test."""
    started: list[LoopbackServer] = []

    def start(answer: Any) -> LoopbackServer:
        started.append(LoopbackServer(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def escaped_json(value: Any, escaping: str) -> bytes:
    """``value`` as JSON the way a gateway's library writes it: Go's (``\\u0026``), PHP's (``\\/``), ASCII, UTF-8."""
    text = json.dumps(value, ensure_ascii=escaping != "utf-8")
    if escaping == "go":
        text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    if escaping == "php":
        text = text.replace("/", "\\/")
    return text.encode()


ESCAPINGS = ("go", "php", "ascii", "utf-8")


class HostileGateway:
    """A gateway on loopback that accepts every submit and echoes what it got (the image URL as sent, the key) in
    its replies, escaped as ``escaping`` says: in the submit's reply, and in a failed status for every poll.

    ``submit_status``: 200 (accepted, with the echo in ``message``) or an error status (the echo in ``error``).
    """

    def __init__(self, start: Any, escaping: str, submit_status: int = 200) -> None:
        self.escaping = escaping
        self.submit_status = submit_status
        self.server = start(self._answer)
        self.base_url = self.server.base_url

    def connection(self) -> str:
        return json.dumps({"conn_type": "ltx2", "host": self.base_url, "password": KEY})

    @property
    def submits(self) -> list[Heard]:
        return [heard for heard in self.server.heard if heard.path.endswith("-request")]

    def sent_image_urls(self) -> list[str]:
        return [json.loads(heard.body)["image_url"] for heard in self.submits]

    def _echo(self) -> str:
        image_url = self.sent_image_urls()[-1] if self.submits else ""
        return f"could not fetch {image_url} with key {KEY}"

    def _answer(self, heard: Heard) -> Answer:
        json_type = {"Content-Type": "application/json"}
        if heard.path.endswith("-request"):
            if self.submit_status != 200:
                body = {"error": self._echo(), "echo": json.loads(heard.body)}
                return self.submit_status, json_type, escaped_json(body, self.escaping)
            accepted = {"status": "IN_QUEUE", "request_id": f"hostile-{len(self.submits)}", "message": self._echo()}
            return 200, json_type, escaped_json(accepted, self.escaping)
        return 200, json_type, escaped_json({"status": "FAILED", "error": self._echo()}, self.escaping)
