"""The plugin's FastAPI app: the video tab (a batch task's page for a batch task), the run's gallery, the
MP4 streams that let the browser seek, and the "LTX-2 spend" view.

Built by ``plugins.ltx2`` on the first request, so only in the api-server. Every route of a run lives under
``/dags/{dag_id}/runs/{run_id}`` and is guarded by Airflow's own check for reading that DAG's XComs and
task instances (401 without a login, 403 without access to the DAG); rows are read with the api-server's
DB session, the tasks from the run's serialized DAG.

The stream serves only what the task itself wrote: the ``output_uri`` of the task's result dict, when it is
the ``output_uri`` the task rendered (XCom can be edited through the REST API; rendered fields cannot), and
only if the file is an MP4. A batch task's stream serves only ``{output_prefix}/{id}.mp4`` of the
``output_prefix`` it rendered, for a row its manifest lists with a video, again only if it is an MP4. Once
Airflow no longer keeps a task's rendered fields, nothing of it is served; its pages play the gateway's URL.

The spend view (``/spend?conn_id=``) reads a connection's extras, so it needs Airflow's check for reading that
connection as well as for reading task instances; its rows are the DAGs the user may read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails, DagAccessEntity
from airflow.api_fastapi.common.dagbag import DagBagDep, create_dag_bag, get_dag_for_run
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.configuration import conf
from airflow.exceptions import AirflowNotFoundException
from airflow.models.connection import CONN_ID_MAX_LEN, Connection, sanitize_conn_id
from airflow.models.dagrun import DagRun
from airflow.models.renderedtifields import RenderedTaskInstanceFields
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XCOM_RETURN_KEY, XComModel
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, status
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.api.connection import spend_caps_from_extra
from airflow_provider_ltx2.api.media import is_mp4
from airflow_provider_ltx2.batches import manifest
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.links import Ltx2BatchLink, Ltx2VideoLink
from airflow_provider_ltx2.plugins.batch import BatchRow, BatchSummary, ManifestPage, find_row, read_page
from airflow_provider_ltx2.plugins.pages import (
    TaskSlot,
    Video,
    batch_page,
    display_url,
    finished_result,
    gallery_page,
    is_http_url,
    spend_page,
    task_page,
)
from airflow_provider_ltx2.plugins.ranges import RangeNotSatisfiable, byte_range
from airflow_provider_ltx2.plugins.spend import spend_view
from airflow_provider_ltx2.spend import Ledger
from airflow_provider_ltx2.xcom import FAILURE

log = logging.getLogger(__name__)

# What ``{MAP_INDEX}`` stays on the page of an unmapped task: the UI fills it in for mapped ones only.
UNMAPPED_PLACEHOLDER = "{MAP_INDEX}"
CHUNK_BYTES = 256 * 1024
_HOST = re.compile(r"[A-Za-z0-9.-]+")
_PAGE = re.compile(r"[1-9][0-9]{0,5}")
T = TypeVar("T")


def map_index_param(map_index: Annotated[str, Query(max_length=12)] = "-1") -> int:
    """The task instance's map index: -1 (unmapped), the UI's unfilled placeholder, or a mapped index."""
    if map_index in ("", UNMAPPED_PLACEHOLDER):
        return -1
    if not re.fullmatch(r"-1|\d+", map_index):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"map_index={map_index!r}: expected -1 or an index >= 0")
    return int(map_index)


MapIndexDep = Annotated[int, Depends(map_index_param)]


def page_number(name: str, value: str) -> int:
    """A page of a batch's listing: a positive integer of at most 6 digits, else 400."""
    if not _PAGE.fullmatch(value):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name}: expected a page number from 1 to 999999")
    return int(value)


def page_param(page: str = "1") -> int:
    """The page of a batch's videos."""
    return page_number("page", page)


def failed_page_param(failed_page: str = "1") -> int:
    """The page of a batch's failed rows, paged apart from its videos."""
    return page_number("failed_page", failed_page)


PageDep = Annotated[int, Depends(page_param)]
FailedPageDep = Annotated[int, Depends(failed_page_param)]


def conn_id_param(conn_id: Annotated[str, Query(max_length=CONN_ID_MAX_LEN)] = defaults.CONN_ID) -> str:
    """The connection whose spend the view shows: an Airflow connection id (its characters only), else 400."""
    if sanitize_conn_id(conn_id) != conn_id:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "conn_id: expected an Airflow connection id")
    return conn_id


ConnIdDep = Annotated[str, Depends(conn_id_param)]


