"""The "LTX-2 spend" page of the provider's UI plugin in headless Chromium, against a real api-server: the key's
spend today and this month, per DAG, from a ledger the spend guard wrote, against the connection's caps.

Run with ``scripts/browser-test.sh``. A screenshot of the page is written to ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.request import Request, urlopen

import pytest

from airflow_provider_ltx2.api.connection import SpendCaps
from airflow_provider_ltx2.spend import SpendGuard, TaskIdentity
from tests.browser.conftest import BATCH_DAG_ID, DAG_ID, SCREENSHOTS, AirflowUI, run_dir_path
from tests.browser.test_plugin_ui import open_tab, plugin_frame
from tests.conftest import KEY

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

DEFAULT_CONN_ID = "ltx2_default"  # the page's connection unless its URL names another


def call_api(ui: AirflowUI, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    """A REST API call of the logged-in user; its status."""
    request = Request(
        f"{ui.base_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ui.token}", "Content-Type": "application/json"},
        method=method,
    )
    with urlopen(request, timeout=30) as reply:
        return int(reply.status)


@pytest.fixture
def spend_ledger(airflow_ui: AirflowUI) -> Iterator[None]:
    """``ltx2_default`` (made through the REST API) with a ledger and a daily cap of USD 10; today the single-video
    DAG paid for 1 video and the batch DAG for 3 of the 4 it reserved."""
    folder = run_dir_path() / "spend-ledger"
    caps = SpendCaps(daily_usd=10.0, ledger_uri=f"file://{folder}")
    for dag_id, reserved, paid in ((DAG_ID, 1, 1), (BATCH_DAG_ID, 4, 3)):
        identity = TaskIdentity(dag_id, "manual__spend", "generate_video", -1, 1)
        with SpendGuard(caps, DEFAULT_CONN_ID, identity, logging.getLogger(__name__)).reserved(reserved) as spent:
            spent.paid_for(paid)
    connection = {
        "connection_id": DEFAULT_CONN_ID,
        "conn_type": "ltx2",
        "host": airflow_ui.simulator.base_url,
        "password": KEY,
        "extra": json.dumps({"spend_ledger_uri": caps.ledger_uri, "daily_budget_usd": "10"}),
    }
    assert call_api(airflow_ui, "POST", "/api/v2/connections", connection) == 201
    try:
        yield
    finally:
        call_api(airflow_ui, "DELETE", f"/api/v2/connections/{DEFAULT_CONN_ID}")


def test_spend_page_shows_the_keys_spend_per_dag(page: Any, airflow_ui: AirflowUI, spend_ledger: None) -> None:
    open_tab(page, "/", "ltx2-spend")  # its entry in the navigation
    view = plugin_frame(page, "LTX-2 spend")
    expect(view.get_by_role("heading", name=re.compile(r"LTX-2 spend"))).to_be_visible()
    today, month = view.locator('tr[data-period="today"]'), view.locator('tr[data-period="this month"]')
    expect(today.locator('[data-field="spent"]')).to_have_text("USD 2.40")
    expect(today.locator('[data-field="cap"]')).to_have_text("USD 10.00")
    expect(today.locator('[data-field="left"]')).to_have_text("USD 7.60 left")
    expect(month.locator('[data-field="spent"]')).to_have_text("USD 2.40")
    expect(month.locator('[data-field="cap"]')).to_have_text("no cap")
    for dag_id, spent in ((BATCH_DAG_ID, "USD 1.80"), (DAG_ID, "USD 0.60")):
        expect(view.locator(f'tr[data-dag="{dag_id}"] [data-field="today"]')).to_have_text(spent)
    expect(view.locator("body")).not_to_contain_text(KEY)
    page.screenshot(path=str(SCREENSHOTS / "ltx2-spend.png"))
