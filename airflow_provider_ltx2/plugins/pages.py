"""What the "LTX-2 video" tab (a batch task's page, for a batch task) and the "LTX-2 videos" gallery show,
and their HTML, and the HTML of the "LTX-2 spend" view.

The pages are plain HTML with no script (their Content-Security-Policy forbids any): every value comes
from XCom, which holds user text (prompts), so all of it goes through Jinja's autoescaping. URLs are shown
without user info, query or fragment, so a signed URL (an image the operator signed for the gateway) is
never printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_ltx2.batches.manifest import STATUSES
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD, REQUEST_FIELDS
from airflow_provider_ltx2.plugins.batch import page_links
from airflow_provider_ltx2.xcom import SUCCEEDED

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from jinja2 import Environment

    from airflow_provider_ltx2.plugins.batch import BatchSummary, ManifestPage
    from airflow_provider_ltx2.plugins.spend import SpendView

# What a task of this provider is doing while it has no video yet, by task instance state.
STATE_MESSAGES = {
    None: "not started yet: the video has not been requested.",
    "scheduled": "scheduled: the video has not been requested yet.",
    "queued": "queued: the video has not been requested yet.",
    "running": "running: submitting the request or waiting for the video.",
    "deferred": "deferred: waiting for the gateway to finish the video.",
    "up_for_retry": "up for retry: an earlier try failed; the next one reattaches to the paid request if it can.",
    "up_for_reschedule": "up for reschedule: waiting for the gateway between pokes.",
    "restarting": "restarting.",
    "failed": "failed: no video.",
    "upstream_failed": "upstream failed: the video was never requested.",
    "skipped": "skipped: no video.",
    "removed": "removed from the DAG.",
    "success": "finished without a video.",
}


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).netloc)


def display_url(url: Any) -> str:
    """``url`` without user info, query and fragment: where it points, never a credential or signature."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown + (" (query not shown)" if parts.query else "")


def finished_result(returned: Any) -> dict[str, Any] | None:
    """The return value when it is the result dict of a finished video (``delivery.result_dict``), else None."""
    if not isinstance(returned, dict) or returned.get("status") != SUCCEEDED:
        return None
    if isinstance(returned.get("output_uri"), str) or is_http_url(returned.get("video_url")):
        return returned
    return None


def size_text(size: Any) -> str:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "not downloaded"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} ({size:,} bytes)"
    return f"{size} bytes"


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class TaskSlot:
    """One task instance (one map index) as the views see it: its state and the XComs they read."""

    task_id: str
    map_index: int
    state: str | None
    returned: Any = None
    failure: Any = None

    @property
    def key(self) -> tuple[str, int]:
        return self.task_id, self.map_index

    @property
    def label(self) -> str:
        return f"{self.task_id} [{self.map_index}]" if self.map_index >= 0 else self.task_id

    @property
    def message(self) -> str:
        """Why there is no video (yet), in plain words."""
        if isinstance(self.returned, dict) and self.returned.get("status") == "submitted":
            return (
                f"submitted as request {self.returned.get('request_id')}: this task does not wait for the video "
                "(wait_for_completion=False); the task that waits for it shows it."
            )
        return STATE_MESSAGES.get(self.state, f"{self.state}: no video.")

    @property
    def failure_text(self) -> str | None:
        """The gateway's message kept in XCom ``ltx2_failure``, shown only for a failed task."""
        if self.state != "failed" or self.failure in (None, ""):
            return None
        if isinstance(self.failure, dict):
            return str(self.failure.get("message") or self.failure)
        return str(self.failure)


@dataclass(frozen=True)
class Video:
    """A finished video: its result dict, where the ``<video>`` element loads it from (None: nowhere), and why
    the plugin does not stream the file it was downloaded to, if it does not."""

    slot: TaskSlot
    result: dict[str, Any]
    src: str | None
    notice: str | None = None

    @property
    def request(self) -> dict[str, Any]:
        request = self.result.get("request")
        return request if isinstance(request, dict) else {}

    @property
    def prompt(self) -> str:
        return str(self.request.get("prompt") or "")

    @property
    def parameters(self) -> list[tuple[str, str]]:
        """The request's other fields, in the API's order; the image URL without its query."""
        known = [name for name in REQUEST_FIELDS if name in self.request]
        others = sorted(name for name in self.request if name not in REQUEST_FIELDS)
        return [
            (name, display_url(self.request[name]) if name == "image_url" else str(self.request[name]))
            for name in (*known, *others)
            if name != "prompt" and self.request[name] is not None
        ]

    @property
    def request_id(self) -> str:
        return str(self.result.get("request_id") or "")

    @property
    def reused(self) -> bool:
        return self.result.get("reused") is True

    @property
    def price_usd(self) -> float:
        return 0.0 if self.reused else PRICE_PER_VIDEO_USD

    @property
    def price_text(self) -> str:
        if self.reused:
            return "USD 0.00 (reused an earlier request's video: not charged again)"
        return f"USD {self.price_usd:.2f}"

    @property
    def size_text(self) -> str:
        return size_text(self.result.get("bytes"))

    @property
    def submitted_at(self) -> str:
        return str(self.result.get("submitted_at") or "unknown")

    @property
    def completed_at(self) -> str:
        return str(self.result.get("completed_at") or "unknown")

    @property
    def took(self) -> str | None:
        start, end = _parse_time(self.result.get("submitted_at")), _parse_time(self.result.get("completed_at"))
        if start is None or end is None:
            return None
        try:
            return f"{(end - start).total_seconds():.0f} s"
        except TypeError:  # one naive, one aware
            return None

    @property
    def stored_at(self) -> str:
        output_uri = self.result.get("output_uri")
        return display_url(output_uri) if output_uri else "not downloaded: played from the gateway's URL"


