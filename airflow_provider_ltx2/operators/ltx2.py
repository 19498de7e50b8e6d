"""``Ltx2GenerateVideoOperator``: submit one LTX-2 generation, wait for it, optionally save the MP4."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_ltx2 import metrics, storage
from airflow_provider_ltx2.api import PRICE_PER_VIDEO_USD, Job, JobState, build_request
from airflow_provider_ltx2.exceptions import Ltx2GenerationFailed, Ltx2Throttled
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.links import Ltx2VideoLink
from airflow_provider_ltx2.storage import DEFAULT_IMAGE_URL_EXPIRES_IN, ImageInput, image_input
from airflow_provider_ltx2.waiting import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    Deadline,
    Delivered,
    RoomWait,
    Wait,
    check_waiting_arguments,
    deliver,
    failure_reported,
    finished_video,
    publish,
    read_event,
    read_room_event,
    reused_result,
    utc_now_iso,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

# task_state_store key (Airflow 3.3+): the paid request of this task instance, kept across retries.
STATE_KEY = "ltx2_request"
REQUEST_XCOM = "request"  # the validated request, read back on every resume
FINGERPRINT_XCOM = "ltx2_fingerprint"  # what the sidecar records of the request and its image


class Ltx2GenerateVideoOperator(BaseOperator):
    """Generate a video from an image and a prompt with LTX-2; return the result dict.

    Every request field is validated after templating and before anything is sent (each accepted
    submit costs money). A gateway at capacity (429) is waited out until the task's deadline, in the
    triggerer when deferrable. The request id is pushed to XCom ``request_id`` as soon as the gateway
    accepts it, and on Airflow 3.3+ kept in the task state store, so a retry reattaches to the request
    already paid for instead of submitting again.

    :param image_url: public http(s) URL of a JPEG/PNG, or an object-storage URI (``s3://``, ``gs://``...)
        sent as a short-lived signed URL (templated).
    :param prompt: motion, camera movement and visual context (templated).
    :param duration: seconds, 2-10 (templated); None leaves the service default.
    :param resolution: "720p", "1080p" or "2160p" (templated).
    :param aspect_ratio: "16:9", "9:16" or "1:1" (templated).
    :param fps: 24, 25 or 30 (templated).
    :param generate_audio: add an audio track (templated).
    :param ltx2_conn_id: the ``ltx2`` connection with the subscription key.
    :param wait_for_completion: wait for the video; False returns right after the submit.
    :param deferrable: wait (for room, then for the video) in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status polls (the gateway advises 5-10).
    :param timeout: seconds from the task's start to the video (waiting for room included) before it
        fails with ``Ltx2Timeout``; an earlier ``execution_timeout`` wins, deferred or not.
    :param output_uri: where to stream the MP4, e.g. ``file:///data/v.mp4`` or ``s3://b/{{ ds }}/v.mp4``
        (templated); None keeps only the URL.
    :param output_conn_id: connection of the object store behind ``output_uri``.
    :param image_conn_id: connection of the object store behind an object-storage ``image_url`` (templated).
    :param image_url_expires_in: seconds the signed image URL stays valid (default 3600: long enough for a
        job that waits in the gateway's queue).
    :param check_image: read the image's first bytes before paying and fail on a missing, empty or
        non-JPEG/PNG image; False for images only the gateway can reach.
    :param reuse_existing: when ``output_uri`` already holds the MP4 of this very request (its sidecar
        ``<output_uri>.json`` says so and the MP4 matches it), return it without any gateway call.
    """

    template_fields: Sequence[str] = (
        "image_url",
        "image_conn_id",
        "prompt",
        "duration",
        "resolution",
        "aspect_ratio",
        "fps",
        "generate_audio",
        "output_uri",
        "output_conn_id",
    )
    operator_extra_links = (Ltx2VideoLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        image_url: str,
        prompt: str,
        duration: int | str | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        fps: int | str | None = None,
        generate_audio: bool | str | None = None,
        ltx2_conn_id: str = Ltx2Hook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        output_uri: str | None = None,
        output_conn_id: str | None = None,
        image_conn_id: str | None = None,
        image_url_expires_in: int = DEFAULT_IMAGE_URL_EXPIRES_IN,
        check_image: bool = True,
        reuse_existing: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_waiting_arguments(poll_interval, timeout, output_uri)
        self.image_conn_id = image_conn_id
        self.image_url_expires_in = image_url_expires_in
        self.check_image = check_image
        self.reuse_existing = reuse_existing
        self.image_url = image_url
        self.prompt = prompt
        self.duration = duration
        self.resolution = resolution
        self.aspect_ratio = aspect_ratio
        self.fps = fps
        self.generate_audio = generate_audio
        self.ltx2_conn_id = ltx2_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.output_uri = output_uri
        self.output_conn_id = output_conn_id

    @cached_property
    def hook(self) -> Ltx2Hook:
        return Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id)

    def build_request(self) -> dict[str, Any]:
        """The JSON body this task will submit, validated (raises ``Ltx2ValidationError``)."""
        return build_request(
            image_url=self.image_url,
            prompt=self.prompt,
            duration=self.duration,
            resolution=self.resolution,
            aspect_ratio=self.aspect_ratio,
            fps=self.fps,
            generate_audio=self.generate_audio,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        with failure_reported(context):
            deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
            if context.get("task_state_store") is None:  # said once per try, not on every resume
                self.log.warning(
                    "Reattaching to the request of an earlier try is unavailable (no task_state_store before "
                    "Airflow 3.3): a retry of this task submits, and pays for, a new generation."
                )
            request = self.build_request()
            image = image_input(request["image_url"], self.image_conn_id, self.image_url_expires_in)
            fingerprint = storage.fingerprint(request, image)
            if self.reuse_existing and self.output_uri:
                saved = storage.reusable(self.output_uri, self.output_conn_id, fingerprint)
                if saved is not None:
                    return self._reuse(context, saved)
            if self.check_image:
                storage.check_image(image, self.hook.read_head)
            # Read back on every resume: `airflow dags test` drops `defer(kwargs=...)`, and a decorated task's
            # request comes from a function that must not run twice.
            context["ti"].xcom_push(key=REQUEST_XCOM, value=request)
            context["ti"].xcom_push(key=FINGERPRINT_XCOM, value=fingerprint)
            Ltx2VideoLink.persist(context, None)  # the extra link reads it before the video exists
            return self._submit_then_wait(context, request, RoomWait.for_deadline(deadline, self.poll_interval))

    def _reuse(self, context: Context, saved: dict[str, Any]) -> dict[str, Any]:
        result = reused_result({**saved, "output_uri": self.output_uri})  # where it is now, if moved
        self.log.info(
            "Reused %s (LTX-2 request %s of %s, same request and image), no charge; reuse_existing=False "
            "generates anew.",
            self.output_uri,
            result["request_id"],
            result["completed_at"],
        )
        metrics.count(metrics.REUSED_VIDEOS)
        publish(context, result, self.outlets)
        return result

    def retry_submit(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after waiting for room in the triggerer: try the submit again (same deadline)."""
        with failure_reported(context):
            return self._submit_then_wait(context, self._saved_request(context), read_room_event(event))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the video trigger: every event is checked; anything but a success fails the task."""
        with failure_reported(context):
            return self._finish(context, read_event(event), self._saved_request(context))

    def _saved_request(self, context: Context) -> dict[str, Any]:
        request = _own_xcom(context, REQUEST_XCOM)
        return request if isinstance(request, dict) else self.build_request()

    def _submit_then_wait(self, context: Context, request: dict[str, Any], room: RoomWait) -> dict[str, Any]:
        store = context.get("task_state_store")
        job, submitted_at = self._reattach(store, request, room.deadline) or self._submit(store, request, room)
        context["ti"].xcom_push(key="request_id", value=job.request_id)
        if not self.wait_for_completion:
            if store is not None:  # handed off: a cleared task must submit anew, not reattach to this job
                store.delete(STATE_KEY)
            return {**job.to_dict(), "status": "submitted", "request": request, "submitted_at": submitted_at}

        wait = Wait(job, deadline=room.deadline, poll_interval=self.poll_interval, limit=room.limit)
        if self.deferrable:
            from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger

            self.defer(
                trigger=Ltx2VideoTrigger.for_wait(wait, self.hook, submitted_at),
                method_name="execute_complete",
                timeout=None,  # the trigger enforces the absolute deadline itself
            )
        delivered = finished_video(job, self.hook.wait_for_video(wait), submitted_at)
        return self._finish(context, delivered, request)

    def _finish(self, context: Context, delivered: Delivered, request: dict[str, Any]) -> dict[str, Any]:
        result = deliver(
            self.hook,
            context,
            delivered,
            request=request,
            output_uri=self.output_uri,
            output_conn_id=self.output_conn_id,
            outlets=self.outlets,
            fingerprint=_own_xcom(context, FINGERPRINT_XCOM),
        )
        if (store := context.get("task_state_store")) is not None:
            store.delete(STATE_KEY)
        return result

    # Airflow 3.3's ResumableJobMixin does this bookkeeping for operators that poll in the worker. It is
    # not used here: it decides on the stored job id alone, while a retry must also check that the
    # templated request is unchanged (a fixed prompt must not reattach to the old video); its
    # `poll_until_complete` blocks a worker, where this operator waits for room and for the video in the
    # triggerer; and it keeps the id after success, which would make a cleared task reattach silently.

    def _reattach(self, store: Any, request: dict[str, Any], deadline: float) -> tuple[Job, str | None] | None:
        """The request an earlier try of this task paid for, if it is the same and can still deliver.

        The state store exists on Airflow 3.3+; on older versions every try submits anew.
        """
        if store is None:
            return None
        saved = store.get(STATE_KEY)
        if not isinstance(saved, dict):
            return None
        if saved.get("request") != request:
            self.log.warning("The request changed since an earlier try; submitting the new one.")
            store.delete(STATE_KEY)
            return None
        job = Job.from_dict(saved)
        try:
            state = self.hook.get_status(job, deadline=deadline).state
        except Ltx2GenerationFailed:  # unknown to the gateway, or expired
            state = JobState.FAILED
        if state is JobState.FAILED:
            self.log.warning(
                "The LTX-2 request %s of an earlier try failed or expired; submitting a new one.", job.request_id
            )
            store.delete(STATE_KEY)
            return None
        self.log.info(
            "Reattaching to LTX-2 request %s (%s) submitted by an earlier try; not submitting again.",
            job.request_id,
            state.value,
        )
        submitted_at = saved.get("submitted_at")
        return job, submitted_at if isinstance(submitted_at, str) else None

    def _submit(self, store: Any, request: dict[str, Any], room: RoomWait) -> tuple[Job, str]:
        """Submit (the paid call), waiting for room while the gateway is at capacity."""
        image = ImageInput(request["image_url"], self.image_conn_id, expires_in=self.image_url_expires_in)
        while True:
            signed = image.url_for_gateway()  # made afresh for every attempt; never stored nor logged
            try:
                job = self.hook.submit({**request, "image_url": signed}, hidden=(signed,) if image.private else ())
                break
            except Ltx2Throttled as throttled:
                metrics.count(metrics.THROTTLED_SUBMITS)
                room.throttled(throttled, self.log)  # raises Ltx2Timeout once the deadline leaves no room
                if self.deferrable:
                    from airflow_provider_ltx2.triggers.ltx2 import Ltx2CapacityTrigger

                    self.defer(
                        trigger=Ltx2CapacityTrigger(room.to_dict(), self.ltx2_conn_id),
                        method_name="retry_submit",
                        timeout=None,  # the trigger enforces the absolute deadline itself
                    )
                time.sleep(room.worker_delay())
        metrics.count(metrics.PAID_SUBMITS)
        room.got_in(self.log)
        submitted_at = utc_now_iso()
        self.log.info(
            "Submitted LTX-2 request %s (USD %.2f): %s", job.request_id, PRICE_PER_VIDEO_USD, summarise(request)
        )
        if store is not None:
            store.set(STATE_KEY, {**job.to_dict(), "request": request, "submitted_at": submitted_at})
        return job, submitted_at

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image in, the MP4 out, the gateway request and the generation's facets."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_complete(self.hook, task_instance)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image and the gateway request of a failed generation, as far as it got."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_failure(self.hook, task_instance)


def _own_xcom(context: Context, key: str) -> Any:
    ti = context["ti"]
    return ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index)


def summarise(request: dict[str, Any]) -> str:
    """The request for a log line, with a long prompt shortened."""
    prompt = request.get("prompt", "")
    shown = prompt if len(prompt) <= 120 else prompt[:117] + "..."
    others = ", ".join(f"{name}={value!r}" for name, value in request.items() if name != "prompt")
    return f"prompt={shown!r}, {others}"
