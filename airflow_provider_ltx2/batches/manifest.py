"""A batch's manifest and its folder: where each row's video goes, and one JSON line per row.

The one home of the format: the operator writes it, the UI plugin reads it (and checks row ids with
``is_row_id`` before it builds a path from one). Kept free of Airflow imports, so the plugin's import
stays cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

MANIFEST_NAME = "manifest.jsonl"
GENERATED, REUSED, FAILED, PLANNED = "generated", "reused", "failed", "planned"
VIDEO_STATUSES = (GENERATED, REUSED)
STATUSES = (*VIDEO_STATUSES, FAILED, PLANNED)
ROW_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def is_row_id(value: Any) -> bool:
    """A row id that names a file in the folder: letters, digits, ``-``, ``_``, ``.``; never ``.`` or ``..``."""
    return isinstance(value, str) and bool(ROW_ID.fullmatch(value)) and value not in (".", "..")


def in_folder(prefix: str, name: str) -> str:
    """``name`` in the folder ``prefix`` (its trailing "/" dropped)."""
    return f"{prefix.rstrip('/')}/{name}"


def video_uri(prefix: str, row_id: str) -> str:
    return in_folder(prefix, f"{row_id}.mp4")


def manifest_uri(prefix: str) -> str:
    return in_folder(prefix, MANIFEST_NAME)


def manifest_entry(
    row_id: str,
    request: Mapping[str, Any],
    output_uri: str,
    status: str,
    *,
    saved: Mapping[str, Any] | None = None,
    error: str | None = None,
    request_id: str | None = None,
    submitted_at: str | None = None,
    completed_at: str | None = None,
) -> dict[str, Any]:
    """One manifest line: the row's fate and the request as sent (its image as given, never signed)."""
    saved = saved or {}
    video = status in (GENERATED, REUSED)
    return {
        "id": row_id,
        "status": status,
        "output_uri": output_uri if video else None,
        "request_id": saved.get("request_id", request_id),
        "bytes": saved.get("bytes"),
        "sha256": saved.get("sha256"),
        "error": error,
        "submitted_at": saved.get("submitted_at", submitted_at),
        "completed_at": saved.get("completed_at", completed_at),
        **request,
    }


def write_manifest(uri: str, conn_id: str | None, entries: Iterator[dict[str, Any]]) -> dict[str, int]:
    """Write ``manifest.jsonl`` in place (a killed writer leaves the old one whole); count its statuses."""
    from airflow_provider_ltx2 import storage

    counts = dict.fromkeys(STATUSES, 0)

    def lines() -> Iterator[bytes]:
        for entry in entries:
            counts[entry["status"]] += 1
            yield (json.dumps(entry, sort_keys=False) + "\n").encode()

    storage.write_file(uri, conn_id, lines())
    return counts
