"""``Ltx2GenerateVideoOperator``: submit one LTX-2 generation, wait for it, optionally save the MP4."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_ltx2 import metrics, xcom
from airflow_provider_ltx2.api.request import build_request
from airflow_provider_ltx2.contract import REQUEST_FIELDS
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.links import Ltx2VideoLink
from airflow_provider_ltx2.storage import DEFAULT_IMAGE_URL_EXPIRES_IN
from airflow_provider_ltx2.tasks import Ltx2TaskMixin
from airflow_provider_ltx2.waits import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    CapacityWait,
    Deadline,
    Wait,
    check_waiting_arguments,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ltx2.lifecycle import Generation


class Ltx2GenerateVideoOperator(Ltx2TaskMixin, BaseOperator):
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

    def request_fields(self) -> dict[str, Any]:
        """The request fields as templated, before validation."""
        return {name: getattr(self, name) for name in REQUEST_FIELDS}

    def build_request(self) -> dict[str, Any]:
        """The JSON body this task will submit, validated (raises ``Ltx2ValidationError``)."""
        return build_request(**self.request_fields())

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_ltx2.delivery import (
            failure_reported,  # task-time modules, imported at run time, not at DAG-parse time
        )
        from airflow_provider_ltx2.lifecycle import Generation, RequestRecord

        with failure_reported(context):
            deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
            if not RequestRecord.of(context).kept:  # said once per try, not on every resume
                self.log.warning(
                    "Reattaching to the request of an earlier try is unavailable (no task_state_store before "
                    "Airflow 3.3): a retry of this task submits, and pays for, a new generation."
                )
            generation = Generation.prepare(
                self.hook,
                self.request_fields(),
                image_conn_id=self.image_conn_id,
                image_url_expires_in=self.image_url_expires_in,
                log=self.log,
            )
            if self.reuse_existing and self.output_uri:
                saved = generation.reusable(self.output_uri, self.output_conn_id)
                if saved is not None:
                    return self._reuse(context, saved)
            if self.check_image:
                generation.check_image()
            # Read back on every resume: `airflow dags test` drops `defer(kwargs=...)`, and a decorated task's
            # request comes from a function that must not run twice.
            context["ti"].xcom_push(key=xcom.REQUEST, value=generation.request)
            context["ti"].xcom_push(key=xcom.FINGERPRINT, value=generation.fingerprint)
            Ltx2VideoLink.persist(context, None)  # the extra link reads it before the video exists
            return self._submit_then_wait(context, generation, CapacityWait.for_deadline(deadline, self.poll_interval))

    def _reuse(self, context: Context, saved: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_ltx2.delivery import publish, reused_result

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
        """Resume after waiting for capacity in the triggerer: try the submit again (same deadline)."""
        from airflow_provider_ltx2.delivery import failure_reported
        from airflow_provider_ltx2.events import read_capacity_event
        from airflow_provider_ltx2.lifecycle import Generation

        with failure_reported(context):
            generation = Generation.resumed(
                self.hook,
                self.known_request(context),
                image_conn_id=self.image_conn_id,
                image_url_expires_in=self.image_url_expires_in,
                log=self.log,
            )
            return self._submit_then_wait(context, generation, read_capacity_event(event))

    def known_request(self, context: Context) -> dict[str, Any]:
        request = xcom.own_xcom(context["ti"], xcom.REQUEST)
        return request if isinstance(request, dict) else self.build_request()

    def known_fingerprint(self, context: Context) -> str | None:
        return xcom.own_xcom(context["ti"], xcom.FINGERPRINT)

    def _submit_then_wait(self, context: Context, generation: Generation, capacity: CapacityWait) -> dict[str, Any]:
        from airflow_provider_ltx2.events import finished_video
        from airflow_provider_ltx2.lifecycle import RequestRecord, wait_in_worker

        record = RequestRecord.of(context)
        submitted = generation.paid_job(record, capacity, self._defer_for_capacity if self.deferrable else None)
        job = submitted.job
        context["ti"].xcom_push(key=xcom.REQUEST_ID, value=job.request_id)
        if not self.wait_for_completion:
            record.forget()  # handed off: a cleared task must submit anew, not reattach to this job
            return {
                **job.to_dict(),
                "status": "submitted",
                "request": generation.request,
                "submitted_at": submitted.submitted_at,
            }
        wait = Wait(job, deadline=capacity.deadline, poll_interval=self.poll_interval, limit=capacity.limit)
        if self.deferrable:
            self.defer_wait(wait, submitted.submitted_at)
        delivered = finished_video(job, wait_in_worker(self.hook, wait, self.log), submitted.submitted_at)
        result = self.finish(context, delivered)
        record.forget()
        return result

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the video trigger: deliver, then forget the paid request (it is done)."""
        from airflow_provider_ltx2.lifecycle import RequestRecord

        result = super().execute_complete(context, event)
        RequestRecord.of(context).forget()
        return result

    def _defer_for_capacity(self, capacity: CapacityWait) -> None:
        from airflow_provider_ltx2.triggers.ltx2 import Ltx2CapacityTrigger  # not at DAG-parse time

        self.defer(
            trigger=Ltx2CapacityTrigger(capacity.to_dict(), self.ltx2_conn_id),
            method_name="retry_submit",
            timeout=None,  # the trigger enforces the absolute deadline itself
        )
