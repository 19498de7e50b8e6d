"""Network settings on both paths: TLS trust, proxies and their extras, against a real https simulator and tinyproxy.

The worker path is ``execute`` (submit, polls and download with requests); the deferrable path submits and
downloads in the worker and polls in the trigger (aiohttp). Both must honour the same extras and variables.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import pytest

from airflow_provider_ltx2.api.retries import RetryPolicy
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import FAST, KEY, Deferrals, TlsFiles, free_port, run_deferrable
from tests.fakes import RecordingLog, task_context

# Every variable that decides a CA bundle or a proxy for requests, aiohttp or urllib, in both spellings.
NETWORK_VARIABLES = [
    *("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"),
    *(name for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") for name in (base, base.upper())),
]
VERIFY_OFF_WARNING = "TLS verification is off"
ONE_ATTEMPT = RetryPolicy(max_attempts=1)  # a refused submit fails at once instead of after four backoffs


@pytest.fixture(autouse=True)
def network_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CA bundle or proxy from the machine's environment: each test sets the ones it is about.

    The TLS contexts are cached per resolved setting (the CA file found in the environment included).
    """
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def connect(monkeypatch: pytest.MonkeyPatch, sim: SimulatorProcess, **extra: Any) -> None:
    """Point ``ltx2_default`` at ``sim`` with these connection extras."""
    connection = {**json.loads(sim.connection()), "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", json.dumps(connection))


@pytest.fixture
def image_url(simulator_process: SimulatorProcess) -> str:
    """A real JPEG on the plain http simulator, for tasks that read their image before paying."""
    return f"{simulator_process.base_url}/files/sample.jpg"


def generate(
    tmp_path: Path, image_url: str, *, deferrable: bool, retry_policy: RetryPolicy | None = None
) -> Ltx2GenerateVideoOperator:
    operator = Ltx2GenerateVideoOperator(
        task_id="generate",
        image_url=image_url,
        prompt="the cat turns its head",
        deferrable=deferrable,
        poll_interval=0.1,
        timeout=20,
        output_uri=f"file://{tmp_path}/{'deferred' if deferrable else 'worker'}.mp4",
    )
    if retry_policy is not None:  # the trigger inherits it through its kwargs
        operator.hook.retry_policy = retry_policy
    return operator


def in_worker(operator: Ltx2GenerateVideoOperator) -> dict[str, Any]:
    """Run the task in the worker to the end, as a non-deferrable task runs."""
    context: Any = task_context()  # the part of a task context the provider touches
    return operator.execute(context)


def assert_downloaded(result: dict[str, Any], sim: SimulatorProcess) -> None:
    saved = Path(urlsplit(result["output_uri"]).path)
    assert result["video_url"].startswith(sim.base_url + "/"), result["video_url"]
    assert saved.read_bytes()[4:8] == b"ftyp" and result["bytes"] == saved.stat().st_size > 0


def run_both_paths(
    tmp_path: Path, image_url: str, sim: SimulatorProcess, retry_policy: RetryPolicy | None = None
) -> None:
    """The task in the worker, then deferred (its polls in the trigger): both save the MP4."""
    worker = generate(tmp_path, image_url, deferrable=False, retry_policy=retry_policy)
    assert_downloaded(in_worker(worker), sim)
    seen = Deferrals()
    deferred = generate(tmp_path, image_url, deferrable=True, retry_policy=retry_policy)
    assert_downloaded(run_deferrable(deferred, task_context(), seen), sim)
    assert seen.triggers == ["Ltx2VideoTrigger"] and seen.events[0]["status"] == "succeeded"
    stats = sim.stats()
    assert (stats["submits"], stats["downloads"], stats["jobs"]) == (2, 2, 2) and stats["polls"] >= 2


# ------------------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_simulator_process(throwaway_ca: TlsFiles) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(key=KEY, tls_cert=throwaway_ca.server_cert, tls_key=throwaway_ca.server_key) as sim:
        yield sim


@pytest.fixture
def tls_simulator(tls_simulator_process: SimulatorProcess) -> SimulatorProcess:
    """A reset https simulator whose certificate only ``throwaway_ca.ca_cert`` vouches for."""
    assert tls_simulator_process.base_url.startswith("https://127.0.0.1:")
    tls_simulator_process.reset()
    tls_simulator_process.configure(**FAST)
    return tls_simulator_process


@pytest.fixture
def hook_log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    """The log of every ``Ltx2Hook``: the task's (``op.hook``) and the one its trigger builds."""
    recording = RecordingLog()
    monkeypatch.setattr(Ltx2Hook, "log", property(lambda _: recording))
    return recording


