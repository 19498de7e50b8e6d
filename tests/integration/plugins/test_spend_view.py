"""The "LTX-2 spend" view inside the api-server's own app, over a real ledger (a file:// folder the spend guard
writes) and a real SQLite metadata DB, called with JWTs of Airflow's simple auth manager.

The DAGs are rows of the metadata DB in a bundle of their own (as the dag-processor would leave them), so that
Airflow's auth manager knows which of them a user may read; the ledger's records are written by ``SpendGuard``
(today's) and ``Ledger`` (other days), as tasks write them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import airflow
import pytest
from packaging.version import Version

from airflow_provider_ltx2.api.connection import SpendCaps
from airflow_provider_ltx2.spend import Ledger, RecordName, SpendGuard, TaskIdentity
from tests.conftest import KEY, SPEND_EXTRAS, airflow_env
from tests.integration.plugins.test_plugin import HOME, login

pytestmark = pytest.mark.skipif(
    Version(airflow.__version__) < Version("3.1"), reason="the plugin's views need Airflow 3.1+ and its api-server"
)

BUNDLE, TEAM_BUNDLE, TEAM = "ltx2-spend-dags", "ltx2-spend-team-dags", "ltx2-spend-team"
ADS, TRAILERS = "spend_ads", "spend_trailers"  # TRAILERS is in the team's bundle
HOSTILE_DAG = '<script>alert("spend")</script>'  # in the ledger as %3Cscript%3E...: data, never markup
CONN_ID = "ltx2_spend"
STORE_SECRET = "store-secret-3e8a41c0"  # distinctive, so a leak is easy to find
NOW = datetime.now(timezone.utc)
TODAY = NOW.strftime("%Y-%m-%d")
FIRST_OF_MONTH = NOW.strftime("%Y-%m-01")
LAST_MONTH = (NOW.replace(day=1) - timedelta(days=1)).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class SpendLedger:
    uri: str
    today_cents: int
    month_cents: int


def ltx2_connection(**extra: str) -> str:
    """An ``ltx2`` connection with the key, as ``AIRFLOW_CONN_*`` JSON: the api-server reads it there."""
    return json.dumps({"conn_type": "ltx2", "host": "https://gateway.example", "password": KEY, "extra": extra})


def settled(ledger: Ledger, dag_id: str, day: str, cents: int) -> None:
    record = RecordName(day, dag_id, uuid.uuid4().hex, reserved=cents, spent=cents, settled=True)
    ledger.write(record, {"dag_id": dag_id, "state": "settled"})


@pytest.fixture(scope="module")
def spend_ledger(tmp_path_factory: pytest.TempPathFactory) -> SpendLedger:
    """Today: ADS paid 1 of the 2 videos it reserved, TRAILERS holds an open reservation of 3, the hostile
    folder paid 1; earlier this month ADS paid USD 12.00, and last month's USD 9.99 is not this month's."""
    uri = f"file://{tmp_path_factory.mktemp('ledger')}"
    caps = SpendCaps(daily_usd=5.0, ledger_uri=uri)
    log = logging.getLogger(__name__)
    for dag_id, videos, paid in ((ADS, 2, 1), (HOSTILE_DAG, 1, 1)):
        guard = SpendGuard(caps, CONN_ID, TaskIdentity(dag_id, "manual__1", "generate", -1, 1), log)
        with guard.reserved(videos) as reservation:
            reservation.paid_for(paid)
    SpendGuard(caps, CONN_ID, TaskIdentity(TRAILERS, "manual__1", "batch", -1, 1), log).reserve(3)
    ledger = Ledger(uri, None)
    settled(ledger, ADS, FIRST_OF_MONTH, 1200)
    settled(ledger, ADS, LAST_MONTH, 999)
    today = 60 + 60 + 180 + (1200 if FIRST_OF_MONTH == TODAY else 0)
    return SpendLedger(uri, today_cents=today, month_cents=60 + 60 + 180 + 1200)


@pytest.fixture(scope="module")
def dags_in_airflow() -> Iterator[None]:
    """This process's metadata DB migrated, with ADS and the hostile id in one bundle and TRAILERS in a team's."""
    from airflow import settings
    from airflow.models.dag import DagModel, clear_team_name_cache
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    env = airflow_env(HOME, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=str(settings.SQL_ALCHEMY_CONN))
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    dags = {ADS: BUNDLE, HOSTILE_DAG: BUNDLE, TRAILERS: TEAM_BUNDLE}
    with create_session() as session:
        team_bundle = DagBundleModel(name=TEAM_BUNDLE)
        team_bundle.teams.append(Team(name=TEAM))
        session.add_all((DagBundleModel(name=BUNDLE), team_bundle))
        session.flush()
        session.add_all(DagModel(dag_id=dag_id, bundle_name=bundle) for dag_id, bundle in dags.items())
    clear_team_name_cache()
    yield
    with create_session() as session:
        for dag_id in dags:
            session.delete(session.get(DagModel, dag_id))
        session.flush()
        team_bundle = session.get(DagBundleModel, TEAM_BUNDLE)
        team_bundle.teams.clear()
        session.delete(session.get(Team, TEAM))
        for name in (BUNDLE, TEAM_BUNDLE):
            session.delete(session.get(DagBundleModel, name))
    clear_team_name_cache()


@pytest.fixture(scope="module")
def client(dags_in_airflow: None, spend_ledger: SpendLedger) -> Iterator[Any]:
    """The api-server's app, with users who must log in, and the ``ltx2_spend`` connection on that ledger."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # what airflow.api_fastapi.main sets
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", uuid.uuid4().hex * 2)
        patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", ltx2_connection(spend_ledger_uri=spend_ledger.uri))
        from airflow.api_fastapi.app import create_app

        with TestClient(create_app()) as test_client:
            yield test_client


