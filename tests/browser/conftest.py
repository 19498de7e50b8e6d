"""A real Airflow UI for the browser tests: simulator, metadata DB, finished runs, an API server, Chromium.

The API server runs Airflow's simple auth manager with a real user who logs in through its login page, so
the provider's views are reached, and refused, exactly as Airflow's own pages are.

Every process started here is written to ``<run dir>/pids`` as soon as it starts, so that
``scripts/browser-test.sh`` can stop it even if pytest is killed, and is stopped by its id on teardown.
The Airflow commands run in their own session (process group id == pid); the simulator runs as
``SimulatorProcess`` starts it. Logs of every command go to the run dir, as do the screenshot and
HTML of a failed test.

The tests run when selected explicitly (``pytest tests/browser``) or with ``LTX2_BROWSER_TESTS=1``,
and need the ``playwright`` package and a Chromium (``LTX2_CHROMIUM``, default ``/usr/bin/chromium``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

import pytest

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import FAST, KEY, REPO, airflow_env
from tests.integration.plugins.test_plugin import BATCH_TASKS, write_batch_tasks_dag

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("LTX2_CHROMIUM", "/usr/bin/chromium")
# Without background networking off, this Chromium's own connections get refused and pages stall.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAG_ID = "example_ltx2_single_video"
BATCH_DAG_ID = "example_ltx2_batch_from_csv"  # maps over example_dags/data/prompts.csv
TASK_ID = "generate_video"
USERNAME = "admin"
CONN_ID = "ltx2_browser"
SCREENSHOTS = Path(os.environ.get("LTX2_SCREENSHOT_DIR", REPO / "docs" / "screenshots"))
UI_TIMEOUT_MS = 20_000  # the bound of any one wait for the UI: generous, for a busy 2-core machine


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the Airflow UI in headless Chromium (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip unless asked for: they start a whole Airflow and a browser, which the quick suite should not."""
    ours = [item for item in items if HERE in Path(str(item.path)).parents]
    if not ours:
        return
    reason = _why_not_runnable(config)
    for item in ours:
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _why_not_runnable(config: pytest.Config) -> str | None:
    chosen = os.environ.get("LTX2_BROWSER_TESTS") == "1" or any(
        path == HERE or HERE in path.parents
        for path in (
            (config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.invocation_params.args
        )
    )
    if not chosen:
        return "browser tests: run scripts/browser-test.sh, pytest tests/browser, or set LTX2_BROWSER_TESTS=1"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need the playwright package (scripts/browser-test.sh installs it)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test fails, keep what the browser showed: a screenshot and the page's HTML."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.when != "call" or not report.failed or page is None:
        return report
    target = Path(tempfile.mkdtemp(prefix=f"{item.name}-", dir=run_dir_path() / "failures"))
    try:
        page.screenshot(path=str(target / "page.png"), full_page=True, timeout=10_000)
        (target / "page.html").write_text(page.content())
        (target / "url.txt").write_text(page.url + "\n")
        saved = f"screenshot and HTML of the page saved in {target}"
    except Exception as error:  # the browser itself may be what failed
        saved = f"could not capture the page into {target}: {error!r}"
    print(f"\n{saved}", file=sys.stderr)
    report.sections.append(("browser capture", saved))
    return report


@functools.cache
def run_dir_path() -> Path:
    """Where logs, pids and failure captures go: ``LTX2_BROWSER_RUN_DIR`` (set by the script) or a temp dir."""
    given = os.environ.get("LTX2_BROWSER_RUN_DIR")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="ltx2-browser-"))
    (path / "failures").mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- processes, stopped by their id


def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session with output to ``<run dir>/<name>.log``; record its pid."""
    log = (run_dir_path() / f"{name}.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    with (run_dir_path() / "pids").open("a") as pids:
        pids.write(f"{process.pid}\n")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group this process leads (it and anything it started), by its id."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(name: str, chars: int = 4000) -> str:
    path = run_dir_path() / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"--- {path} (last {chars} chars) ---\n{text[-chars:]}"


def run(name: str, command: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a command to completion within ``timeout`` seconds; fail with its log if it does not succeed."""
    process = start(name, command, env)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        pytest.fail(f"`{' '.join(command[2:])}` took more than {timeout}s\n{log_tail(name)}")
    finally:
        stop(process)  # anything it left behind in its group
    output = (run_dir_path() / f"{name}.log").read_text(errors="replace")
    if code != 0:
        pytest.fail(f"`{' '.join(command[2:])}` exited with {code}\n{log_tail(name)}")
    return output