def test_the_extras_ca_bundle_is_trusted_on_both_paths(
    tls_simulator: SimulatorProcess,
    throwaway_ca: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_url: str,
) -> None:
    connect(monkeypatch, tls_simulator, verify=str(throwaway_ca.ca_cert))
    run_both_paths(tmp_path, image_url, tls_simulator)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_a_ca_bundle_from_the_environment_is_trusted_on_both_paths(
    tls_simulator: SimulatorProcess,
    throwaway_ca: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_url: str,
    variable: str,
) -> None:
    connect(monkeypatch, tls_simulator)
    monkeypatch.setenv(variable, str(throwaway_ca.ca_cert))
    run_both_paths(tmp_path, image_url, tls_simulator)


def test_an_untrusted_certificate_stops_the_submit_before_anything_is_paid(
    tls_simulator: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image_url: str
) -> None:
    connect(monkeypatch, tls_simulator)
    with pytest.raises(Ltx2Error) as caught:
        in_worker(generate(tmp_path, image_url, deferrable=True))
    message = str(caught.value)
    assert "TLS certificate" in message and tls_simulator.base_url in message, message
    assert "may have accepted" not in message and "nothing was sent" in message, message
    assert "(certificate verify failed: unable to get local issuer certificate)" in message, message
    stats = tls_simulator.stats()
    assert (stats["submits"], stats["jobs"]) == (0, 0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("reuse", [False, True], ids=["image-check", "image-identity"])
def test_an_image_behind_an_untrusted_certificate_is_refused_with_the_reason_and_the_fix(
    simulator: SimulatorProcess, tls_simulator: SimulatorProcess, tmp_path: Path, reuse: bool
) -> None:
    """The gateway is trusted (plain http here); the image's host is not. Before paying, the check (a ranged
    read) or the image's identity for reuse (a whole read, with an ``output_uri``) says why and what fixes it."""
    image = f"{tls_simulator.base_url}/files/sample.jpg"
    output = {"output_uri": f"file://{tmp_path}/v.mp4"} if reuse else {}
    task = Ltx2GenerateVideoOperator(task_id="generate", image_url=image, prompt="the cat turns", **output)
    with pytest.raises(Ltx2ValidationError) as caught:
        in_worker(task)
    message = str(caught.value)
    assert "certificate verify failed: unable to get local issuer certificate" in message, message
    assert "extra `verify`" in message and "check_image=False" in message, message
    assert simulator.stats()["submits"] == 0 and not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_works_and_warns_on_every_task(
    tls_simulator: SimulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_url: str,
    hook_log: RecordingLog,
) -> None:
    connect(monkeypatch, tls_simulator, verify="false")
    assert_downloaded(in_worker(generate(tmp_path, image_url, deferrable=False)), tls_simulator)
    worker_warnings = [message for message in hook_log.messages("warning") if VERIFY_OFF_WARNING in message]
    assert len(worker_warnings) == 1 and "'ltx2_default'" in worker_warnings[0]
    assert_downloaded(run_deferrable(generate(tmp_path, image_url, deferrable=True), task_context()), tls_simulator)
    # the deferred task warns twice: in the worker that submits, and in the triggerer that polls
    all_warnings = [message for message in hook_log.messages("warning") if VERIFY_OFF_WARNING in message]
    assert len(all_warnings) == 3


@pytest.mark.parametrize("verify", ["ca", "false"])
def test_the_extras_verify_beats_a_ca_bundle_in_the_environment(
    tls_simulator: SimulatorProcess,
    throwaway_ca: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_url: str,
    verify: str,
) -> None:
    """As for providers-http's HttpHook: an explicit extra wins over the machine-wide bundle (here certifi's)."""
    connect(monkeypatch, tls_simulator, verify=str(throwaway_ca.ca_cert) if verify == "ca" else verify)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    run_both_paths(tmp_path, image_url, tls_simulator, ONE_ATTEMPT)


# ------------------------------------------------------------------------------------------ proxies


@dataclass
class Tinyproxy:
    """A running tinyproxy: its URL and its log, which names every request it forwarded."""

    url: str
    log: Path

    def offset(self) -> int:
        return self.log.stat().st_size

    def requests(self, since: int) -> list[tuple[str, str]]:
        """(method, target) of every request logged after byte ``since`` of the log."""
        with self.log.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        logged = [line.split("): ", 1)[1].split(" ") for line in lines if "]: Request (file descriptor" in line]
        return [(method, target) for method, target, *_ in logged]

    def forwarded(self, sim: SimulatorProcess, since: int) -> list[str]:
        """The paths of the gateway calls and video downloads forwarded to ``sim`` (not the image, not control)."""
        prefix = sim.base_url + "/"
        paths = [target.removeprefix(sim.base_url) for _, target in self.requests(since) if target.startswith(prefix)]
        return [path for path in paths if not path.startswith(("/_sim/", "/files/sample.jpg"))]


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    """tinyproxy on a free loopback port (it adds a ``Via`` header), stopped by pid at the end.

    The port is free when probed; another process (another pytest-xdist worker's tinyproxy) may bind it before
    this one does, which then exits: it is started again on another port.
    """
    binary = shutil.which("tinyproxy")
    if binary is None:
        reason = "tinyproxy is not installed (scripts/test.sh installs Debian's tinyproxy-bin when run as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    for attempt in range(5):
        folder = tmp_path_factory.mktemp("tinyproxy")
        port = free_port()
        log, pid_file, config = folder / "tinyproxy.log", folder / "tinyproxy.pid", folder / "tinyproxy.conf"
        config.write_text(
            f'Listen 127.0.0.1\nPort {port}\nAllow 127.0.0.1\nLogFile "{log}"\nLogLevel Info\n'
            f'PidFile "{pid_file}"\nMaxClients 100\nTimeout 30\n'
        )
        process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not (log.exists() and "Accepting connections" in log.read_text()):
                if process.poll() is not None or time.monotonic() > deadline:
                    errors = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"tinyproxy did not start: {errors} {log.read_text() if log.exists() else ''}")
                time.sleep(0.05)
        except RuntimeError:
            stop(process)
            if attempt == 4:
                raise
            continue
        try:
            yield Tinyproxy(f"http://127.0.0.1:{port}", log)
        finally:
            stop(process)
        return


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    if process.stderr is not None:
        process.stderr.close()