def spend_url(conn_id: str = CONN_ID) -> str:
    return f"/ltx2/spend?conn_id={conn_id}"


def row(dag_attribute: str, today: str, month: str) -> str:
    """A DAG's row of the per-DAG table, as the page writes it."""
    return (
        f'<tr data-dag="{dag_attribute}"><td>{dag_attribute}</td><td data-field="today">{today}</td>\n'
        f'<td data-field="month">{month}</td></tr>'
    )


def money(cents: int) -> str:
    return f"USD {cents / 100:,.2f}"


def test_view_shows_the_keys_spend_and_its_caps(client: Any, spend_ledger: SpendLedger, monkeypatch: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_CAPPED",
        ltx2_connection(spend_ledger_uri=spend_ledger.uri + "/", daily_budget_usd="5", monthly_budget_usd=""),
    )
    reply = client.get(spend_url("ltx2_capped"), headers=login("op", [TEAM]))
    assert reply.status_code == 200, reply.text
    page = reply.text
    today = f'<td data-field="spent">{money(spend_ledger.today_cents)}</td><td data-field="cap">USD 5.00</td>'
    month = f'<td data-field="spent">{money(spend_ledger.month_cents)}</td><td data-field="cap">no cap</td>'
    assert today in page and month in page
    assert f'data-field="ledger_uri">{spend_ledger.uri}<' in page
    assert row(ADS, "USD 0.60", money(60 + 1200)) in page
    assert row(TRAILERS, "USD 1.80", "USD 1.80") in page  # an open reservation counts whole
    assert "DAGs you may not read" not in page
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy


def test_hostile_dag_folder_is_shown_as_text(client: Any) -> None:
    page = client.get(spend_url(), headers=login("op", [TEAM])).text
    escaped = "&lt;script&gt;alert(&#34;spend&#34;)&lt;/script&gt;"
    assert row(escaped, "USD 0.60", "USD 0.60") in page
    assert "<script" not in page


def test_rows_are_only_the_dags_the_user_may_read(client: Any, spend_ledger: SpendLedger) -> None:
    page = client.get(spend_url(), headers=login("op", ["other"])).text
    assert f'data-dag="{ADS}"' in page and f'data-dag="{TRAILERS}"' not in page and TRAILERS not in page
    # The key's totals stay whole; the team's DAG is in the sum of the DAGs the user may not read.
    assert f'<td data-field="spent">{money(spend_ledger.month_cents)}</td>' in page
    assert 'DAGs you may not read</td>\n<td data-field="today">USD 1.80</td>' in page


