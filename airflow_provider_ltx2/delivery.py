"""Delivering a finished generation: the MP4 saved where asked with its sidecar, published, and the result.

The result dict (XCom ``return_value``) is built here only, so the operator, the sensor and the decorator
return one format; a failure is counted and kept for the UI by ``failure_reported``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset

from airflow_provider_ltx2 import metrics, storage, xcom
from airflow_provider_ltx2.api.media import is_mp4
from airflow_provider_ltx2.events import Delivered
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2GenerationFailed
from airflow_provider_ltx2.links import Ltx2VideoLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

# What an asset event of the task's outlets carries in its ``extra``.
ASSET_EVENT_KEYS = ("request_id", "video_url", "output_uri", "bytes", "completed_at", "reused")


def save_video(
    hook: Ltx2Hook, video_url: str, output_uri: str, output_conn_id: str | None = None, clear_stale: bool = True
) -> tuple[int, str]:
    """Stream the video to ``output_uri``; return its size and sha256 (hashed on the way, not read twice).

    The bytes go to a hidden temporary sibling that is moved into place only once complete and checked
    (``storage.write_file``), so a failed download never leaves a partial file at ``output_uri``.
    """
    digest, size = hashlib.sha256(), 0

    def checked() -> Iterator[bytes]:
        nonlocal size
        for chunk in hook.stream(video_url):
            if size == 0 and not is_mp4(chunk):
                raise Ltx2GenerationFailed(f"The LTX-2 result at {video_url} is not an MP4 (no 'ftyp' box).")
            size += len(chunk)
            digest.update(chunk)
            yield chunk

    storage.write_file(output_uri, output_conn_id, checked(), clear_stale)
    return size, digest.hexdigest()


@contextmanager
def failure_reported(context: Context) -> Iterator[None]:
    """Count a failure by kind and keep its message in XCom ``ltx2_failure`` (the UI shows it), then fail."""
    try:
        yield
    except Ltx2Error as error:
        metrics.failure(type(error).__name__)
        context["ti"].xcom_push(key=xcom.FAILURE, value=str(error))
        raise


def deliver(
    hook: Ltx2Hook,
    context: Context,
    delivered: Delivered,
    *,
    request: dict[str, Any] | None,
    output_uri: str | None,
    output_conn_id: str | None,
    outlets: Iterable[Any] = (),
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Save the video (and its sidecar) where asked, publish it, and build the result dict."""
    result = store(
        hook, delivered, request=request, output_uri=output_uri, output_conn_id=output_conn_id, fingerprint=fingerprint
    )
    publish(context, result, outlets)
    return result


def store(
    hook: Ltx2Hook,
    delivered: Delivered,
    *,
    request: dict[str, Any] | None,
    output_uri: str | None,
    output_conn_id: str | None,
    fingerprint: str | None,
    batch: str | None = None,
) -> dict[str, Any]:
    """Save the video and its sidecar where asked (a batch row or a task's video alike); the result dict.

    ``batch``: the token of the batch run that made the video, kept in the sidecar. A batch clears its
    folder of a killed writer's leftovers once per try, so its writes do not list the folder each time.
    """
    clear_stale = batch is None
    try:
        submitted = datetime.fromisoformat(delivered.submitted_at or "")
        metrics.seconds(
            metrics.GENERATION_SECONDS, (datetime.fromisoformat(delivered.completed_at) - submitted).total_seconds()
        )
    except ValueError:  # no submit time known (a sensor given a bare request id)
        pass
    size = sha256 = None
    if output_uri:
        started = time.monotonic()
        size, sha256 = save_video(hook, delivered.video_url, output_uri, output_conn_id, clear_stale)
        metrics.seconds(metrics.DOWNLOAD_SECONDS, time.monotonic() - started)
        hook.log.info("LTX-2 video %s saved to %s (%d bytes)", delivered.job.request_id, output_uri, size)
    else:
        hook.log.info("LTX-2 video %s is ready at %s", delivered.job.request_id, delivered.video_url)
    result = result_dict(delivered, request=request, output_uri=output_uri, size=size)
    if output_uri and sha256:
        fields = storage.sidecar(result, fingerprint, sha256, batch)
        storage.write_sidecar(output_uri, output_conn_id, fields, clear_stale)
    return result


def publish(context: Context, result: dict[str, Any], outlets: Iterable[Any]) -> None:
    """Point the extra link at the video and give the task's outlet assets its facts."""
    Ltx2VideoLink.persist(context, result["video_url"])
    outlet_events = context.get("outlet_events")
    for outlet in outlets:
        if outlet_events is not None and isinstance(outlet, Asset):
            outlet_events[outlet].extra.update({key: result[key] for key in ASSET_EVENT_KEYS})


def reused_result(saved: dict[str, Any]) -> dict[str, Any]:
    """The result dict of a video an earlier run made, read back from its sidecar."""
    return {
        **{key: saved[key] for key in ("request_id", "video_url", "output_uri", "bytes", "request")},
        "status": xcom.SUCCEEDED,
        "submitted_at": saved.get("submitted_at"),
        "completed_at": saved.get("completed_at"),
        "reused": True,
    }


def result_dict(
    delivered: Delivered, *, request: dict[str, Any] | None, output_uri: str | None, size: int | None
) -> dict[str, Any]:
    """The task's return value (XCom ``return_value``), the same from the operator and the sensor."""
    return {
        "request_id": delivered.job.request_id,
        "status": xcom.SUCCEEDED,
        "video_url": delivered.video_url,
        "output_uri": output_uri,
        "bytes": size,
        "request": request,
        "submitted_at": delivered.submitted_at,
        "completed_at": delivered.completed_at,
        "reused": False,
    }