def assert_all_proxied(proxy: Tinyproxy, sim: SimulatorProcess, since: int) -> None:
    """Every submit, poll and download the simulator answered was forwarded by the proxy: none bypassed it."""
    stats = sim.stats()
    forwarded = proxy.forwarded(sim, since)
    assert len(forwarded) == stats["submits"] + stats["polls"] + stats["downloads"], forwarded
    assert sum(path.startswith("/files/") for path in forwarded) == stats["downloads"] == 2


@pytest.mark.parametrize("form", ["per scheme", "one URL"])
def test_the_extras_proxy_carries_every_call_of_both_paths(
    simulator: SimulatorProcess,
    tinyproxy: Tinyproxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_url: str,
    form: str,
) -> None:
    proxies = {"http": tinyproxy.url, "https": tinyproxy.url} if form == "per scheme" else tinyproxy.url
    connect(monkeypatch, simulator, proxies=proxies)
    since = tinyproxy.offset()
    run_both_paths(tmp_path, image_url, simulator)
    assert_all_proxied(tinyproxy, simulator, since)


def test_http_proxy_from_the_environment_carries_every_call_of_both_paths(
    simulator: SimulatorProcess, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image_url: str
) -> None:
    connect(monkeypatch, simulator)
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    since = tinyproxy.offset()
    run_both_paths(tmp_path, image_url, simulator)
    assert_all_proxied(tinyproxy, simulator, since)


def test_no_proxy_sends_every_call_of_both_paths_direct(
    simulator: SimulatorProcess, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image_url: str
) -> None:
    connect(monkeypatch, simulator)
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    since = tinyproxy.offset()
    run_both_paths(tmp_path, image_url, simulator)
    assert tinyproxy.requests(since) == []


@pytest.mark.parametrize("source", ["extra", "HTTPS_PROXY"])
def test_https_through_the_proxy_is_tunnelled_and_still_checked(
    tls_simulator: SimulatorProcess,
    throwaway_ca: TlsFiles,
    tinyproxy: Tinyproxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_url: str,
    source: str,
) -> None:
    """An https gateway behind the proxy: CONNECT tunnels from both paths, the CA checked end to end.

    A tunnel carries many requests, so tunnels are counted per client: the worker's session, then the
    deferred task's session and its trigger's.
    """
    if source == "extra":
        connect(monkeypatch, tls_simulator, verify=str(throwaway_ca.ca_cert), proxies={"https": tinyproxy.url})
    else:
        connect(monkeypatch, tls_simulator, verify=str(throwaway_ca.ca_cert))
        monkeypatch.setenv("HTTPS_PROXY", tinyproxy.url)
    tunnel = ("CONNECT", urlsplit(tls_simulator.base_url).netloc)
    since = tinyproxy.offset()
    assert_downloaded(in_worker(generate(tmp_path, image_url, deferrable=False)), tls_simulator)
    assert tunnel in tinyproxy.requests(since)
    since = tinyproxy.offset()
    assert_downloaded(run_deferrable(generate(tmp_path, image_url, deferrable=True), task_context()), tls_simulator)
    assert tinyproxy.requests(since).count(tunnel) >= 2, tinyproxy.requests(since)


def test_the_extras_proxy_beats_one_in_the_environment(
    simulator: SimulatorProcess, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image_url: str
) -> None:
    """As for providers-http's HttpHook: the connection's proxy wins over the machine's (here a dead one)."""
    connect(monkeypatch, simulator, proxies={"http": tinyproxy.url})
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    since = tinyproxy.offset()
    run_both_paths(tmp_path, image_url, simulator, ONE_ATTEMPT)
    assert_all_proxied(tinyproxy, simulator, since)
