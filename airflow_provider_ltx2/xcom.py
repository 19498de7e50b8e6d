"""What the provider's tasks keep in XCom, by key, and the one way a task reads its own XComs back.

Kept free of the task modules' imports: the UI plugin reads these keys in the api-server.
"""

from __future__ import annotations

from typing import Any

REQUEST = "request"  # the validated request (original image URI), read back on every resume
REQUEST_ID = "request_id"  # pushed as soon as the gateway accepts the submit, before any waiting
FINGERPRINT = "ltx2_fingerprint"  # what the sidecar records of the request and its image
VIDEO_URL = "video_url"  # the "LTX-2 video" link's target on Airflow 2 (Airflow 3 asks the task itself)
FAILURE = "ltx2_failure"  # why the generation failed, for the task's "LTX-2 video" tab
SUCCEEDED = "succeeded"  # the ``status`` of a finished task's result dict (XCom ``return_value``)


def own_xcom(ti: Any, key: str) -> Any:
    """This task instance's own XCom ``key`` (its map index included), or None."""
    return ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index)
