"""``Ltx2VideoSensor``: wait for an LTX-2 request submitted elsewhere, e.g. by a non-waiting operator."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.links import Ltx2VideoLink
from airflow_provider_ltx2.tasks import VideoTaskMixin, check_output_uri, check_waiting_arguments

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ltx2.waits import Wait


class Ltx2VideoSensor(VideoTaskMixin, BaseSensorOperator):
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
        ltx2_conn_id: str = defaults.CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = defaults.POLL_INTERVAL,
        timeout: float = defaults.TIMEOUT,
        output_uri: str | None = None,
        output_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_waiting_arguments(poll_interval, timeout)
        check_output_uri(output_uri)
        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.request_id = request_id
        self.polling_url = polling_url
        self.ltx2_conn_id = ltx2_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.output_uri = output_uri
        self.output_conn_id = output_conn_id

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
        from airflow_provider_ltx2.api.jobs import Job  # not at DAG-parse time
        from airflow_provider_ltx2.waits import Deadline, Wait, started_at

        deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
        return Wait(
            Job.from_dict(self.submission),
            deadline=deadline.at,
            poll_interval=self.poll_interval,
            limit=deadline.limit,
            started=started_at(self.submission.get("submitted_at")),
        )

    def execute(self, context: Context) -> Any:
        self.keep_facts(request=self.submission.get("request"), request_id=self.submission["request_id"])
        if not self.deferrable:
            return super().execute(context)
        self.defer_wait(self.wait, self.submission.get("submitted_at"))

    def poke(self, context: Context) -> PokeReturnValue:
        """One poll; past the deadline it keeps saying "not yet" and Airflow's sensor timeout ends the task."""
        from airflow_provider_ltx2.delivery import failure_reported  # task-time modules: not at DAG-parse time
        from airflow_provider_ltx2.events import delivered_video
        from airflow_provider_ltx2.lifecycle import poll_once
        from airflow_provider_ltx2.waits import Next

        with failure_reported(context):
            step = poll_once(self.hook, self.wait, self.log)
            self.wait = step.wait
            if step.next is Next.GAVE_UP:
                step.finished_status()  # raises the reason
            if step.next is not Next.FINISHED:
                return PokeReturnValue(is_done=False)
            delivered = delivered_video(self.wait.job, step.finished_status(), self.submission.get("submitted_at"))
            return PokeReturnValue(is_done=True, xcom_value=self.deliver(context, delivered))

    def known_request(self, context: Context) -> dict[str, Any] | None:
        return self.submission.get("request")
