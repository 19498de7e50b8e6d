"""A real Airflow deployment for the end-to-end tests, run as separate processes on this machine.

PostgreSQL (started by ``scripts/e2e.sh``) holds the metadata DB; this module migrates it and runs the
``api-server``, the ``scheduler`` (LocalExecutor), the ``dag-processor`` and one or more ``triggerer``
processes, plus the LTX-2 simulator standing in for the gateway. With a Redis broker URL it runs the
CeleryExecutor instead, configured as ``docker-compose.yaml`` does, with two ``airflow celery worker``
processes and two triggerers. Every process is started in its own
process group and stopped by its pid. Tests drive the deployment the way a user does: the REST API (and
the CLI), and look at the metadata DB, the logs and the simulator's counters to check what happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.e2e.hostname import WORKER_HOSTNAME_VARIABLE

REPO = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).resolve().parent / "dags"
# The subscription key: distinctive, so any copy of it in a log, a table or a dump is found by a plain search.
E2E_KEY = "ltx2-e2e-key-Qm7Zt4Wx9Kp2Lr8Vd3"
PARALLELISM = 2  # worker slots of the LocalExecutor: fewer than the generations the tests run at once
POLL_INTERVAL = 1.0  # seconds between status polls, for every DAG in the deployment
TRIGGERER_HEARTBEAT = 1  # [triggerer] job_heartbeat_sec
TRIGGERER_HEALTH_THRESHOLD = 8  # [triggerer] triggerer_health_check_threshold: takeover after this
# The Celery variant: two workers with two worker processes each, and Airflow's heartbeat check tightened
# so that a task whose worker died is failed (and retried) within seconds instead of five minutes.
CELERY_WORKERS = ("worker-a", "worker-b")
CELERY_CONCURRENCY = 2
HEARTBEAT_TIMEOUT = 20  # [scheduler] task_instance_heartbeat_timeout
# The batch tests' gateway: the simulator started with --max-concurrent-jobs, and a scheduler with room for
# every generation of a mapped batch at once, so the gateway and not Airflow holds a batch back.
GATEWAY_SLOTS = 2
BATCH_PARALLELISM = 12
FINISHED = ("success", "failed")
T = TypeVar("T")
Run = tuple[str, str]  # (dag_id, run_id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], T], timeout: float, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name: state, ppid, pgid, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _live_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def parent(pid: int) -> int | None:
    stat = _stat_fields(pid)
    return int(stat[1]) if stat else None


def descendants(root: int) -> list[int]:
    """The live processes below ``root`` in the process tree (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for pid in _live_pids():
        stat = _stat_fields(pid)
        if stat and stat[0] != "Z":
            children.setdefault(int(stat[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_titled(fragment: str, under: int) -> list[int]:
    """Pids below ``under`` whose command line (or ``setproctitle`` title) contains ``fragment``."""
    return [pid for pid in descendants(under) if fragment in process_title(pid)]


def process_group_members(pgid: int) -> list[int]:
    members = []
    for pid in _live_pids():
        stat = _stat_fields(pid)
        if stat and stat[0] != "Z" and int(stat[2]) == pgid:
            members.append(pid)
    return members


def plain(value: Any) -> Any:
    """Airflow's serialised form (``__var``/``__type`` or serde's ``__data__``) back to plain JSON values."""
    if isinstance(value, dict):
        if "__var" in value and "__type" in value:
            return plain(value["__var"])
        if "__data__" in value and "__classname__" in value:
            return plain(value["__data__"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@dataclass
class Component:
    """One started Airflow component (``airflow api-server``, ``scheduler``...): its process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    job_id: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(repr=False)
class Deployment:
    """Everything about the running deployment the tests need; see the module docstring."""

    database_url: str
    pg_bin: Path
    root: Path
    broker_url: str | None = None  # a Redis URL: run the CeleryExecutor with workers, not the LocalExecutor
    parallelism: int = PARALLELISM  # [core] parallelism; the scheduler reads it when it starts
    sim_args: tuple[str, ...] = ()  # more simulator options, e.g. its gateway limits; kept across restarts
    components: dict[str, Component] = field(default_factory=dict)
    trigger_snapshots: list[dict[str, Any]] = field(default_factory=list)
    killed: list[Component] = field(default_factory=list)
    _secrets: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Deployment({self.root}, components={sorted(self.components)})"

    def __post_init__(self) -> None:
        self.home = self.root / "airflow-home"
        self.dags = self.root / "dags"
        self.component_logs = self.root / "components"
        self.output_dir = self.root / "videos"
        self.sim_state = self.root / "simulator-state.json"
        self.lineage_events = self.root / "openlineage.jsonl"  # the OpenLineage provider's file transport
        for folder in (self.home, self.dags, self.component_logs, self.output_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sim_port = free_port()
        self.fernet_key = Fernet.generate_key().decode()
        self.sim: SimulatorProcess | None = None
        self._token: str | None = None
        self.http = requests.Session()

    # ------------------------------------------------------------------------------------- set-up

    def install_dags(self) -> None:
        """The example DAGs as shipped (with their data folder) plus the e2e-only DAGs, in one dags folder."""
        for source in (REPO / "example_dags", E2E_DAGS):
            for item in source.iterdir():
                if item.name == "__pycache__":
                    continue
                if item.is_dir():
                    shutil.copytree(item, self.dags / item.name, dirs_exist_ok=True)
                else:
                    shutil.copy2(item, self.dags / item.name)

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LTX2_", "PYTEST"))}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=self.database_url,
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(self.parallelism),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__FERNET_KEY=self.fernet_key,
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.api_port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=self._stable_secret("api"),
            AIRFLOW__API_AUTH__JWT_SECRET=self._stable_secret("jwt"),
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(self._stable_port("worker_logs")),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(self._stable_port("trigger_logs")),
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.5",
            AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC=str(TRIGGERER_HEARTBEAT),
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD=str(TRIGGERER_HEALTH_THRESHOLD),
            AIRFLOW_CONN_LTX2_DEFAULT=json.dumps({"conn_type": "ltx2", "host": self.sim_url, "password": E2E_KEY}),
            LTX2_EXAMPLE_OUTPUT_DIR=str(self.output_dir),
            LTX2_EXAMPLE_POLL_INTERVAL=str(POLL_INTERVAL),
            LTX2_EXAMPLE_IMAGE_URL=f"{self.sim_url}/files/sample.jpg",
            LTX2_EXAMPLE_IMAGE_BASE_URL=f"{self.sim_url}/files/",
            LTX2_EXAMPLE_DEFERRABLE="true",
            # OpenLineage with its default settings (it emits from a forked process), to a file the tests read
            AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
                {"type": "file", "log_file_path": str(self.lineage_events), "append": True}
            ),
            AIRFLOW__OPENLINEAGE__NAMESPACE="ltx2-e2e",
            PYTHONUNBUFFERED="1",
        )
        if self.broker_url:
            env.update(self._celery_env())
        env.update(extra)
        return env

    def _celery_env(self) -> dict[str, str]:
        """docker-compose.yaml's executor settings: Redis as the broker, the metadata DB as result backend."""
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": str(self.broker_url),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database_url.replace("+psycopg2", "", 1),
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "true",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        }

    def _stable_secret(self, name: str) -> str:
        return self._secrets.setdefault(name, secrets.token_hex(32))

    def _stable_port(self, name: str) -> int:
        return self._secrets.setdefault(f"port:{name}", free_port())

    def add_ltx2_connection(
        self, conn_id: str, extra: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Add an ``ltx2`` connection to the simulator with the CLI, as a user does, the key as its password."""
        more = ["--conn-extra", json.dumps(extra)] if extra else []
        added = ["connections", "add", conn_id, "--conn-type", "ltx2", "--conn-host", self.sim_url]
        return self.airflow(*added, "--conn-password", E2E_KEY, *more)

    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command against the deployment."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with (self.component_logs / "cli.log").open("a") as log:
            shown = " ".join(args).replace(E2E_KEY, "***")  # the command line may carry the key (connections add)
            log.write(f"$ airflow {shown}\n{done.stdout}{done.stderr}\n")
        if check and done.returncode != 0:
            raise RuntimeError(f"airflow {args[:2]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def start_simulator(self) -> SimulatorProcess:
        """The simulator on its fixed port, keeping jobs in a state file (so a restart keeps them)."""
        self.sim = SimulatorProcess(
            "--state-file",
            str(self.sim_state),
            "--queue-seconds",
            "1",
            "--processing-seconds",
            "20",
            *self.sim_args,
            key=E2E_KEY,
            port=self.sim_port,
        ).start()
        assert self.sim.process is not None
        self._record_pid(self.sim.process.pid)
        return self.sim

    def _record_pid(self, pid: int) -> None:
        """Every process started is listed, so scripts/e2e.sh can stop it even if pytest itself dies."""
        with (self.root / "pids").open("a") as pids:
            pids.write(f"{pid}\n")

    def restart_simulator(self) -> float:
        """Stop the simulator and start it again on the same port; return how long it was gone."""
        assert self.sim is not None
        started = time.monotonic()
        self.sim.stop()
        self.start_simulator()
        return time.monotonic() - started

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Component:
        """Start ``airflow <args>`` as component ``name``, in its own process group, logging to a file."""
        log_path = self.component_logs / f"{name}.log"
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(**(env or {})),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        component = Component(name, process, log_path, log_file)
        self.components[name] = component
        self._record_pid(process.pid)
        return component

    def start_triggerer(self, name: str) -> Component:
        """Start a triggerer and learn its job id (the ``triggerer_id`` of the triggers it takes)."""
        known = {row[0] for row in self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob'")}
        component = self.start(name, "triggerer", "--skip-serve-logs")

        def new_job() -> int | None:
            self.check_alive(name)
            rows = self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' AND end_date IS NULL ORDER BY id")
            fresh = [row[0] for row in rows if row[0] not in known]
            return fresh[0] if fresh else None

        component.job_id = wait_for(f"the {name} job to register", new_job, timeout=120)
        return component

    def start_scheduler(self) -> Component:
        return self.start("scheduler", "scheduler", "--skip-serve-logs")

    def start_celery_worker(self, name: str) -> Component:
        """Start ``airflow celery worker`` as ``name``; return once it is ready to take tasks.

        Both workers share this machine, so each gets its own Celery node name, pid file, and the name
        Airflow records as a task's ``hostname`` (``[core] hostname_callable``, see ``hostname.py``).
        """
        component = self.start(
            name,
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--concurrency",
            str(CELERY_CONCURRENCY),
            "--skip-serve-logs",
            "--pid",
            str(self.root / f"{name}.pid"),
            env={
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.hostname.worker_hostname",
                WORKER_HOSTNAME_VARIABLE: name,
                "PYTHONPATH": str(REPO),
            },
        )

        def ready() -> bool:
            self.check_alive(name)
            return f"{name}@" in (text := component.log_path.read_text(errors="replace")) and " ready." in text

        wait_for(f"celery worker {name}", ready, timeout=180)
        return component

    def task_processes(self, ti_id: str) -> list[int]:
        """The task process of task instance ``ti_id`` (titled ``airflow worker -- <ti id>``), if running."""
        return [
            pid
            for component in self.components.values()
            for pid in processes_titled(f"airflow worker -- {ti_id}", under=component.pid)
        ]

    def check_alive(self, name: str) -> None:
        component = self.components[name]
        if not component.alive():
            raise RuntimeError(f"{name} exited with {component.process.returncode}:\n{self.tail(component.log_path)}")

    def kill(self, name: str, sig: int = signal.SIGKILL, linger: float = 15, whole_tree: bool = False) -> list[int]:
        """Send ``sig`` to the component's main process only, as a crash or an OOM kill would.

        Its child processes (a triggerer's trigger runner) are left to notice on their own; returns the
        pids of its tree still alive ``linger`` seconds later (none, when Airflow cleans up after itself).
        With ``whole_tree`` every process of the tree gets ``sig`` at once, as when its machine or
        container dies (a Celery worker's task processes live in process groups of their own).
        """
        component = self.components.pop(name)
        self.killed.append(component)
        tree = descendants(component.pid)
        for pid in tree if whole_tree else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        os.kill(component.pid, sig)
        component.process.wait(30)
        deadline = time.monotonic() + linger
        while (left := [pid for pid in tree if _stat_fields(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def stop(self, name: str) -> None:
        """Stop a component and everything it started (its process group), by the group leader's pid."""
        self._stop(self.components.pop(name))

    @staticmethod
    def _stop(component: Component) -> None:
        """SIGTERM to the component's process group, then SIGKILL to whatever of its tree is left.

        Task processes run in process groups of their own, so the tree is listed before the group is
        signalled, and every pid in it is checked again at the end.
        """
        pgid = component.pid  # the component leads its own process group
        tree = set(descendants(component.pid)) | set(process_group_members(pgid))
        if component.alive() or tree:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        try:
            component.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            component.process.wait(10)
        deadline = time.monotonic() + 15
        while (left := [pid for pid in tree if _stat_fields(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        component.log_file.close()

    def stop_all(self) -> None:
        for component in [*reversed(self.components.values()), *self.killed]:
            self._stop(component)
        self.components.clear()
        self.killed.clear()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def up(self) -> None:
        """Migrate the DB, then start the simulator and every component; return once the DAGs are parsed."""
        self.install_dags()
        self.airflow("db", "migrate", timeout=600)
        self.start_simulator()
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1")
        wait_for("the api-server", self._api_healthy, timeout=180)
        self.start_scheduler()
        self.start("dag-processor", "dag-processor")
        self.start_triggerer("triggerer")
        if self.broker_url:
            self.start_triggerer("triggerer-b")
            for name in CELERY_WORKERS:
                self.start_celery_worker(name)
        for dag_id in self.dag_ids():
            wait_for(f"DAG {dag_id} to be parsed", lambda dag_id=dag_id: self._dag_ready(dag_id), timeout=240)

    def dag_ids(self) -> list[str]:
        return [
            "example_ltx2_single_video",
            "example_ltx2_batch_from_csv",
            "example_ltx2_taskflow",
            "example_ltx2_asset_producer",
            "example_ltx2_asset_consumer",
            "e2e_ltx2_worker_wait",
            "e2e_ltx2_pair",
            "e2e_ltx2_cli_connection",
            "e2e_ltx2_slow_download",
            "e2e_ltx2_batch",
            "e2e_ltx2_batch_pooled",
            "e2e_ltx2_batch_operator",
            "e2e_ltx2_batch_operator_in_worker",
        ]

    def _api_healthy(self) -> bool:
        self.check_alive("api-server")
        try:
            return self.http.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def _dag_ready(self, dag_id: str) -> bool:
        for name in ("scheduler", "dag-processor"):
            self.check_alive(name)
        reply = self.api("GET", f"/dags/{dag_id}", check=False)
        return reply.status_code == 200 and not reply.json()["is_paused"]

    # ------------------------------------------------------------------------------------- REST API

    def token(self) -> str:
        """A JWT from the simple auth manager (all users are admins in this deployment)."""
        if self._token is None:
            reply = self.http.get(f"{self.api_url}/auth/token", timeout=30)
            reply.raise_for_status()
            self._token = str(reply.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, *, check: bool = True, **kwargs: Any) -> requests.Response:
        reply = self.http.request(
            method,
            f"{self.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=30,
            **kwargs,
        )
        if check and reply.status_code >= 300:
            raise RuntimeError(f"{method} {path} answered {reply.status_code}: {reply.text[:2000]}")
        return reply

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a DAG run through the REST API; return its run id."""
        reply = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return str(reply.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        reply = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return list(reply.json()["task_instances"])

    def wait_for_runs(self, runs: list[tuple[str, str]], timeout: float = 240) -> dict[tuple[str, str], str]:
        """Wait until every (dag_id, run_id) has finished; on a hung run, fail with the deployment's logs."""
        deadline = time.monotonic() + timeout
        states: dict[tuple[str, str], str] = {}
        while True:
            states = {run: self.run_state(*run) for run in runs}
            if all(state in FINISHED for state in states.values()):
                return states
            if time.monotonic() >= deadline:
                raise AssertionError(f"Runs not finished after {timeout:.0f}s: {states}\n{self.diagnostics(runs)}")
            for name in list(self.components):
                if not self.components[name].alive():
                    raise AssertionError(f"{name} died while runs were going: {states}\n{self.diagnostics(runs)}")
            time.sleep(1)

    # ------------------------------------------------------------------------------------- metadata DB

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2  # installed by scripts/e2e.sh (Airflow's postgres extra), not by the test extra

        parts = urlsplit(self.database_url)
        db = psycopg2.connect(
            host=parts.hostname,
            port=parts.port,
            user=parts.username,
            password=parts.password,
            dbname=parts.path.lstrip("/"),
        )
        try:
            with db, db.cursor() as cursor:
                cursor.execute(query, params or None)
                return cursor.fetchall() if cursor.description else []
        finally:
            db.close()

    def triggers(self) -> list[dict[str, Any]]:
        """The rows of the ``trigger`` table with their kwargs decrypted (Airflow stores them encrypted)."""
        fernet = Fernet(self.fernet_key.encode())
        rows = self.sql("SELECT id, classpath, kwargs, triggerer_id FROM trigger ORDER BY id")
        triggers = []
        for trigger_id, classpath, raw, triggerer_id in rows:
            text = raw if raw.startswith("{") else fernet.decrypt(raw.encode()).decode()
            kwargs = plain(json.loads(text))
            triggers.append({"id": trigger_id, "classpath": classpath, "kwargs": kwargs, "triggerer_id": triggerer_id})
        self.trigger_snapshots.extend(triggers)
        return triggers

    def pg_dump(self) -> str:
        """The whole metadata DB as SQL text, without the rows of the ``connection`` table."""
        parts = urlsplit(self.database_url)
        done = subprocess.run(
            [
                str(self.pg_bin / "pg_dump"),
                "--host",
                str(parts.hostname),
                "--port",
                str(parts.port),
                "--username",
                str(parts.username),
                "--exclude-table-data=connection",
                parts.path.lstrip("/"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
            env={**os.environ, "PGPASSWORD": parts.password or ""},
        )
        return done.stdout

    # ------------------------------------------------------------------------------------- logs

    def task_logs(self) -> Iterator[Path]:
        yield from (path for path in (self.home / "logs").rglob("*") if path.is_file())

    def task_log_files(self, dag_id: str, run_id: str, task_id: str, attempt: int, map_index: int = -1) -> list[Path]:
        """The try's task log, then the logs its triggers wrote (``attempt=N.log.trigger.<job>.log``)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        return sorted(folder.glob(f"attempt={attempt}.log*"))

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int, map_index: int = -1) -> str:
        files = self.task_log_files(dag_id, run_id, task_id, attempt, map_index)
        return "\n".join(path.read_text(errors="replace") for path in files)

    @staticmethod
    def tail(path: Path, lines: int = 60) -> str:
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"({error})"
        return "\n".join(text[-lines:])

    def diagnostics(self, runs: list[tuple[str, str]] | None = None) -> str:
        """What to read when a run hangs: task states, triggers, and the end of every log."""
        parts = []
        for dag_id, run_id in runs or []:
            try:
                states = [(ti["task_id"], ti["map_index"], ti["state"]) for ti in self.task_instances(dag_id, run_id)]
            except Exception as error:  # the API may be what is broken
                states = [("?", -1, repr(error))]
            parts.append(f"== {dag_id} {run_id}: {states}")
        try:
            parts.append(f"== triggers: {self.triggers()}")
        except Exception as error:
            parts.append(f"== triggers: {error!r}")
        if self.sim is not None:
            try:
                stats = self.sim.stats()
                parts.append(f"== simulator: { {k: v for k, v in stats.items() if k != 'requests'} }")
            except Exception as error:
                parts.append(f"== simulator: {error!r}")
        for path in sorted(self.component_logs.glob("*.log")):
            parts.append(f"== {path.name} (last lines)\n{self.tail(path)}")
        for path in sorted(self.task_logs(), key=lambda p: p.stat().st_mtime)[-4:]:
            parts.append(f"== {path.relative_to(self.home)} (last lines)\n{self.tail(path, 30)}")
        return "\n".join(parts)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """A task log's JSON lines that carry a ``timestamp``, each with it as epoch seconds (``at``) too."""
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and "timestamp" in line:
            line["at"] = datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()
            lines.append(line)
    return lines


def generations(e2e: Deployment, runs: list[Run]) -> list[dict[str, Any]]:
    """The generate task instances of ``runs`` (mapped ones count one per map index)."""
    return [
        {**ti, "dag_id": dag_id}
        for dag_id, run_id in runs
        for ti in e2e.task_instances(dag_id, run_id)
        if ti["task_id"].startswith("generate")
    ]


def assert_succeeded(e2e: Deployment, runs: list[Run], timeout: float = 240) -> None:
    states = e2e.wait_for_runs(runs, timeout)
    assert set(states.values()) == {"success"}, f"{states}\n{e2e.diagnostics(runs)}"


def submits(e2e: Deployment) -> int:
    assert e2e.sim is not None
    return int(e2e.sim.stats()["submits"])


def return_value(e2e: Deployment, dag_id: str, run_id: str, task_id: str) -> Any:
    """A task's ``return_value`` XCom, through the REST API."""
    reply = e2e.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    value = reply.json()["value"]
    return plain(json.loads(value) if isinstance(value, str) else value)


def state_record(e2e: Deployment, dag_id: str, run_id: str, key: str) -> dict[str, Any] | None:
    """What the run's task keeps under ``key`` in the task state store (Airflow 3.3+), if anything."""
    rows = e2e.sql(
        "SELECT value FROM task_state_store WHERE dag_id = %s AND run_id = %s AND key = %s", dag_id, run_id, key
    )
    if not rows:
        return None
    value = rows[0][0]
    return plain(json.loads(value) if isinstance(value, str) else value)


def running_jobs(e2e: Deployment) -> set[str]:
    """The request ids of the simulator's jobs still queued or processing."""
    assert e2e.sim is not None
    return {job["request_id"] for job in e2e.sim.stats()["job_times"] if job["ended"] is None}


def batch_folder(e2e: Deployment, dag_id: str, run_id: str) -> Path:
    """The ``output_prefix`` of the e2e batch DAGs: a folder per run under the deployment's output folder."""
    return e2e.output_dir / dag_id / run_id.replace(":", "_")


def assert_batch_delivered(e2e: Deployment, dag_id: str, run_id: str, row_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """A batch task's folder holds exactly every row's MP4 and sidecar and the manifest: one ``generated`` line
    per row in the table's order, each from a job of its own that the simulator made; no partial file.
    Returns the manifest's lines."""
    assert e2e.sim is not None
    folder = batch_folder(e2e, dag_id, run_id)
    lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [(line["id"], line["status"]) for line in lines] == [(row, "generated") for row in row_ids], lines
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    expected = sorted(["manifest.jsonl", *(f"{row}.mp4" for row in row_ids), *(f"{row}.mp4.json" for row in row_ids)])
    assert files == expected, f"files in {folder}: {files}, expected {expected} (no partial file)"
    for line in lines:
        video = folder / f"{line['id']}.mp4"
        sidecar = json.loads((folder / f"{line['id']}.mp4.json").read_text())
        assert video.read_bytes()[4:8] == b"ftyp"
        assert sidecar["request_id"] == line["request_id"] and sidecar["bytes"] == video.stat().st_size == line["bytes"]
    made = {job["request_id"] for job in e2e.sim.stats()["job_times"]}
    assert sorted(line["request_id"] for line in lines) == sorted(made), "every paid job delivered exactly one row"
    return lines