def requires_access_named_connection(conn_id: ConnIdDep, user: GetUserDep) -> None:
    """Airflow's check for reading the connection the query names (with its team, as ``requires_access_connection``
    does for a connection named in the path, the only place that one looks): 403 without it."""
    team_name = Connection.get_team_name(conn_id) if conf.getboolean("core", "multi_team") else None
    details = ConnectionDetails(conn_id=conn_id, team_name=team_name)
    if not get_auth_manager().is_authorized_connection(method="GET", details=details, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


def readable_dag_ids(user: GetUserDep) -> set[str]:
    """The DAGs the user may read, as Airflow's own routes filter them (``ReadableDagsFilterDep`` would look for
    the auth manager in this app's state; it is in the api-server's)."""
    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


ReadableDagIdsDep = Annotated[set[str], Depends(readable_dag_ids)]


@dataclass(frozen=True)
class FoundTask:
    """A task instance the caller asked for, and what the views need of its task."""

    task: Any  # the serialized operator
    slot: TaskSlot
    rendered: dict[str, Any]

    @property
    def ours(self) -> bool:
        return is_ltx2_task(self.task)

    @property
    def batch(self) -> bool:
        return is_batch_task(self.task)

    @property
    def operator(self) -> str:
        return str(getattr(self.task, "operator_name", None) or self.task.task_type)

    @property
    def output_conn_id(self) -> str | None:
        """The store's connection: rendered if the task templates it, else as the DAG set it, else None."""
        for value in (
            self.rendered.get("output_conn_id"),
            (getattr(self.task, "partial_kwargs", None) or {}).get("output_conn_id"),
            getattr(self.task, "output_conn_id", None),
        ):
            if isinstance(value, str) and value:
                return value
        return None


def has_link(task: Any, name: str) -> bool:
    """Whether the serialized task carries the extra link ``name`` (subclasses of our operators do too)."""
    return name in (getattr(task, "operator_extra_link_dict", None) or {})


def is_ltx2_task(task: Any) -> bool:
    """Operator, sensor, decorator, and their subclasses: every task that carries the "LTX-2 video" link."""
    return has_link(task, Ltx2VideoLink.name)


def is_batch_task(task: Any) -> bool:
    """A batch generation task: it carries the "LTX-2 batch" link instead."""
    return has_link(task, Ltx2BatchLink.name)


def find_run(session: Session, dag_id: str, run_id: str) -> DagRun:
    dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if dag_run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG {dag_id!r} has no run {run_id!r}")
    return dag_run


def read_slots(
    session: Session, dag_id: str, run_id: str, task_ids: list[str], map_index: int | None = None
) -> list[TaskSlot]:
    """The task instances of ``task_ids`` in the run (one map index, or all), with their two XComs."""
    if not task_ids:
        return []
    instances = select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id.in_(task_ids)
    )
    xcoms = select(XComModel).where(
        XComModel.dag_id == dag_id,
        XComModel.run_id == run_id,
        XComModel.task_id.in_(task_ids),
        XComModel.key.in_((XCOM_RETURN_KEY, FAILURE)),
    )
    if map_index is not None:
        instances = instances.where(TaskInstance.map_index == map_index)
        xcoms = xcoms.where(XComModel.map_index == map_index)
    values = {(row.task_id, row.map_index, row.key): XComModel.deserialize_value(row) for row in session.scalars(xcoms)}
    return [
        TaskSlot(
            task_id=task_id,
            map_index=index,
            state=None if state is None else str(state),
            returned=values.get((task_id, index, XCOM_RETURN_KEY)),
            failure=values.get((task_id, index, FAILURE)),
        )
        for task_id, index, state in session.execute(instances.order_by(TaskInstance.task_id, TaskInstance.map_index))
    ]


def read_rendered(
    session: Session, dag_id: str, run_id: str, task_ids: list[str], map_index: int | None = None
) -> dict[tuple[str, int], dict[str, Any]]:
    """The rendered fields of the task instances of ``task_ids`` in the run (one map index, or all), by task id
    and map index; Airflow keeps them for a task's last runs only ([core] max_num_rendered_ti_fields_per_task)."""
    fields = RenderedTaskInstanceFields
    query = select(fields.task_id, fields.map_index, fields.rendered_fields).where(
        fields.dag_id == dag_id, fields.run_id == run_id, fields.task_id.in_(task_ids)
    )
    if map_index is not None:
        query = query.where(fields.map_index == map_index)
    return {(task_id, index): values for task_id, index, values in session.execute(query) if isinstance(values, dict)}