def airflow_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def free_port() -> int:
    """A free loopback port outside the ephemeral range, so outgoing connections do not take it meanwhile."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(20000, low)) if low > 21000 else []
    random.shuffle(candidates)
    for port in [*candidates[:50], 0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def terminate_gracefully() -> Iterator[None]:
    """SIGTERM (the script's time bound) becomes KeyboardInterrupt, so pytest still tears everything down."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def ui_simulator(terminate_gracefully: None) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(key=KEY) as sim:
        assert sim.process is not None
        with (run_dir_path() / "pids").open("a") as pids:
            pids.write(f"{sim.process.pid}\n")
        sim.configure(**FAST)
        yield sim


@dataclass(frozen=True)
class AirflowUI:
    base_url: str
    home: Path
    run_ids: dict[str, str]
    simulator: SimulatorProcess
    password: str
    token: str

    def api(self, path: str, timeout: float = 30) -> Any:
        """GET a REST API path as the logged-in user."""
        return get_json(f"{self.base_url}{path}", self.token, timeout)

    @property
    def run_id(self) -> str:
        return self.run_ids[DAG_ID]

    def run_path(self, dag_id: str = DAG_ID) -> str:
        return f"/dags/{dag_id}/runs/{quote(self.run_ids[dag_id], safe='')}"

    @property
    def task_instance_path(self) -> str:
        return f"{self.run_path()}/tasks/{TASK_ID}"


def get_json(url: str, token: str, timeout: float = 30) -> Any:
    with urlopen(Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=timeout) as reply:
        return json.loads(reply.read())


def log_in(base_url: str, password: str) -> str:
    """A JWT for the user, from the simple auth manager's token endpoint."""
    body = json.dumps({"username": USERNAME, "password": password}).encode()
    request = Request(f"{base_url}/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as reply:
        return str(json.loads(reply.read())["access_token"])


@pytest.fixture(scope="session")
def airflow_ui(ui_simulator: SimulatorProcess) -> Iterator[AirflowUI]:
    """A migrated SQLite home with finished deferrable runs of the single-video and batch examples (videos
    downloaded) and of the batch tasks of ``tests.integration.plugins.test_plugin``, a CLI-made ``ltx2`` connection, and
    ``airflow api-server`` on a free loopback port."""
    home = run_dir_path() / "airflow-home"
    home.mkdir(exist_ok=True)
    dags = run_dir_path() / "dags"
    dags.mkdir(exist_ok=True)
    for name in (f"{DAG_ID}.py", f"{BATCH_DAG_ID}.py", "data"):
        (dags / name).symlink_to(REPO / "example_dags" / name)
    write_batch_tasks_dag(dags, run_dir_path() / "videos", f"{ui_simulator.base_url}/files/sample.jpg")
    password = secrets.token_urlsafe(16)
    passwords = run_dir_path() / "passwords.json"
    passwords.write_text(json.dumps({USERNAME: password}))
    env = airflow_env(
        home,
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USERNAME}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
    )
    env.pop("AIRFLOW_CONN_LTX2_DEFAULT", None)

    run("db-migrate", airflow_cli("db", "migrate"), env, timeout=180)
    example_env = {
        **env,
        "AIRFLOW_CONN_LTX2_DEFAULT": ui_simulator.connection(),
        "LTX2_EXAMPLE_DEFERRABLE": "true",
        "LTX2_EXAMPLE_OUTPUT_DIR": str(run_dir_path() / "videos"),
        "LTX2_EXAMPLE_POLL_INTERVAL": "0.5",
        "LTX2_EXAMPLE_IMAGE_URL": f"{ui_simulator.base_url}/files/sample.jpg",
        "LTX2_EXAMPLE_IMAGE_BASE_URL": f"{ui_simulator.base_url}/files/",
    }
    for dag_id in (DAG_ID, BATCH_DAG_ID):
        dag_test = run(f"dags-test-{dag_id}", airflow_cli("dags", "test", dag_id), example_env, timeout=240)
        assert "state=success" in dag_test and "running trigger in line" in dag_test, log_tail(f"dags-test-{dag_id}")
    batch_test = run(f"dags-test-{BATCH_TASKS}", airflow_cli("dags", "test", BATCH_TASKS), example_env, timeout=240)
    assert "state=success" in batch_test, log_tail(f"dags-test-{BATCH_TASKS}")
    run(
        "connections-add",
        airflow_cli(
            "connections",
            "add",
            CONN_ID,
            "--conn-type",
            "ltx2",
            "--conn-host",
            ui_simulator.base_url,
            "--conn-password",
            KEY,
        ),
        env,
        timeout=120,
    )

    server, base_url = start_api_server(env)
    try:
        token = log_in(base_url, password)
        run_ids = {dag_id: finished_run_id(base_url, dag_id, token) for dag_id in (DAG_ID, BATCH_DAG_ID, BATCH_TASKS)}
        yield AirflowUI(base_url, home, run_ids, ui_simulator, password, token)
    finally:
        stop(server)


def start_api_server(env: dict[str, str], attempts: int = 3) -> tuple[subprocess.Popen[bytes], str]:
    """``airflow api-server`` on a free port, healthy; another port if that one was taken while it started."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        name = f"api-server-{attempt}"
        server = start(name, airflow_cli("api-server", "--host", "127.0.0.1", "--port", str(port), "-w", "1"), env)
        base_url = f"http://127.0.0.1:{port}"
        try:
            if wait_until_healthy(server, base_url, name, timeout=150):
                return server, base_url
        except BaseException:
            stop(server)
            raise
        stop(server)
        if "address already in use" not in log_tail(name):
            pytest.fail(f"airflow api-server exited with {server.returncode}\n{log_tail(name)}")
    pytest.fail(f"airflow api-server found no free port in {attempts} attempts\n{log_tail(name)}")


def wait_until_healthy(server: subprocess.Popen[bytes], base_url: str, name: str, timeout: float) -> bool:
    """True once the health endpoint answers; False if the server exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with urlopen(f"{base_url}/api/v2/monitor/health", timeout=5) as reply:
                if reply.status == 200:
                    return True
        except (URLError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"airflow api-server not healthy after {timeout}s\n{log_tail(name)}")


def finished_run_id(base_url: str, dag_id: str, token: str) -> str:
    runs = get_json(f"{base_url}/api/v2/dags/{dag_id}/dagRuns", token)["dag_runs"]
    succeeded = [run["dag_run_id"] for run in runs if run["state"] == "success"]
    assert len(succeeded) == 1, f"expected one successful run of {dag_id}, the API lists {runs}"
    return str(succeeded[0])


@pytest.fixture(scope="session")
def browser(terminate_gracefully: None) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def logged_in(airflow_ui: AirflowUI, browser: Any) -> dict[str, Any]:
    """The browser state of a user who signed in on the simple auth manager's login page."""
    context = browser.new_context(base_url=airflow_ui.base_url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto("/", timeout=60_000)
        page.get_by_label("Username").fill(USERNAME)
        page.get_by_label("Password").fill(airflow_ui.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/" not in url, timeout=60_000)
        state: dict[str, Any] = context.storage_state()
    finally:
        context.close()
    assert any(cookie["name"] == "_token" for cookie in state["cookies"]), state
    return state


def new_context(browser: Any, base_url: str, storage_state: dict[str, Any] | None = None) -> Any:
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, base_url=base_url, storage_state=storage_state
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.set_default_navigation_timeout(60_000)
    return context


@pytest.fixture
def page(airflow_ui: AirflowUI, browser: Any, logged_in: dict[str, Any]) -> Iterator[Any]:
    """A tab of the logged-in user."""
    context = new_context(browser, airflow_ui.base_url, logged_in)
    try:
        yield context.new_page()
    finally:
        context.close()
