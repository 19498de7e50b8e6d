"""A batch task as the plugin sees it: its summary (XCom ``return_value``) and its manifest, read a page at a time.

A batch writes row ``id``'s video to ``{output_prefix}/{id}.mp4`` and one JSON line a row to
``{output_prefix}/manifest.jsonl``, for tables of 10,000 rows and more: the manifest is read line by line,
keeping the rows of one page and only counting the others. The folder always comes from the task's rendered
``output_prefix``; the summary in XCom (which the REST API lets an editor change) only has to agree with it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2.batches.manifest import VIDEO_STATUSES, is_row_id, manifest_uri

if TYPE_CHECKING:
    from collections.abc import Iterable

VIDEOS_PER_PAGE = 24
FAILED_PER_PAGE = 50


def usd_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "unknown"
    return f"USD {value:.2f}"


@dataclass(frozen=True)
class BatchSummary:
    """The batch task's return value: its counts, spend and where it wrote (small, whatever the table size)."""

    returned: dict[str, Any]

    @classmethod
    def of(cls, returned: Any) -> BatchSummary | None:
        """The summary of a finished batch, or None while the task has returned nothing (of that shape)."""
        if isinstance(returned, dict) and isinstance(returned.get("manifest_uri"), str):
            return cls(returned)
        return None

    def count(self, name: str) -> int:
        value = self.returned.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    @property
    def total(self) -> int:
        return self.count("total")

    @property
    def videos(self) -> int:
        return sum(self.count(status) for status in VIDEO_STATUSES)

    @property
    def cost_text(self) -> str:
        return usd_text(self.returned.get("cost_usd"))

    @property
    def estimate_text(self) -> str:
        return usd_text(self.returned.get("estimated_cost_usd"))

    def agrees_with(self, prefix: str) -> bool:
        """Whether the XCom names the folder the task rendered: a forged one is neither read nor served."""
        output_prefix = self.returned.get("output_prefix")
        return (
            isinstance(output_prefix, str)
            and output_prefix.rstrip("/") == prefix.rstrip("/")
            and self.returned.get("manifest_uri") == manifest_uri(prefix)
        )


@dataclass(frozen=True)
class BatchRow:
    """One line of the manifest."""

    fields: dict[str, Any]

    @classmethod
    def parse(cls, line: str) -> BatchRow | None:
        """The row of a manifest line; None for a blank or unreadable one."""
        try:
            fields = json.loads(line)
        except ValueError:
            return None
        return cls(fields) if isinstance(fields, dict) else None

    @property
    def id(self) -> str:
        return str(self.fields.get("id", ""))

    @property
    def status(self) -> str:
        return str(self.fields.get("status", ""))

    @property
    def has_video(self) -> bool:
        return self.status in VIDEO_STATUSES

    @property
    def servable(self) -> bool:
        """A video row whose id names a file the stream may serve."""
        return self.has_video and is_row_id(self.fields.get("id"))

    @property
    def prompt(self) -> str:
        return str(self.fields.get("prompt") or "")

    @property
    def error(self) -> str:
        return str(self.fields.get("error") or "no message")

    @property
    def size(self) -> Any:
        return self.fields.get("bytes")


@dataclass
class ManifestPage:
    """The rows of one page of videos and one page of failed rows, and the counts of the whole manifest."""

    page: int
    failed_page: int
    videos: list[BatchRow] = field(default_factory=list)
    failed: list[BatchRow] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0

    @property
    def video_count(self) -> int:
        return sum(self.counts[status] for status in VIDEO_STATUSES)

    @property
    def pages(self) -> int:
        return max(1, -(-self.video_count // VIDEOS_PER_PAGE))

    @property
    def failed_pages(self) -> int:
        return max(1, -(-self.counts["failed"] // FAILED_PER_PAGE))

    @property
    def exists(self) -> bool:
        """Whether both pages asked for are within the manifest (page 1 always is)."""
        return self.page <= self.pages and self.failed_page <= self.failed_pages


def page_links(current: int, last: int) -> list[tuple[str, int]]:
    """The pager's links from page ``current`` of ``last``, in page order: a page once, "previous" over "first"."""
    links: dict[int, str] = {}
    for label, target in (("previous", current - 1), ("next", current + 1), ("first", 1), ("last", last)):
        if 1 <= target <= last and target != current:
            links.setdefault(target, label)
    return [(label, target) for target, label in sorted(links.items())]


def _on_page(index: int, page: int, per_page: int) -> bool:
    return (page - 1) * per_page <= index < page * per_page


def read_page(lines: Iterable[str], page: int, failed_page: int) -> ManifestPage:
    """One pass over the manifest: the rows of the pages asked for are kept, the others only counted."""
    listing = ManifestPage(page=page, failed_page=failed_page)
    for line in lines:
        row = BatchRow.parse(line) if line.strip() else None
        if row is None:
            listing.unreadable += bool(line.strip())
            continue
        if row.has_video and _on_page(listing.video_count, page, VIDEOS_PER_PAGE):
            listing.videos.append(row)
        elif row.status == "failed" and _on_page(listing.counts["failed"], failed_page, FAILED_PER_PAGE):
            listing.failed.append(row)
        listing.counts[row.status] += 1
    return listing


def find_row(lines: Iterable[str], row_id: str) -> BatchRow | None:
    """The manifest's row ``row_id`` (a valid id: JSON writes it as is), parsing only the lines that name it."""
    quoted = f'"{row_id}"'
    for line in lines:
        if quoted in line and (row := BatchRow.parse(line)) is not None and row.fields.get("id") == row_id:
            return row
    return None
