"""``Ltx2VideoSensor``: wait for an LTX-2 request submitted elsewhere, e.g. by a non-waiting operator."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_ltx2.api import Job
from airflow_provider_ltx2.exceptions import Ltx2Throttled, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.links import Ltx2VideoLink
from airflow_provider_ltx2.waiting import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    Deadline,
    Delivered,
    Wait,
    check_waiting_arguments,
    deliver,
    failure_reported,
    finished_video,
    read_event,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage


class Ltx2VideoSensor(BaseSensorOperator):
    """Succeed when the LTX-2 request's video is ready; return the same result dict as the operator.

    :param request_id: the request id (templated), or the dict a ``wait_for_completion=False``
        operator returns (its ``polling_url``, request and submit time are then carried over).
    :param polling_url: the gateway's status URL for the request, when the submit reply had one.
    :param ltx2_conn_id: the ``ltx2`` connection with the subscription key.
    :param deferrable: wait in the triggerer instead of poking from a worker.
    :param poll_interval: seconds between status polls (the sensor's ``poke_interval``).
    :param timeout: seconds to wait for the video.
    :param output_uri: where to stream the MP4 (templated); None keeps only the URL.
    :param output_conn_id: connection of the object store behind ``output_uri``.
    """

    template_fields: Sequence[str] = ("request_id", "polling_url", "output_uri", "output_conn_id")
    operator_extra_links = (Ltx2VideoLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        request_id: str | dict[str, Any],
        polling_url: str | None = None,
        ltx2_conn_id: str = Ltx2Hook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        output_uri: str | None = None,
        output_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_waiting_arguments(poll_interval, timeout, output_uri)
        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.request_id = request_id
        self.polling_url = polling_url
        self.ltx2_conn_id = ltx2_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.output_uri = output_uri
        self.output_conn_id = output_conn_id

    @cached_property
    def hook(self) -> Ltx2Hook:
        return Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id)

    @cached_property
    def submission(self) -> dict[str, Any]:
        """What is known of the request: at least its id, more when given the operator's dict."""
        given = self.request_id if isinstance(self.request_id, dict) else {"request_id": self.request_id}
        request_id = given.get("request_id")
        if not isinstance(request_id, str) or not request_id.strip():
            raise Ltx2ValidationError(f"request_id={self.request_id!r}: accepted values are a non-empty id string.")
        return {**given, "request_id": request_id.strip(), "polling_url": self.polling_url or given.get("polling_url")}

    @cached_property
    def wait(self) -> Wait:
        deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
        return Wait(
            Job.from_dict(self.submission), deadline=deadline.at, poll_interval=self.poll_interval, limit=deadline.limit
        )

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger

        Ltx2VideoLink.persist(context, None)  # the extra link reads it while deferred
        self.defer(
            trigger=Ltx2VideoTrigger.for_wait(self.wait, self.hook, self.submission.get("submitted_at")),
            method_name="execute_complete",
            timeout=None,  # the trigger enforces the absolute deadline itself
        )

    def poke(self, context: Context) -> PokeReturnValue:
        with failure_reported(context):
            try:
                status = self.hook.get_status(self.wait.job, deadline=self.wait.deadline)
            except Ltx2Throttled:  # the gateway asks to slow down: poke again later
                return PokeReturnValue(is_done=False)
            if not self.wait.observe(status, self.log):
                return PokeReturnValue(is_done=False)
            delivered = finished_video(self.wait.job, status, self.submission.get("submitted_at"))
            return PokeReturnValue(is_done=True, xcom_value=self._finish(context, delivered))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: every event is checked; anything but a success fails the task."""
        with failure_reported(context):
            return self._finish(context, read_event(event))

    def _finish(self, context: Context, delivered: Delivered) -> dict[str, Any]:
        return deliver(
            self.hook,
            context,
            delivered,
            request=self.submission.get("request"),
            output_uri=self.output_uri,
            output_conn_id=self.output_conn_id,
            outlets=self.outlets,
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image in, the MP4 out, the gateway request and the generation's facets."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_complete(self.hook, task_instance)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image and the gateway request of a failed generation, as far as it got."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_failure(self.hook, task_instance, self.request_id)
