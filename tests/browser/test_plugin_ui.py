"""The provider's UI plugin in headless Chromium, against a real api-server: the "LTX-2 video" tab of a task
instance (a batch task's page for a batch task) and the "LTX-2 videos" gallery of a DAG run, each playing the
MP4s the run downloaded.

Run with ``scripts/browser-test.sh``. Screenshots of both views are written to ``docs/screenshots/``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.conftest import (
    BATCH_DAG_ID,
    BATCH_TASKS,
    DAG_ID,
    SCREENSHOTS,
    TASK_ID,
    AirflowUI,
    new_context,
)
from tests.integration.plugins.test_plugin import SIMULATED_FAILURE

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

SAMPLE_SECONDS = 2.0  # the simulator's bundled sample clip, whatever duration was asked for
# Resolves once the element knows its duration (metadata loaded); rejects on a media error.
DURATION_JS = """video => video.readyState >= 1 ? video.duration : new Promise((resolve, reject) => {
    video.addEventListener("loadedmetadata", () => resolve(video.duration), {once: true});
    video.addEventListener("error", () => reject(new Error("media error " + video.error?.code)), {once: true});
    video.load();
})"""
SEEK_JS = """(video, to) => new Promise((resolve, reject) => {
    video.addEventListener("seeked", () => resolve(video.currentTime), {once: true});
    video.addEventListener("error", () => reject(new Error("media error " + video.error?.code)), {once: true});
    video.currentTime = to;
})"""


def plugin_frame(page: Any, name: str) -> Any:
    """The plugin's view: Airflow shows it in an iframe titled with the view's name."""
    return page.frame_locator(f'iframe[title="{name}"]')


def open_tab(page: Any, path: str, url_route: str) -> None:
    """Open a page of Airflow's UI and click the plugin's tab on it, as a user would."""
    page.goto(path)
    page.locator(f'a[href$="/plugin/{url_route}"]').first.click()
    expect(page).to_have_url(re.compile(f"/plugin/{url_route}$"))


def test_video_tab_plays_the_clip_and_seeks(page: Any, airflow_ui: AirflowUI) -> None:
    streamed: list[Any] = []
    page.on("response", lambda response: streamed.append(response) if "video.mp4" in response.url else None)
    open_tab(page, airflow_ui.task_instance_path, "ltx2-video")
    tab = plugin_frame(page, "LTX-2 video")
    expect(tab.get_by_role("heading", name=re.compile(r"LTX-2 video"))).to_be_visible()
    expect(tab.locator("dd.prompt")).to_have_text(re.compile(r"Slow dolly-in on a lighthouse"))
    expect(tab.locator('[data-field="price"]')).to_have_text("USD 0.60")
    expect(tab.locator('[data-field="size"]')).to_have_text(re.compile(r"\(\d{1,3}(,\d{3})* bytes\)"))

    video = tab.locator("video")
    duration = video.evaluate(DURATION_JS)
    assert duration == pytest.approx(SAMPLE_SECONDS, abs=0.1)
    assert video.evaluate(SEEK_JS, 1.5) == pytest.approx(1.5, abs=0.1)

    partial = [response for response in streamed if response.status == 206]
    assert partial, [(response.url, response.status) for response in streamed]
    assert all("/ltx2/" in response.url for response in streamed)
    assert re.fullmatch(r"bytes \d+-\d+/\d+", partial[0].headers["content-range"])
    page.screenshot(path=str(SCREENSHOTS / "ltx2-video-tab.png"))


def test_gallery_lists_every_map_index_of_the_mapped_run(page: Any, airflow_ui: AirflowUI) -> None:
    open_tab(page, airflow_ui.run_path(BATCH_DAG_ID), "ltx2-videos")
    gallery = plugin_frame(page, "LTX-2 videos")
    cards = gallery.locator("section.card")
    expect(cards).to_have_count(3)
    assert [cards.nth(index).get_attribute("data-map-index") for index in range(3)] == ["0", "1", "2"]
    for prompt in ("fishing harbour", "night market", "apple orchard"):  # example_dags/data/prompts.csv
        expect(gallery.locator("section.card", has_text=prompt)).to_have_count(1)
    expect(gallery.locator('[data-field="total_price"]')).to_have_text("USD 1.80")
    for index in range(3):
        card_video = cards.nth(index).locator("video")
        assert card_video.evaluate(DURATION_JS) == pytest.approx(SAMPLE_SECONDS, abs=0.1)
        card_video.evaluate(SEEK_JS, 1.0)  # a frame from the clip's middle, for the screenshot
    page.screenshot(path=str(SCREENSHOTS / "ltx2-gallery.png"))


def test_tab_of_each_map_index_and_of_another_task(page: Any, airflow_ui: AirflowUI) -> None:
    run_path = airflow_ui.run_path(BATCH_DAG_ID)
    page.goto(f"{run_path}/tasks/{TASK_ID}/mapped/1/plugin/ltx2-video")
    tab = plugin_frame(page, "LTX-2 video")
    expect(tab.locator("dd.prompt")).to_have_text(re.compile(r"night market"))
    assert tab.locator("video").evaluate(DURATION_JS) == pytest.approx(SAMPLE_SECONDS, abs=0.1)

    page.goto(f"{run_path}/tasks/read_requests/plugin/ltx2-video")
    expect(plugin_frame(page, "LTX-2 video").locator("body")).to_contain_text("is not an LTX-2 task")


def test_batch_tab_shows_counts_videos_and_failed_rows(page: Any, airflow_ui: AirflowUI) -> None:
    open_tab(page, f"{airflow_ui.run_path(BATCH_TASKS)}/tasks/batch", "ltx2-video")
    tab = plugin_frame(page, "LTX-2 video")
    expect(tab.get_by_role("heading", name=re.compile(r"LTX-2 batch"))).to_be_visible()
    for field, shown in (("total", "30"), ("generated", "27"), ("reused", "1"), ("failed", "2"), ("cost", "USD 17.40")):
        expect(tab.locator(f'[data-field="{field}"]')).to_have_text(shown)
    cards = tab.locator("section.card")
    expect(cards).to_have_count(24)
    expect(cards.first.locator("video")).to_be_visible()
    expect(tab.locator('section.card[data-row="row-03"] .prompt')).to_have_text(re.compile(r"<script>alert"))
    for index in (0, 23):
        card_video = cards.nth(index).locator("video")
        assert card_video.evaluate(DURATION_JS) == pytest.approx(SAMPLE_SECONDS, abs=0.1)
        card_video.evaluate(SEEK_JS, 1.0)
    error = tab.locator('tr[data-row="row-05"] td.error')
    expect(error).to_be_visible()
    expect(error).to_have_text(re.compile(rf"^LTX-2 generation \S+ failed .*: {SIMULATED_FAILURE}$"))
    expect(tab.locator('tr[data-row="row-17"] td.prompt')).to_have_text(re.compile(r"^Lighthouse <script>alert"))
    page.screenshot(path=str(SCREENSHOTS / "ltx2-batch-tab.png"))

    tab.get_by_role("link", name="next").first.click()
    expect(cards).to_have_count(4)
    expect(tab.locator("nav.pager").first).to_contain_text("Page 2 of 2")


def plugin_urls(ui: AirflowUI) -> list[str]:
    base, batch = f"/ltx2{ui.run_path()}", f"/ltx2{ui.run_path(BATCH_TASKS)}/tasks/batch"
    return [
        f"{base}/tasks/{TASK_ID}/video",
        f"{base}/tasks/{TASK_ID}/video.mp4",
        f"{base}/videos",
        f"{batch}/video",
        f"{batch}/batch/row-01.mp4",
    ]


def test_unauthenticated_and_tampered_requests_are_refused(browser: Any, page: Any, airflow_ui: AirflowUI) -> None:
    anonymous = new_context(browser, airflow_ui.base_url)
    forged = airflow_ui.token[:-6] + ("A" * 6 if not airflow_ui.token.endswith("A" * 6) else "B" * 6)
    # Sent as a header each time: Airflow answers a bad token by also deleting the cookie.
    tampered = {"Cookie": f"_token={forged}"}
    try:
        for url in plugin_urls(airflow_ui):
            assert anonymous.request.get(url).status == 401, url
            assert anonymous.request.get(url, headers=tampered).status == 403, url  # Airflow's answer to a bad JWT
            assert page.request.get(url).status == 200, url  # the same request, logged in

        shown = anonymous.new_page()
        assert shown.goto(plugin_urls(airflow_ui)[0]).status == 401
        expect(shown.locator("video")).to_have_count(0)
        batch_run = quote(airflow_ui.run_ids[BATCH_DAG_ID], safe="")
        for url, status in (
            (f"/ltx2/dags/{DAG_ID}/runs/{batch_run}/tasks/{TASK_ID}/video", 404),  # another DAG's run
            (f"/ltx2/dags/{BATCH_DAG_ID}/runs/{batch_run}/tasks/{TASK_ID}/video?map_index=7", 404),
            (f"/ltx2/dags/{BATCH_DAG_ID}/runs/{batch_run}/tasks/{TASK_ID}/video?map_index=..%2F1", 400),
            (f"/ltx2/dags/{BATCH_DAG_ID}/runs/{batch_run}/tasks/..%2F..%2F..%2Fetc%2Fpasswd/video.mp4", 404),
            (f"/ltx2/dags/{DAG_ID}/runs/..%2F..%2F{batch_run}/videos", 404),
        ):
            assert page.request.get(url).status == status, url
    finally:
        anonymous.close()
