"""What the provider's tasks share: the operator and the sensor (the decorator through the operator).

The hook, deferring to the video trigger, resuming from it, delivering the video and OpenLineage are
written once here; each task class adds only what is its own (submitting, or being given a request id).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_ltx2.events import Delivered
    from airflow_provider_ltx2.waits import Wait


class Ltx2TaskMixin:
    """Mixed into ``BaseOperator`` subclasses that wait for an LTX-2 video and deliver it.

    The class sets ``ltx2_conn_id``, ``output_uri`` and ``output_conn_id``; ``defer`` and ``outlets`` come
    from ``BaseOperator``.
    """

    ltx2_conn_id: str
    output_uri: str | None
    output_conn_id: str | None
    outlets: list[Any]
    defer: Any

    @cached_property
    def hook(self) -> Ltx2Hook:
        return Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id)

    def defer_wait(self, wait: Wait, submitted_at: str | None) -> None:
        """Hand the wait for the video to the triggerer; the task resumes in ``execute_complete``."""
        from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger  # not at DAG-parse time

        self.defer(
            trigger=Ltx2VideoTrigger.for_wait(wait, self.hook, submitted_at),
            method_name="execute_complete",
            timeout=None,  # the trigger enforces the absolute deadline itself
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the video trigger: every event is checked; anything but a success fails the task."""
        from airflow_provider_ltx2.delivery import (
            failure_reported,  # task-time modules, imported at run time, not at DAG-parse time
        )
        from airflow_provider_ltx2.events import read_event

        with failure_reported(context):
            return self.finish(context, read_event(event))

    def finish(self, context: Context, delivered: Delivered) -> dict[str, Any]:
        """Deliver the finished video (save, publish) and return the result dict."""
        from airflow_provider_ltx2.delivery import (
            deliver,  # task-time modules, imported at run time, not at DAG-parse time
        )

        return deliver(
            self.hook,
            context,
            delivered,
            request=self.known_request(context),
            output_uri=self.output_uri,
            output_conn_id=self.output_conn_id,
            outlets=self.outlets,
            fingerprint=self.known_fingerprint(context),
        )

    def known_request(self, context: Context) -> dict[str, Any] | None:
        """The request this task submitted (or was handed), for a resubmit, the result dict and the sidecar."""
        return None

    def known_fingerprint(self, context: Context) -> str | None:
        """What the sidecar records of the request and its image, when the task knows it."""
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image in, the MP4 out, the gateway request and the generation's facets."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_complete(self.hook, task_instance)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image and the gateway request of a failed generation, as far as it got."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_failure(self.hook, task_instance, self.lineage_request_id())

    def lineage_request_id(self) -> Any:
        """What the task was given of its request before it ran (the sensor's ``request_id``), or None."""
        return None