def test_users_without_access_are_refused(client: Any) -> None:
    assert client.get(spend_url()).status_code == 401
    header = login("op")["Authorization"]
    tampered = {"Authorization": header[:-4] + ("AAAA" if not header.endswith("AAAA") else "BBBB")}
    assert client.get(spend_url(), headers=tampered).status_code in (401, 403)
    assert client.get(spend_url(), headers=login(None)).status_code == 403
    # A viewer may read DAGs but not connections (the simple auth manager's rule): the view reads one's extras.
    assert client.get(spend_url(), headers=login("viewer")).status_code == 403
    assert client.get(spend_url(), headers=login("op")).status_code == 200


def test_no_key_nor_store_secret_on_any_page(client: Any, spend_ledger: SpendLedger, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_STORE", json.dumps({"conn_type": "aws", "password": STORE_SECRET}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_UNREADABLE",
        ltx2_connection(spend_ledger_uri="nosuchstore://bucket/ledger", spend_ledger_conn_id="ltx2_store"),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_CREDENTIALS", ltx2_connection(spend_ledger_uri=f"s3://AKIA1:{STORE_SECRET}@bucket/ledger")
    )
    for conn_id in (CONN_ID, "ltx2_unreadable", "ltx2_credentials"):
        page = client.get(spend_url(conn_id), headers=login("op")).text
        assert KEY not in page and STORE_SECRET not in page, conn_id


def test_ledger_that_cannot_be_read_is_502_with_a_message(client: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_UNREADABLE", ltx2_connection(spend_ledger_uri="nosuchstore://bucket/ledger"))
    reply = client.get(spend_url("ltx2_unreadable"), headers=login("op"))
    assert reply.status_code == 502
    assert 'data-status="unreadable">Could not read the spend ledger nosuchstore://bucket/ledger' in reply.text
    assert "Traceback" not in reply.text


def test_connection_without_a_ledger_says_how_to_set_one(client: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_PLAIN", ltx2_connection())
    reply = client.get(spend_url("ltx2_plain"), headers=login("op"))
    assert reply.status_code == 200 and 'data-status="no-ledger"' in reply.text
    assert all(f"<code>{extra}</code>" in reply.text for extra in SPEND_EXTRAS)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"daily_budget_usd": "lots"}, "daily_budget_usd='lots'"),
        ({"monthly_budget_usd": "10"}, "monthly_budget_usd=10 without spend_ledger_uri"),
        ({"spend_ledger_uri": "s3://AKIA1:pass@bucket/x"}, "spend_ledger_uri='s3://***@bucket/x'"),
    ],
)
def test_broken_extra_is_named(client: Any, monkeypatch: Any, extra: dict[str, str], named: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_BROKEN", ltx2_connection(**extra))
    reply = client.get(spend_url("ltx2_broken"), headers=login("op"))
    assert reply.status_code == 200
    assert 'data-status="invalid">Connection &#39;ltx2_broken&#39;' in reply.text
    assert named.replace("'", "&#39;") in reply.text and "pass@" not in reply.text and "AKIA1" not in reply.text


@pytest.mark.parametrize(
    ("conn_id", "expected"),
    [
        ("no_such_connection", 404),
        ("%3Cb%3E", 400),
        ("a%20b", 400),
        ("x" * 251, 422),  # FastAPI's answer to a query parameter past its bound
    ],
)
def test_unknown_and_malformed_connection_ids(client: Any, conn_id: str, expected: int) -> None:
    assert client.get(spend_url(conn_id), headers=login("op")).status_code == expected


def test_the_view_is_in_the_navigation() -> None:
    from airflow_provider_ltx2.plugins.ltx2 import Ltx2Plugin

    views = {view["name"]: view for view in Ltx2Plugin.external_views}
    assert views["LTX-2 spend"]["destination"] == "nav"
    assert views["LTX-2 spend"]["href"].endswith("/ltx2/spend")


def test_default_connection_is_ltx2_default(client: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", ltx2_connection())
    page = client.get("/ltx2/spend", headers=login("op")).text
    assert '<h1>LTX-2 spend <span class="muted">ltx2_default</span></h1>' in page


def test_ledger_files_are_where_the_guard_writes_them(spend_ledger: SpendLedger) -> None:
    """The hostile DAG's folder is percent-encoded in the store: the view reads it back as a name."""
    folders = {path.name for path in Path(spend_ledger.uri.removeprefix("file://")).glob("*/*/*")}
    assert "%3Cscript%3Ealert%28%22spend%22%29%3C%2Fscript%3E" in folders