def find_task(session: Session, dag_bag: Any, dag_id: str, run_id: str, task_id: str, map_index: int) -> FoundTask:
    """The task instance, or 404 for an unknown run, a task not in the run's DAG, or a map index it lacks."""
    dag_run = find_run(session, dag_id, run_id)
    task = get_dag_for_run(dag_bag, dag_run, session).task_dict.get(task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG {dag_id!r} has no task {task_id!r}")
    slots = read_slots(session, dag_id, run_id, [task_id], map_index)
    if not slots:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"Run {run_id!r} has no task instance {task_id!r} with map index {map_index}"
        )
    rendered = read_rendered(session, dag_id, run_id, [task_id], map_index).get((task_id, map_index), {})
    return FoundTask(task=task, slot=slots[0], rendered=rendered)


def stream_path(slot: TaskSlot) -> str:
    """The plugin's stream of a task instance's video, relative to its run's URL."""
    return f"tasks/{quote(slot.task_id, safe='')}/video.mp4?map_index={slot.map_index}"


def row_stream_path(slot: TaskSlot, row_id: str) -> str:
    """The plugin's stream of one row's video of a batch task instance, relative to its run's URL."""
    return f"tasks/{quote(slot.task_id, safe='')}/batch/{quote(row_id, safe='')}.mp4?map_index={slot.map_index}"


def video_of(found: FoundTask, run_relative: str) -> Video | None:
    """The task's finished video: streamed by the plugin when it may serve the file, else played from the
    gateway's URL if there is one; ``notice`` says why a downloaded file is not streamed."""
    result = finished_result(found.slot.returned)
    if result is None:
        return None
    gateway_url = result["video_url"] if is_http_url(result.get("video_url")) else None
    if not isinstance(result.get("output_uri"), str):
        return Video(slot=found.slot, result=result, src=gateway_url)
    try:
        stored_uri(found)
    except HTTPException as refused:
        return Video(slot=found.slot, result=result, src=gateway_url, notice=str(refused.detail))
    return Video(slot=found.slot, result=result, src=run_relative + stream_path(found.slot))


def media_origin(src: str) -> str | None:
    """The origin of a gateway video URL, for the page's CSP; None if it is not a plain http(s) origin."""
    parts = urlsplit(src)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or not _HOST.fullmatch(parts.hostname):
        return None
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def html_response(body: str, videos: Iterable[Video], status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    """A page that may run no script and load media only from here and the gateways it plays from."""
    origins = sorted({origin for video in videos if video.src and (origin := media_origin(video.src))})
    policy = "; ".join(
        (
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            " ".join(("media-src 'self'", *origins)),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        )
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(body, status_code=status_code, headers=headers)


def read_bytes(path: Any, first: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as stream:
        stream.seek(first)
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


@contextmanager
def reading_store(what: str) -> Iterator[None]:
    """Errors of the store while reading ``what``: 404 when it is gone, 502 (logged, not shown) for the rest."""
    try:
        yield
    except FileNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what[:1].upper()}{what[1:]} is gone from its store") from None
    except Exception as error:  # the store's own errors, not the caller's
        log.exception("Could not read %s from its store", what)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Could not read {what}") from error


def open_mp4(uri: str, conn_id: str | None, what: str) -> tuple[Any, int]:
    """The file at ``uri`` and its size, if it is an MP4 by its first bytes (403 otherwise)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    with reading_store(what):
        path = ObjectStoragePath(uri, conn_id=conn_id)
        size = int(path.stat().st_size)
        with path.open("rb") as stream:
            head = stream.read(12)
    if not is_mp4(head):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Not an MP4: {what}")
    return path, size


def rendered_field(found: FoundTask, name: str) -> str:
    """``name`` as the task rendered it: the one authority on which of its files may be served, as XCom can be
    edited through the REST API and rendered fields cannot. 403 without it: then nothing is served."""
    value = found.rendered.get(name)
    if not isinstance(value, str) or not value:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Airflow no longer keeps the rendered {name} of {found.slot.label}: its files are not served",
        )
    return value


def stored_uri(found: FoundTask) -> str:
    """The file the task downloaded its video to: its result's ``output_uri``, if the one it rendered; 404 when
    its result names none, 403 when it names another or the rendered one is no longer kept."""
    result = finished_result(found.slot.returned)
    output_uri = result.get("output_uri") if result and found.ours else None
    if not isinstance(output_uri, str):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{found.slot.label} has no downloaded LTX-2 video")
    if rendered_field(found, "output_uri") != output_uri:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"The output_uri in the XCom of {found.slot.label} is not the one it rendered"
        )
    return output_uri


def open_video(found: FoundTask) -> tuple[Any, int]:
    """The task's downloaded MP4 in its store and its size; 4xx when there is none it may be served from."""
    return open_mp4(stored_uri(found), found.output_conn_id, f"the video of {found.slot.label}")


def batch_folder(found: FoundTask, summary: BatchSummary | None) -> str:
    """The batch's rendered ``output_prefix``; 403 without one, or when its XCom summary names another folder.

    A task without a summary (it failed after writing its manifest, or does not push XCom) is read from the
    folder it rendered all the same: that folder is the one authority on what may be served.
    """
    prefix = rendered_field(found, "output_prefix")
    if summary is not None and not summary.agrees_with(prefix):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"The output_prefix or manifest_uri in the XCom of {found.slot.label} is not the folder it rendered",
        )
    return prefix


def read_manifest(found: FoundTask, prefix: str, consume: Callable[[Iterator[str]], T]) -> T:
    """``consume`` applied to the lines of the manifest in ``prefix``, streamed from the task's store."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    with reading_store(f"the manifest of {found.slot.label}"):
        path = ObjectStoragePath(manifest.manifest_uri(prefix), conn_id=found.output_conn_id)
        with path.open("r", encoding="utf-8", errors="replace") as lines:
            return consume(lines)


def open_row_video(found: FoundTask, row_id: str) -> tuple[Any, int]:
    """A batch row's MP4 and its size: only ``{rendered output_prefix}/{row_id}.mp4`` of a listed video row."""
    if not found.batch:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{found.slot.label} is not an LTX-2 batch task")
    prefix = batch_folder(found, BatchSummary.of(found.slot.returned))
    row: BatchRow | None = read_manifest(found, prefix, partial(find_row, row_id=row_id))
    if row is None or not row.has_video:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"The batch of {found.slot.label} has no video {row_id!r}")
    return open_mp4(manifest.video_uri(prefix, row_id), found.output_conn_id, f"row {row_id} of {found.slot.label}")


