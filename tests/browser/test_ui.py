"""The provider as a user meets it in Airflow's UI, in headless Chromium: the connection form and the extra link.

Run with ``scripts/browser-test.sh`` (installs Chromium and Playwright when missing). Screenshots of
both views are written to ``docs/screenshots/``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.conftest import DAG_ID, SCREENSHOTS, TASK_ID, AirflowUI

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

DEFAULT_BASE_URL = "https://gateway.pixazo.ai"


def choose_connection_type(dialog: Any, page: Any, typed: str, option: str | re.Pattern[str]) -> None:
    """Pick a type in the form's searchable select (a combobox with a listbox of options)."""
    combobox = dialog.get_by_role("combobox", name="Connection Type")
    combobox.click()
    combobox.fill(typed)
    choice = page.get_by_role("option", name=option, exact=isinstance(option, str))
    expect(choice).to_have_count(1)
    choice.click()


def test_connection_form_shows_the_ltx2_fields(page: Any, airflow_ui: AirflowUI) -> None:
    page.goto("/connections")
    page.get_by_role("button", name=re.compile(r"add connection", re.IGNORECASE)).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Connection ID").fill("ltx2_default")

    # The type is offered under the hook's name; typing the connection type finds it.
    choose_connection_type(dialog, page, "ltx2", re.compile(r"^LTX-2\b"))
    expect(dialog).to_contain_text("LTX-2 (Pixazo gateway)")

    key = dialog.get_by_label("Subscription key", exact=True)
    expect(key).to_be_visible()
    expect(key).to_be_editable()
    expect(key).to_have_attribute("type", "password")
    key.fill("not-a-real-key")
    expect(key).to_have_value("not-a-real-key")
    expect(key).to_have_attribute("type", "password")  # still masked once it holds a value

    host = dialog.get_by_label("Gateway base URL", exact=True)
    expect(host).to_be_visible()
    expect(host).to_be_editable()
    expect(host).to_have_attribute("placeholder", DEFAULT_BASE_URL)
    expect(host).to_have_value("")  # a placeholder, not a value: an empty host means the default gateway
    expect(host).not_to_have_attribute("type", "password")

    # Hidden fields are not rendered at all; the relabelled ones lost their generic labels.
    for label in ("Login", "Port", "Schema", "Host", "Password"):
        expect(dialog.get_by_label(label, exact=True)).to_have_count(0)
    for name in ("login", "port", "schema"):
        expect(dialog.locator(f"[name='{name}']")).to_have_count(0)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dialog.screenshot(path=str(SCREENSHOTS / "connection-form.png"))

    # Control: the same checks do see those fields on a type that shows them (HTTP, a dependency).
    choose_connection_type(dialog, page, "http", "HTTP")
    for label in ("Login", "Port", "Schema", "Host", "Password"):
        expect(dialog.get_by_label(label, exact=True)).to_have_count(1)
    expect(dialog.get_by_label("Subscription key", exact=True)).to_have_count(0)


def test_finished_task_shows_the_video_link(page: Any, airflow_ui: AirflowUI) -> None:
    run = quote(airflow_ui.run_id, safe="")
    xcom = airflow_ui.api(f"/api/v2/dags/{DAG_ID}/dagRuns/{run}/taskInstances/{TASK_ID}/xcomEntries/video_url")
    video_url = xcom["value"]
    assert isinstance(video_url, str), xcom
    assert re.fullmatch(re.escape(airflow_ui.simulator.base_url) + r"/files/[\w.-]+\.mp4", video_url), video_url

    page.goto(airflow_ui.task_instance_path)
    expect(page.get_by_role("heading", name=TASK_ID).first).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    details = page.get_by_role("link", name="Details", exact=True).or_(
        page.get_by_role("tab", name="Details", exact=True)
    )
    details.first.click()

    # The extra link is a button that opens a new window; the plugin's tab of the same name is a plain link.
    link = page.get_by_role("link", name="LTX-2 video", exact=True).and_(page.locator("a[target='_blank']"))
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", video_url)
    link.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "extra-link.png"))

    # The link leads to the video itself.
    reply = page.request.get(video_url, timeout=30_000)
    assert reply.ok, reply.status
    assert reply.body()[4:8] == b"ftyp", "the link does not serve an MP4"
