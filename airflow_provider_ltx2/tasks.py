"""What the provider's tasks share: the operator and the sensor (the decorator through the operator).

The hook, deferring to the video trigger, resuming from it, delivering the video, what a try learnt of its
generation and OpenLineage are written once here; each task class adds only what is its own (submitting,
or being given a request id).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_ltx2.events import Delivered
    from airflow_provider_ltx2.waits import Wait


@dataclass
class RunFacts:
    """What this try of a task learnt of its generation, kept on the task as it learns it.

    The OpenLineage listener builds a task's lineage in a forked process by default, which must not pull
    XCom nor look up a connection: under ``airflow dags test`` the call never returns and the listener drops
    the event after 10 s; in a deployment the fork would share the task's channel to its supervisor. The
    extra link is asked the same way, by Airflow 3's worker as the task ends or defers. So both read this.
    """

    request: dict[str, Any] | None = None  # validated, with the image's original URI (never a signed URL)
    request_id: str | None = None
    gateway_url: str | None = None  # the gateway's base URL, for the request id's ``source``; never the key
    result: dict[str, Any] | None = None  # the result dict, once the video is delivered or handed off


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

    @cached_property
    def generation_facts(self) -> RunFacts:
        """What this try learnt of its generation (see ``RunFacts``)."""
        return RunFacts()

    def learnt(
        self, *, request: dict[str, Any] | None = None, request_id: Any = None, result: dict[str, Any] | None = None
    ) -> None:
        """Keep on the task what it now knows of its generation; a result carries its request and id."""
        facts = self.generation_facts
        if result is not None:
            facts.result = result
            request, request_id = result.get("request"), result.get("request_id")
        if request is not None:
            facts.request = request
        if isinstance(request_id, str) and request_id:
            facts.request_id = request_id
            facts.gateway_url = self.hook.gateway.base_url  # looked up here: the lineage's fork must not

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
            request_id = event.get("request_id") if isinstance(event, dict) else None  # failure events carry it too
            self.learnt(request=self.known_request(context), request_id=request_id)
            return self.finish(context, read_event(event))

    def finish(self, context: Context, delivered: Delivered) -> dict[str, Any]:
        """Deliver the finished video (save, publish) and return the result dict."""
        from airflow_provider_ltx2.delivery import (
            deliver,  # task-time modules, imported at run time, not at DAG-parse time
        )

        result = deliver(
            self.hook,
            context,
            delivered,
            request=self.generation_facts.request,
            output_uri=self.output_uri,
            output_conn_id=self.output_conn_id,
            outlets=self.outlets,
            fingerprint=self.known_fingerprint(context),
        )
        self.learnt(result=result)
        return result

    def known_request(self, context: Context) -> dict[str, Any] | None:
        """The request this task submitted (or was handed), read back on a resume."""
        return None

    def known_fingerprint(self, context: Context) -> str | None:
        """What the sidecar records of the request and its image, when the task knows it."""
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image in, the MP4 out, the gateway request and the generation's facets."""
        from airflow_provider_ltx2 import lineage

        return lineage.on_complete(self.generation_facts.result, self.generation_facts.gateway_url)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the image and the gateway request of a failed generation, as far as it got."""
        from airflow_provider_ltx2 import lineage

        facts = self.generation_facts
        return lineage.on_failure(facts.request, facts.request_id, facts.gateway_url)