def file_response(path: Any, size: int, range_header: str | None) -> Response:
    """An MP4 whole (200) or the one byte range asked for (206), so that the browser can seek."""
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=60",
        "X-Content-Type-Options": "nosniff",
    }
    try:
        chosen = byte_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if chosen is None:
        first, length, code = 0, size, 200
    else:
        first, length, code = chosen.first, chosen.length, 206
        headers["Content-Range"] = chosen.content_range
    headers["Content-Length"] = str(length)
    return StreamingResponse(read_bytes(path, first, length), status_code=code, headers=headers, media_type="video/mp4")


def batch_tab(found: FoundTask, page: int, failed_page: int) -> str:
    """A batch task's page: its summary (XCom), and a page of its manifest when its folder may be read.

    Without a summary yet, a manifest in the folder (the last try that wrote one) is shown if there is one;
    with one, why the manifest could not be read is shown instead of the rows.
    """
    summary = BatchSummary.of(found.slot.returned)
    listing: ManifestPage | None = None
    manifest_uri: str | None = None
    notice: str | None = None
    try:
        prefix = batch_folder(found, summary)
        manifest_uri = manifest.manifest_uri(prefix)
        listing = read_manifest(found, prefix, partial(read_page, page=page, failed_page=failed_page))
    except HTTPException as refused:
        notice = str(refused.detail) if summary is not None else None
    if listing is not None and not listing.exists:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"The batch of {found.slot.label} has no such page")
    return batch_page(
        found.slot,
        summary,
        listing,
        manifest_uri=manifest_uri,
        notice=notice,
        src=lambda row_id: "../../" + row_stream_path(found.slot, row_id),
    )


def spend_tab(conn_id: str, readable_dag_ids: Collection[str]) -> tuple[str, int]:
    """The "LTX-2 spend" view and its status: the ledger's figures, or why there are none (its setup without a
    ledger, the broken extra, a store that cannot be read). The connection's key is never read into the page."""
    try:
        extra = Connection.get_connection_from_secrets(conn_id).extra_dejson
    except AirflowNotFoundException:
        missing = f"Airflow has no connection {conn_id!r}."
        return spend_page(conn_id, status="no-connection", message=missing), status.HTTP_404_NOT_FOUND
    try:
        caps = spend_caps_from_extra(conn_id, extra)
    except Ltx2ValidationError as invalid:
        return spend_page(conn_id, status="invalid", message=str(invalid)), status.HTTP_200_OK
    if caps.ledger_uri is None:
        return spend_page(conn_id, status="no-ledger"), status.HTTP_200_OK
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    try:
        spend = Ledger(caps.ledger_uri, caps.ledger_conn_id).spend(day)
    except Exception as error:  # the store's own errors: logged, not shown
        log.exception("Could not list the LTX-2 spend ledger of connection %r", conn_id)
        message = (
            f"Could not read the spend ledger {display_url(caps.ledger_uri)} of connection {conn_id!r} "
            f"({type(error).__name__}): check the extras spend_ledger_uri and spend_ledger_conn_id, and that the "
            "api-server may list that folder. The api-server's log has the details."
        )
        return spend_page(conn_id, status="unreadable", message=message), status.HTTP_502_BAD_GATEWAY
    return spend_page(conn_id, spend_view(spend, caps, readable_dag_ids)), status.HTTP_200_OK


