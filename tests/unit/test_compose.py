"""docker-compose.yaml and its Dockerfile: the Airflow stack a user starts with ``docker compose up``.

Read with PyYAML (no Docker needed); the one test that runs ``docker-compose config`` skips when the
command is missing (``scripts/check-compose.sh`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from airflow_provider_ltx2.api.connection import gateway_from_connection, spend_caps_from_extra
from airflow_provider_ltx2.simulator.__main__ import build_parser
from airflow_provider_ltx2.simulator.server import DEFAULT_KEY

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
SIMULATOR = "ltx2-simulator"
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)
CONN_VAR = "AIRFLOW_CONN_LTX2_DEFAULT"
# Compose's "${NAME:-default}": the default when NAME is unset or empty.
DEFAULTED = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):-(?P<default>.*)\}$")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def common() -> dict[str, Any]:
    return compose()["x-airflow-common"]


def common_env() -> dict[str, str]:
    return common()["environment"]


def default_of(value: str, name: str) -> str:
    """The default of ``${name:-default}``; fails when ``value`` is not that."""
    match = DEFAULTED.match(value)
    assert match and match["name"] == name, f"expected '${{{name}:-...}}', got {value!r}"
    return match["default"]


def airflow_version_pins() -> dict[str, str]:
    dockerfile = (REPO / "Dockerfile").read_text()
    from_line = re.search(r"^FROM\s+apache/airflow:(\S+)\s*$", dockerfile, re.MULTILINE)
    bootstrap = re.search(
        r'AIRFLOW_VERSION="\$\{LTX2_AIRFLOW_VERSION:-([^}]+)\}"', (REPO / "scripts/bootstrap.sh").read_text()
    )
    assert from_line, "Dockerfile: no 'FROM apache/airflow:<version>' line"
    assert bootstrap, "scripts/bootstrap.sh: no default AIRFLOW_VERSION"
    return {
        "Dockerfile FROM": from_line[1],
        "scripts/bootstrap.sh": bootstrap[1],
        "compose image tag": common()["image"].rpartition(":")[2].removeprefix("airflow-"),
    }


def console_scripts() -> dict[str, str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed distribution's metadata says the same
        from importlib.metadata import distribution

        return {ep.name: ep.value for ep in distribution("airflow-provider-ltx2").entry_points}
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def simulator_args() -> list[str]:
    command = services()[SIMULATOR]["command"]
    assert isinstance(command, list), "give the simulator's command as a list"
    return command


# ------------------------------------------------------------------------------------------------ services


@pytest.mark.parametrize("name", ["postgres", "redis", SIMULATOR, *AIRFLOW_SERVICES])
def test_service_exists(name: str) -> None:
    assert name in services()


def test_backing_services() -> None:
    assert services()["postgres"]["image"] == "postgres:16"
    assert services()["redis"]["image"].startswith("redis:")
    env = common_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:airflow@postgres/")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379/")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_share_the_common_settings(name: str) -> None:
    """Each uses the anchor; a service that overrides ``environment`` must still merge the common one."""
    service = services()[name]
    assert service["image"] == common()["image"]
    assert service["build"] == common()["build"]
    assert service["volumes"] == common()["volumes"]
    missing = {key for key in common_env() if key not in service["environment"]}
    assert not missing, f"{name} lacks {sorted(missing)}"
    assert service["environment"][CONN_VAR] == common_env()[CONN_VAR]


def test_airflow_commands() -> None:
    commands = {name: services()[name].get("command") for name in AIRFLOW_SERVICES if name != "airflow-init"}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }


def test_long_running_services_have_healthchecks() -> None:
    for name, service in services().items():
        if name not in ("airflow-init", "airflow-cli"):
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_triggerer_runs_the_deferred_waits() -> None:
    assert services()["airflow-triggerer"]["command"] == "triggerer"
    assert common_env()["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "true"


def test_web_ui_and_default_user() -> None:
    assert "8080:8080" in services()["airflow-apiserver"]["ports"]
    init_env = services()["airflow-init"]["environment"]
    assert init_env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init_env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert default_of(init_env["_AIRFLOW_WWW_USER_USERNAME"], "_AIRFLOW_WWW_USER_USERNAME") == "airflow"
    assert default_of(init_env["_AIRFLOW_WWW_USER_PASSWORD"], "_AIRFLOW_WWW_USER_PASSWORD") == "airflow"
    depends = services()["airflow-apiserver"]["depends_on"]
    assert depends["airflow-init"]["condition"] == "service_completed_successfully"


# ------------------------------------------------------------------------------------- image and versions


def test_image_is_built_from_the_dockerfile_on_the_pinned_airflow() -> None:
    pins = airflow_version_pins()
    assert len(set(pins.values())) == 1, f"Airflow versions disagree: {pins}"
    assert common()["build"] in (".", {"context": "."})
    assert services()[SIMULATOR]["image"] == common()["image"]
    assert services()[SIMULATOR]["build"] == common()["build"]


def test_dockerfile_installs_the_package_as_the_airflow_user() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "airflow"
    install = next(line for line in lines if line.startswith("RUN pip install"))
    assert "--no-cache-dir" in install
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install  # pip must not move the image's Airflow


def test_build_context_keeps_what_pip_install_needs() -> None:
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("reading pyproject.toml needs Python 3.11+")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"pyproject.toml", project["readme"], "airflow_provider_ltx2"} <= allowed


# --------------------------------------------------------------------------------------- mounts and paths


def test_example_dags_are_the_dags_folder() -> None:
    volumes = common()["volumes"]
    assert "./example_dags:/opt/airflow/dags:ro" in volumes
    assert (REPO / "example_dags" / "example_ltx2_single_video.py").is_file()


def test_videos_land_in_a_mounted_directory() -> None:
    output_dir = common_env()["LTX2_EXAMPLE_OUTPUT_DIR"]
    assert f"./out:{output_dir}" in common()["volumes"]


# --------------------------------------------------------------------------------------------- simulator


def test_connection_points_at_the_simulator_unless_overridden() -> None:
    from airflow.models.connection import Connection

    value = default_of(common_env()[CONN_VAR], "LTX2_CONNECTION")
    # docker-compose 1.x ends a default at its first "}", so a JSON default would break a user's override.
    assert "}" not in value
    conn = Connection(conn_id="ltx2_default", uri=value)
    assert conn.conn_type == "ltx2"
    gateway = gateway_from_connection("ltx2_default", conn.host, conn.password)
    assert gateway.key == DEFAULT_KEY
    url = urlsplit(gateway.base_url)
    args = build_parser().parse_args(simulator_args()[1:])
    assert (url.scheme, url.hostname, url.port) == ("http", SIMULATOR, args.port)
    # The stack sets a spend cap, with its ledger in the output folder the host sees (./out).
    caps = spend_caps_from_extra("ltx2_default", conn.extra_dejson)
    assert (caps.daily_usd, caps.monthly_usd) == (30.0, 300.0)
    assert caps.ledger_uri == f"file://{common_env()['LTX2_EXAMPLE_OUTPUT_DIR']}/ltx2-spend"


def test_example_images_are_served_by_the_simulator() -> None:
    env = common_env()
    port = build_parser().parse_args(simulator_args()[1:]).port
    base = f"http://{SIMULATOR}:{port}/files/"
    assert default_of(env["LTX2_EXAMPLE_IMAGE_URL"], "LTX2_EXAMPLE_IMAGE_URL") == base + "sample.jpg"
    assert default_of(env["LTX2_EXAMPLE_IMAGE_BASE_URL"], "LTX2_EXAMPLE_IMAGE_BASE_URL") == base


def test_simulator_service_runs_the_console_script() -> None:
    service = services()[SIMULATOR]
    command = simulator_args()
    assert console_scripts()[command[0]] == "airflow_provider_ltx2.simulator.__main__:main"
    # The image's /entrypoint would run `airflow <command>`: the simulator must bypass it.
    assert "/entrypoint" not in service.get("entrypoint", ["/entrypoint"])
    args = build_parser().parse_args(command[1:])
    assert args.host == "0.0.0.0"  # reachable from the other containers
    assert args.key is None  # so it accepts its default key, the one the connection carries
    assert args.render == "auto"  # the image installs the render extra: videos honour the request
    assert str(args.port) in service["healthcheck"]["test"][-1]


def test_simulator_cli_accepts_the_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_ltx2.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    flags = [arg for arg in simulator_args()[1:] if arg.startswith("--")]
    assert flags and all(flag in done.stdout for flag in flags)


# ------------------------------------------------------------------------------------- docker-compose itself


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (scripts/check-compose.sh installs it)",
)
def test_docker_compose_accepts_the_file() -> None:
    override = '{"conn_type": "ltx2", "host": "https://gateway.example", "password": "k-1"}'
    env = {**os.environ, "AIRFLOW_UID": "50000", "LTX2_CONNECTION": override}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", "-f", str(COMPOSE_FILE), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    checked = run("config", "-q")
    assert checked.returncode == 0, checked.stderr
    resolved = run("config")
    assert resolved.returncode == 0, resolved.stderr
    for name in AIRFLOW_SERVICES:
        assert yaml.safe_load(resolved.stdout)["services"][name]["environment"][CONN_VAR] == override
