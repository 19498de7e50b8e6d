"""What the provider's tasks share: the operators (through ``Ltx2BaseOperator``) and the sensor.

``Ltx2HookMixin`` is the connection, its hook and deferring to a trigger, in the shape of Amazon's
``AwsBaseHookMixin``; ``VideoTaskMixin`` adds what a task that waits for one video does (resuming from the
video trigger, delivering, what a try learnt of its generation, OpenLineage). A DAG file imports this module
at parse time: the hook, the triggers and the task-time modules are imported when a task runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2.exceptions import Ltx2ValidationError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_ltx2.events import Delivered
    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
    from airflow_provider_ltx2.triggers.ltx2 import Ltx2Trigger
    from airflow_provider_ltx2.waits import Wait


def check_waiting_arguments(poll_interval: Any, timeout: Any) -> None:
    """Fail at DAG parse time on waiting arguments that could never work."""
    if not isinstance(poll_interval, (int, float)) or isinstance(poll_interval, bool) or not poll_interval > 0:
        raise Ltx2ValidationError(f"poll_interval={poll_interval!r}: accepted values are seconds > 0.")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise Ltx2ValidationError(f"timeout={timeout!r}: accepted values are seconds > 0.")


def check_output_uri(output_uri: Any) -> None:
    """Fail at DAG parse time on an ``output_uri`` that is not a URI string (a template is one)."""
    if output_uri is not None and not isinstance(output_uri, str):
        raise Ltx2ValidationError(f"output_uri={output_uri!r}: accepted values are a URI string or None.")


class Ltx2HookMixin:
    """The connection and its hook, and the one way the provider's tasks defer.

    The class sets ``ltx2_conn_id``; ``defer`` comes from ``BaseOperator``.
    """

    ltx2_conn_id: str
    defer: Any

    @cached_property
    def hook(self) -> Ltx2Hook:
        from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook  # not at DAG-parse time

        return Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id)

    def defer_to(self, trigger: Ltx2Trigger, method_name: str) -> None:
        """Hand the wait to ``trigger``; the task resumes in ``method_name`` with the trigger's event.

        The trigger holds its event back until the scheduler can take it (the resume guard), and enforces the
        task's absolute deadline itself, so the deferral has no timeout of its own.
        """
        from airflow_provider_ltx2.triggers.ltx2 import resume_not_before  # not at DAG-parse time

        trigger.not_before = resume_not_before()
        self.defer(trigger=trigger, method_name=method_name, timeout=None)


@dataclass
class GenerationFacts:
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


class VideoTaskMixin(Ltx2HookMixin):
    """Mixed into the operator and the sensor that wait for one LTX-2 video and deliver it.

    The class sets ``output_uri`` and ``output_conn_id``; ``outlets`` comes from ``BaseOperator``.
    """

    output_uri: str | None
    output_conn_id: str | None
    outlets: list[Any]

    @cached_property
    def generation_facts(self) -> GenerationFacts:
        """What this try learnt of its generation (see ``GenerationFacts``)."""
        return GenerationFacts()

    def keep_facts(
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

        self.defer_to(Ltx2VideoTrigger.for_wait(wait, self.hook, submitted_at), "execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the video trigger: every event is checked; anything but a success fails the task."""
        from airflow_provider_ltx2.delivery import failure_reported  # task-time modules: not at DAG-parse time
        from airflow_provider_ltx2.events import read_video_event

        with failure_reported(context):
            request_id = event.get("request_id") if isinstance(event, dict) else None  # failure events carry it too
            self.keep_facts(request=self.known_request(context), request_id=request_id)
            return self.deliver(context, read_video_event(event))

    def deliver(self, context: Context, delivered: Delivered) -> dict[str, Any]:
        """Deliver the finished video (save, publish) and return the result dict."""
        from airflow_provider_ltx2 import delivery  # task-time module: not at DAG-parse time

        result = delivery.deliver(
            self.hook,
            context,
            delivered,
            request=self.generation_facts.request,
            output_uri=self.output_uri,
            output_conn_id=self.output_conn_id,
            outlets=self.outlets,
            fingerprint=self.known_fingerprint(context),
        )
        self.keep_facts(result=result)
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
