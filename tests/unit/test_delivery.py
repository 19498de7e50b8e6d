"""Unit tests of ``airflow_provider_ltx2.delivery``'s result dict: the task's return value, one format."""

from __future__ import annotations

import json

from airflow_provider_ltx2.delivery import result_dict
from airflow_provider_ltx2.events import Delivered, read_video_event, succeeded_event
from tests.conftest import LEGACY_JOB, SUCCEEDED, UNIVERSAL_JOB, VIDEO_URL

SUBMITTED_AT = "2025-06-15T15:00:00+00:00"


def test_result_dict_has_exactly_the_documented_keys() -> None:
    delivered = Delivered(UNIVERSAL_JOB, VIDEO_URL, "2025-06-15T15:01:30+00:00", SUBMITTED_AT)
    request = {"image_url": "https://example.com/cat.jpg", "prompt": "the cat turns its head", "duration": 6}

    result = result_dict(delivered, request=request, output_uri="file:///data/v.mp4", size=6_841_082)

    assert result == {
        "request_id": UNIVERSAL_JOB.request_id,
        "status": "succeeded",
        "video_url": VIDEO_URL,
        "output_uri": "file:///data/v.mp4",
        "bytes": 6_841_082,
        "request": request,
        "submitted_at": SUBMITTED_AT,
        "completed_at": "2025-06-15T15:01:30+00:00",
        "reused": False,
    }
    assert json.loads(json.dumps(result, allow_nan=False)) == result, "JSON-safe for XCom"


def test_result_dict_without_a_download() -> None:
    delivered = read_video_event(succeeded_event(LEGACY_JOB, SUCCEEDED, None))

    result = result_dict(delivered, request=None, output_uri=None, size=None)

    assert set(result) == {
        "request_id",
        "status",
        "video_url",
        "output_uri",
        "bytes",
        "request",
        "submitted_at",
        "completed_at",
        "reused",
    }
    assert (result["output_uri"], result["bytes"], result["submitted_at"]) == (None, None, None)