def create_app() -> FastAPI:
    """The app mounted at ``/ltx2``, with its own cached DAG bag as the api-server keeps one."""
    app = FastAPI(title="LTX-2 videos", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.dag_bag = create_dag_bag()
    router = APIRouter(
        prefix="/dags/{dag_id}/runs/{run_id}",
        dependencies=[
            Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)),
            Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE)),
        ],
    )

    @router.get("/tasks/{task_id}/video", response_class=HTMLResponse)
    def video_tab(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: MapIndexDep,
        page: PageDep,
        failed_page: FailedPageDep,
        session: SessionDep,
        dag_bag: DagBagDep,
    ) -> HTMLResponse:
        """The "LTX-2 video" tab of a task instance; a batch task's page for a batch task."""
        found = find_task(session, dag_bag, dag_id, run_id, task_id, map_index)
        if found.batch:
            return html_response(batch_tab(found, page, failed_page), [])
        video = video_of(found, "../../") if found.ours else None
        body = task_page(found.slot, video, ours=found.ours, operator=found.operator)
        return html_response(body, [video] if video else [])

    @router.get("/tasks/{task_id}/video.mp4")
    def video_stream(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: MapIndexDep,
        session: SessionDep,
        dag_bag: DagBagDep,
        range_header: Annotated[str | None, Header(alias="range")] = None,
    ) -> Response:
        """The task's MP4 from its store, whole (200) or the one byte range asked for (206)."""
        path, size = open_video(find_task(session, dag_bag, dag_id, run_id, task_id, map_index))
        return file_response(path, size, range_header)

    @router.get("/tasks/{task_id}/batch/{row_id}.mp4")
    def row_stream(
        dag_id: str,
        run_id: str,
        task_id: str,
        row_id: str,
        map_index: MapIndexDep,
        session: SessionDep,
        dag_bag: DagBagDep,
        range_header: Annotated[str | None, Header(alias="range")] = None,
    ) -> Response:
        """One row's MP4 of a batch task, as ``video_stream`` serves a task's."""
        if not manifest.is_row_id(row_id):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{row_id!r} is not a row id of a batch")
        path, size = open_row_video(find_task(session, dag_bag, dag_id, run_id, task_id, map_index), row_id)
        return file_response(path, size, range_header)

    @router.get("/videos", response_class=HTMLResponse)
    def run_gallery(dag_id: str, run_id: str, session: SessionDep, dag_bag: DagBagDep) -> HTMLResponse:
        """The "LTX-2 videos" tab of a DAG run: every video of every LTX-2 task and map index, and a line a batch."""
        dag = get_dag_for_run(dag_bag, find_run(session, dag_id, run_id), session)
        batch_ids = {task.task_id for task in dag.tasks if is_batch_task(task)}
        task_ids = [task.task_id for task in dag.tasks if is_ltx2_task(task) or task.task_id in batch_ids]
        slots = read_slots(session, dag_id, run_id, task_ids)
        batches = [(slot, BatchSummary.of(slot.returned)) for slot in slots if slot.task_id in batch_ids]
        singles = [slot for slot in slots if slot.task_id not in batch_ids]
        rendered = read_rendered(session, dag_id, run_id, [task_id for task_id in task_ids if task_id not in batch_ids])
        tasks = [FoundTask(dag.task_dict[slot.task_id], slot, rendered.get(slot.key, {})) for slot in singles]
        videos = [video for task in tasks if (video := video_of(task, ""))]
        shown = {video.slot.key for video in videos}
        pending = [slot for slot in singles if slot.key not in shown]
        return html_response(gallery_page(dag_id, run_id, videos, pending, batches), videos)

    app.include_router(router)

    @app.get(
        "/spend",
        response_class=HTMLResponse,
        dependencies=[
            Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE)),
            Depends(requires_access_named_connection),
        ],
    )
    def spend(conn_id: ConnIdDep, dag_ids: ReadableDagIdsDep) -> HTMLResponse:
        """The "LTX-2 spend" view: the key's spend today and this month from its ledger, per DAG, and its caps."""
        body, code = spend_tab(conn_id, dag_ids)
        return html_response(body, [], code)

    return app
