"""``Ltx2GenerateVideoOperator``: submit one LTX-2 generation, wait for it, optionally save the MP4."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2 import xcom
from airflow_provider_ltx2.links import Ltx2VideoLink
from airflow_provider_ltx2.operators.base import Ltx2BaseOperator
from airflow_provider_ltx2.tasks import VideoTaskMixin, check_output_uri

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ltx2.lifecycle import Generation
    from airflow_provider_ltx2.spend import SpendGuard
    from airflow_provider_ltx2.waits import CapacityWait


class Ltx2GenerateVideoOperator(VideoTaskMixin, Ltx2BaseOperator):
    """Generate a video from an image and a prompt with LTX-2; return the result dict.

    Every request field is validated after templating and before anything is sent (each accepted
    submit costs money). A gateway at capacity (429) is waited out until the task's deadline, in the
    triggerer when deferrable. The request id is pushed to XCom ``request_id`` as soon as the gateway
    accepts it, and on Airflow 3.3+ kept in the task state store, so a retry reattaches to the request
    already paid for instead of submitting again.

    :param image_url: public http(s) URL of a JPEG/PNG, or an object-storage URI (``s3://``, ``gs://``...)
        sent as a short-lived signed URL (templated).
    :param prompt: motion, camera movement and visual context (templated).
    :param wait_for_completion: wait for the video; False returns right after the submit.
    :param output_uri: where to stream the MP4, e.g. ``file:///data/v.mp4`` or ``s3://b/{{ ds }}/v.mp4``
        (templated); None keeps only the URL. With ``reuse_existing``, an MP4 already there of this very request
        (its sidecar ``<output_uri>.json`` says so) is returned without any gateway call.
    The request settings (``duration``, ``resolution``, ``aspect_ratio``, ``fps``, ``generate_audio``), the
    connection, waiting, deferring and image arguments are ``Ltx2BaseOperator``'s.
    """

    template_fields: Sequence[str] = ("image_url", "prompt", "output_uri", *Ltx2BaseOperator.template_fields)
    operator_extra_links = (Ltx2VideoLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        image_url: str,
        prompt: str,
        wait_for_completion: bool = True,
        output_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_output_uri(output_uri)
        self.image_url = image_url
        self.prompt = prompt
        self.wait_for_completion = wait_for_completion
        self.output_uri = output_uri

    def request_fields(self) -> dict[str, Any]:
        """The request fields as templated, before validation."""
        return {"image_url": self.image_url, "prompt": self.prompt, **self.request_settings()}

    def build_request(self) -> dict[str, Any]:
        """The JSON body this task will submit, validated (raises ``Ltx2ValidationError``)."""
        from airflow_provider_ltx2.api.request import build_request  # not at DAG-parse time

        return build_request(**self.request_fields())

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_ltx2.delivery import failure_reported  # task-time modules: not at DAG-parse time
        from airflow_provider_ltx2.lifecycle import Generation, RequestRecord
        from airflow_provider_ltx2.spend import SpendGuard
        from airflow_provider_ltx2.waits import CapacityWait, Deadline

        with failure_reported(context):
            deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
            spend = SpendGuard.for_task(self.hook, context, self.log)  # a cap without a ledger fails here
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
                check_image=self.check_image,
                deadline=deadline.at,
            )
            self.keep_facts(request=generation.request)
            if self.reuse_existing and self.output_uri:
                saved = generation.reusable(self.output_uri, self.output_conn_id)
                if saved is not None:
                    return self._reuse(context, saved)
            if self.check_image:
                generation.check_image()
            # Read back on every resume: `airflow dags test` drops `defer(kwargs=...)`, and a decorated task's
            # request comes from a function that must not run twice.
            context["ti"].xcom_push(key=xcom.REQUEST, value=generation.request)
            if self.output_uri:  # the sidecar's: without an output there is none, and no image to read whole
                context["ti"].xcom_push(key=xcom.FINGERPRINT, value=generation.fingerprint)
            capacity = CapacityWait.for_deadline(deadline, self.poll_interval)
            return self._submit_then_wait(context, generation, capacity, spend)

    def _reuse(self, context: Context, saved: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_ltx2 import metrics
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
        self.keep_facts(result=result)
        return result

    def retry_submit(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after waiting for capacity in the triggerer: try the submit again (same deadline)."""
        from airflow_provider_ltx2.delivery import failure_reported
        from airflow_provider_ltx2.events import read_capacity_event
        from airflow_provider_ltx2.lifecycle import Generation
        from airflow_provider_ltx2.spend import SpendGuard

        with failure_reported(context):
            spend = SpendGuard.for_task(self.hook, context, self.log)
            generation = Generation.resumed(
                self.hook,
                self.known_request(context),
                image_conn_id=self.image_conn_id,
                image_url_expires_in=self.image_url_expires_in,
                log=self.log,
            )
            self.keep_facts(request=generation.request)
            return self._submit_then_wait(context, generation, read_capacity_event(event), spend)

    def known_request(self, context: Context) -> dict[str, Any]:
        request = xcom.own_xcom(context["ti"], xcom.REQUEST)
        return request if isinstance(request, dict) else self.build_request()

    def known_fingerprint(self, context: Context) -> str | None:
        return xcom.own_xcom(context["ti"], xcom.FINGERPRINT)

    def _submit_then_wait(
        self, context: Context, generation: Generation, capacity: CapacityWait, spend: SpendGuard
    ) -> dict[str, Any]:
        from airflow_provider_ltx2.events import delivered_video
        from airflow_provider_ltx2.lifecycle import RequestRecord, wait_in_worker
        from airflow_provider_ltx2.waits import Wait

        record = RequestRecord.of(context)
        submitted = generation.paid_job(record, capacity, spend, self._defer_for_capacity if self.deferrable else None)
        job = submitted.job
        context["ti"].xcom_push(key=xcom.REQUEST_ID, value=job.request_id)
        self.keep_facts(request_id=job.request_id)
        if not self.wait_for_completion:
            record.forget()  # handed off: a cleared task must submit anew, not reattach to this job
            handed_off = {
                **job.to_dict(),
                "status": "submitted",
                "request": generation.request,
                "submitted_at": submitted.submitted_at,
            }
            self.keep_facts(result=handed_off)
            return handed_off
        wait = Wait(job, deadline=capacity.deadline, poll_interval=self.poll_interval, limit=capacity.limit)
        if self.deferrable:
            self.defer_wait(wait, submitted.submitted_at)
        delivered = delivered_video(job, wait_in_worker(self.hook, wait, self.log), submitted.submitted_at)
        result = self.deliver(context, delivered)
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

        self.defer_to(Ltx2CapacityTrigger(capacity.to_dict(), self.ltx2_conn_id), "retry_submit")
