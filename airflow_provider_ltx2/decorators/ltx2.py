"""``@task.ltx2_video``: a TaskFlow function returns the request; the task then runs like the operator."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_ltx2.contract import REQUEST_FIELDS
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class _Ltx2VideoDecoratedOperator(DecoratedOperator, Ltx2GenerateVideoOperator):
    """Call the function for the request fields, then submit, wait and download as the operator does."""

    custom_operator_name = "@task.ltx2_video"
    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *Ltx2GenerateVideoOperator.template_fields)

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("image_url", "")  # set from the function's return value at run time
        kwargs.setdefault("prompt", "")
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        request = self.python_callable(*self.op_args, **determine_kwargs(self.python_callable, self.op_args, context))
        for name, value in request_fields(request).items():
            setattr(self, name, value)
        return Ltx2GenerateVideoOperator.execute(self, context)


def request_fields(returned: Any) -> dict[str, Any]:
    """The function's return value, checked: a dict of LTX-2 request fields (``image_url``, ``prompt``...)."""
    if not isinstance(returned, Mapping):
        raise Ltx2ValidationError(
            f"@task.ltx2_video function returned {returned!r}: accepted values are a dict of request fields "
            f"({', '.join(REQUEST_FIELDS)})."
        )
    unknown = sorted(set(returned) - set(REQUEST_FIELDS))
    if unknown:
        raise Ltx2ValidationError(
            f"@task.ltx2_video function returned unknown fields {unknown}: accepted fields are "
            f"{', '.join(REQUEST_FIELDS)}."
        )
    return dict(returned)


def ltx2_video_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Turn a function that returns an LTX-2 request into a video generation task.

    Operator arguments (``deferrable``, ``output_uri``, ``poll_interval``...) go to the decorator::

        @task.ltx2_video(deferrable=True, output_uri="file:///data/{{ ds }}/{{ ti.map_index }}.mp4")
        def animate(row: dict) -> dict:
            return {"image_url": row["image"], "prompt": row["caption"], "duration": 6}
    """
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_Ltx2VideoDecoratedOperator, **kwargs
    )