def total_price_usd(videos: Iterable[Video]) -> float:
    return round(sum(video.price_usd for video in videos), 2)


_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %}</title>
<style>
:root { color-scheme: light dark; --muted: #6b7280; --line: rgba(127, 127, 127, 0.3); }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px; }
h1 { font-size: 18px; margin: 0 0 12px; } h2 { font-size: 15px; margin: 16px 0 6px; }
.muted { color: var(--muted); font-weight: normal; }
video { display: block; width: 100%; max-width: 960px; max-height: 48vh; background: #000; border-radius: 6px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 12px 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
.prompt { white-space: pre-wrap; }
table { border-collapse: collapse; } td, th { text-align: left; padding: 2px 12px 2px 0; }
.status { font-size: 15px; } pre.failure { white-space: pre-wrap; padding: 8px; border: 1px solid var(--line); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 16px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.card h2 { margin: 8px 0 4px; font-size: 14px; } .card video { max-height: 40vh; }
</style>
</head>
<body>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

_TASK = """{% extends "base" %}
{% block title %}LTX-2 video: {{ slot.label }}{% endblock %}
{% block main %}
<h1>LTX-2 video <span class="muted">{{ slot.label }}</span></h1>
{% if not ours %}
<p class="status" data-status="not-ltx2">This task ({{ operator }}) is not an LTX-2 task: it has no video.</p>
{% elif video %}
{% if video.src %}<video controls preload="metadata" src="{{ video.src }}"></video>
{% endif %}
{% if video.notice %}<p class="status" data-status="refused">{{ video.notice }}</p>
{% endif %}
<dl>
<dt>Prompt</dt><dd class="prompt">{{ video.prompt }}</dd>
<dt>Request id</dt><dd data-field="request_id">{{ video.request_id }}</dd>
<dt>Price</dt><dd data-field="price">{{ video.price_text }}</dd>
<dt>Size</dt><dd data-field="size">{{ video.size_text }}</dd>
<dt>Submitted</dt><dd data-field="submitted_at">{{ video.submitted_at }}</dd>
<dt>Completed</dt><dd data-field="completed_at">{{ video.completed_at }}{% if video.took %}
 <span class="muted">({{ video.took }} after submit)</span>{% endif %}</dd>
<dt>Stored at</dt><dd data-field="stored_at">{{ video.stored_at }}</dd>
</dl>
<h2>Parameters</h2>
<table>
{% for name, value in video.parameters %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
{% else %}
<p class="status" data-status="{{ slot.state or 'none' }}">No video yet. This task is {{ slot.message }}</p>
{% if slot.failure_text %}<h2>The gateway said</h2>
<pre class="failure">{{ slot.failure_text }}</pre>{% endif %}
{% endif %}
{% endblock %}
"""

_GALLERY = """{% extends "base" %}
{% block title %}LTX-2 videos: {{ run_id }}{% endblock %}
{% block main %}
<h1>LTX-2 videos <span class="muted">{{ dag_id }} / {{ run_id }}</span></h1>
<p data-field="summary">{{ videos | length }} video{{ "" if videos | length == 1 else "s" }},
total price <strong data-field="total_price">USD {{ "%.2f" | format(total_price) }}</strong>
({{ paid }} paid, {{ videos | length - paid }} reused).</p>
<div class="grid">
{% for video in videos %}
<section class="card" data-task="{{ video.slot.task_id }}" data-map-index="{{ video.slot.map_index }}">
{% if video.src %}<video controls preload="metadata" src="{{ video.src }}"></video>
{% elif video.notice %}<p class="status" data-status="refused">{{ video.notice }}</p>{% endif %}
<h2>{{ video.slot.label }}</h2>
<div class="prompt">{{ video.prompt }}</div>
<div class="muted">{{ video.size_text }} · {{ video.price_text }}</div>
</section>
{% endfor %}
</div>
{% if batches %}
<h2>LTX-2 batches</h2>
<ul>
{% for slot, summary in batches %}
<li data-batch="{{ slot.task_id }}" data-map-index="{{ slot.map_index }}">{{ slot.label }}:
{% if summary %}{{ summary.videos }} video{{ "" if summary.videos == 1 else "s" }} in its batch
({{ summary.count("failed") }} failed{% if summary.count("planned") %},
{{ summary.count("planned") }} planned{% endif %}), spent {{ summary.cost_text }}: see the task's "LTX-2 video" tab.
{% else %}{{ slot.message }}{% endif %}</li>
{% endfor %}</ul>
{% endif %}
{% if pending %}
<h2>LTX-2 tasks without a video</h2>
<ul>
{% for slot in pending %}<li data-task="{{ slot.task_id }}" data-map-index="{{ slot.map_index }}">{{ slot.label }}:
{{ slot.message }}{% if slot.failure_text %} The gateway said: {{ slot.failure_text }}{% endif %}</li>
{% endfor %}</ul>
{% elif not videos and not batches %}
<p>This run has no LTX-2 tasks.</p>
{% endif %}
{% endblock %}
"""

_BATCH = """{% extends "base" %}
{% macro pager(name, current, last, other_name, other) %}
{% if last > 1 %}<nav class="pager" data-pager="{{ name }}">Page {{ current }} of {{ last }}
{% for label, target in page_links(current, last) %}
· <a href="?map_index={{ slot.map_index }}&amp;{{ name }}={{ target }}&amp;{{ other_name }}={{ other }}">{{ label }}</a>
{% endfor %}</nav>{% endif %}
{% endmacro %}
{% block title %}LTX-2 batch: {{ slot.label }}{% endblock %}
{% block main %}
<h1>LTX-2 batch <span class="muted">{{ slot.label }}</span></h1>
{% if summary %}
<dl>
<dt>Rows</dt><dd data-field="total">{{ summary.total }}</dd>
{% for status in statuses %}
<dt>{{ status | capitalize }}</dt><dd data-field="{{ status }}">{{ summary.count(status) }}</dd>
{% endfor %}
<dt>Spent</dt><dd data-field="cost">{{ summary.cost_text }}</dd>
<dt>Estimated cost</dt><dd data-field="estimated_cost">{{ summary.estimate_text }}</dd>
{% if manifest_uri %}<dt>Manifest</dt><dd data-field="manifest_uri">{{ manifest_uri }}</dd>{% endif %}
</dl>
{% if summary.count("planned") %}<p class="status" data-status="planned">Dry run: {{ summary.count("planned") }}
row{{ "" if summary.count("planned") == 1 else "s" }} planned, not generated; estimated cost
{{ summary.estimate_text }}.</p>{% endif %}
{% if notice %}<p class="status" data-status="refused">{{ notice }}</p>{% endif %}
{% else %}
<p class="status" data-status="{{ slot.state or 'none' }}">No batch summary yet. This task is {{ slot.message }}</p>
{% if slot.failure_text %}<h2>The gateway said</h2>
<pre class="failure">{{ slot.failure_text }}</pre>{% endif %}
{% if listing %}<p data-field="manifest_uri">The manifest its last try wrote: {{ manifest_uri }}</p>{% endif %}
{% endif %}
{% if listing %}
{% if listing.unreadable %}<p class="status" data-status="unreadable">{{ listing.unreadable }} line{{ ""
 if listing.unreadable == 1 else "s" }} of the manifest could not be read.</p>{% endif %}
<h2>Videos <span class="muted" data-field="video_count">{{ listing.video_count }}</span></h2>
{{ pager("page", listing.page, listing.pages, "failed_page", listing.failed_page) }}
<div class="grid">
{% for row in listing.videos %}
<section class="card" data-row="{{ row.id }}" data-status="{{ row.status }}">
{% if row.servable %}<video controls preload="metadata" src="{{ src(row.id) }}"></video>
{% else %}<p>Not served: this row's id is not a file name.</p>{% endif %}
<h2>{{ row.id }}</h2>
<div class="prompt">{{ row.prompt }}</div>
<div class="muted">{{ row.status }} · {{ size_text(row.size) }}</div>
</section>
{% endfor %}
</div>
<h2>Failed rows <span class="muted" data-field="failed_count">{{ listing.counts["failed"] }}</span></h2>
{{ pager("failed_page", listing.failed_page, listing.failed_pages, "page", listing.page) }}
{% if listing.failed %}<table class="failed">
<tr><th>Row</th><th>Prompt</th><th>The gateway said</th></tr>
{% for row in listing.failed %}<tr data-row="{{ row.id }}"><td>{{ row.id }}</td><td class="prompt">{{ row.prompt }}</td>
<td class="error">{{ row.error }}</td></tr>
{% endfor %}</table>{% endif %}
{% endif %}
{% endblock %}
"""

_SPEND = """{% extends "base" %}
{% block title %}LTX-2 spend: {{ conn_id }}{% endblock %}
{% block main %}
<h1>LTX-2 spend <span class="muted">{{ conn_id }}</span></h1>
{% if view %}
<p>What the tasks paying with the key of connection {{ conn_id }} paid or reserved, as its ledger
<span data-field="ledger_uri">{{ ledger_uri }}</span> records it.</p>
<table class="periods">
<tr><th></th><th>Paid or reserved</th><th>Cap</th><th></th></tr>
{% for period in (view.today, view.month) %}
<tr data-period="{{ period.name }}">
<th>{{ period.name | capitalize }} <span class="muted">{{ period.label }}</span></th>
<td data-field="spent">{{ period.spent_text }}</td><td data-field="cap">{{ period.cap_text }}</td>
<td data-field="left">{{ period.left_text or "" }}</td></tr>
{% endfor %}
</table>
<h2>Per DAG</h2>
{% if view.rows or view.unreadable %}
<table class="dags">
<tr><th>DAG</th><th>Today</th><th>This month</th></tr>
{% for row in view.rows %}
<tr data-dag="{{ row.dag_id }}"><td>{{ row.dag_id }}</td><td data-field="today">{{ row.today_text }}</td>
<td data-field="month">{{ row.month_text }}</td></tr>
{% endfor %}
{% if view.unreadable %}
<tr data-dag-unreadable><td class="muted">DAGs you may not read</td>
<td data-field="today">{{ view.unreadable.today_text }}</td>
<td data-field="month">{{ view.unreadable.month_text }}</td></tr>
{% endif %}
</table>
{% else %}
<p data-status="no-spend">No spend recorded this month.</p>
{% endif %}
{% elif status == "no-ledger" %}
<p class="status" data-status="no-ledger">Connection {{ conn_id }} keeps no spend ledger, so there is no spend to
show. To record and cap what its key spends, set its extras <code>spend_ledger_uri</code> (a folder in any object
store, such as s3://bucket/ltx2-spend/), <code>spend_ledger_conn_id</code> (the store's connection, if it needs
one), and, for caps, <code>daily_budget_usd</code> and <code>monthly_budget_usd</code> (USD).</p>
{% else %}
<p class="status" data-status="{{ status }}">{{ message }}</p>
{% endif %}
{% endblock %}
"""


@cache
def _environment() -> Environment:
    from jinja2 import DictLoader, Environment, StrictUndefined

    templates = {"base": _BASE, "task": _TASK, "gallery": _GALLERY, "batch": _BATCH, "spend": _SPEND}
    return Environment(
        loader=DictLoader(templates), autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )


def _render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)


def task_page(slot: TaskSlot, video: Video | None, *, ours: bool, operator: str) -> str:
    """The "LTX-2 video" tab of one task instance."""
    return _render("task", slot=slot, video=video, ours=ours, operator=operator)


def gallery_page(
    dag_id: str,
    run_id: str,
    videos: list[Video],
    pending: list[TaskSlot],
    batches: list[tuple[TaskSlot, BatchSummary | None]],
) -> str:
    """The "LTX-2 videos" tab of a DAG run: every video of its single-video tasks, a line per batch task (its
    own tab pages through its videos), and its LTX-2 tasks still without a video."""
    return _render(
        "gallery",
        dag_id=dag_id,
        run_id=run_id,
        videos=videos,
        pending=pending,
        batches=batches,
        total_price=total_price_usd(videos),
        paid=sum(not video.reused for video in videos),
    )


def batch_page(
    slot: TaskSlot,
    summary: BatchSummary | None,
    listing: ManifestPage | None,
    *,
    manifest_uri: str | None,
    notice: str | None,
    src: Callable[[str], str],
) -> str:
    """A batch task's tab: its counts and spend, a page of its videos (``src`` of a row id plays one) and of
    its failed rows; ``notice`` says why the manifest was not read."""
    return _render(
        "batch",
        slot=slot,
        summary=summary,
        listing=listing,
        notice=notice,
        src=src,
        statuses=STATUSES,
        page_links=page_links,
        size_text=size_text,
        manifest_uri=display_url(manifest_uri) if manifest_uri else None,
    )


def spend_page(conn_id: str, view: SpendView | None = None, *, status: str = "shown", message: str = "") -> str:
    """The "LTX-2 spend" view of connection ``conn_id``: ``view``'s figures, or ``message`` saying why there are
    none (``status``: "invalid", "unreadable", "no-connection"); "no-ledger" says how to set one up."""
    ledger_uri = display_url(view.ledger_uri) if view else ""
    return _render("spend", conn_id=conn_id, view=view, ledger_uri=ledger_uri, status=status, message=message)
