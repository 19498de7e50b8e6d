"""``Ltx2GenerateVideoOperator``: submit one LTX-2 generation, wait for it, optionally save the MP4."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator, BaseOperatorLink, XCom, conf

from airflow_provider_ltx2.api import PRICE_PER_VIDEO_USD, Job, JobState, build_request
from airflow_provider_ltx2.exceptions import Ltx2GenerationFailed, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.waiting import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    Delivered,
    Wait,
    finished_video,
    read_event,
    result_dict,
    utc_now_iso,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskInstanceKey

# task_state_store key (Airflow 3.3+): the paid request of this task instance, kept across retries.
STATE_KEY = "ltx2_request"
# What an asset event of the task's outlets carries in its ``extra``.
ASSET_EVENT_KEYS = ("request_id", "video_url", "output_uri", "bytes", "completed_at")


class Ltx2VideoLink(BaseOperatorLink):
    """ "LTX-2 video" button on the task: opens the generated video."""

    name = "LTX-2 video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key="video_url", ti_key=ti_key) or ""


def check_waiting_arguments(poll_interval: float, timeout: float, output_uri: str | None) -> None:
    """Fail at DAG parse time on waiting arguments that could never work."""
    if not poll_interval > 0:
        raise Ltx2ValidationError(f"poll_interval={poll_interval!r}: accepted values are seconds > 0.")
    if not timeout > 0:
        raise Ltx2ValidationError(f"timeout={timeout!r}: accepted values are seconds > 0.")
    if output_uri is not None and not isinstance(output_uri, str):
        raise Ltx2ValidationError(f"output_uri={output_uri!r}: accepted values are a URI string or None.")


def deliver(
    hook: Ltx2Hook,
    context: Context,
    delivered: Delivered,
    *,
    request: dict[str, Any] | None,
    output_uri: str | None,
    output_conn_id: str | None,
    outlets: Iterable[Any] = (),
) -> dict[str, Any]:
    """Save the video where asked, publish it (extra link, asset events), and build the result dict."""
    size = None
    if output_uri:
        size = hook.download_video(delivered.video_url, output_uri, output_conn_id)
        hook.log.info("LTX-2 video %s saved to %s (%d bytes)", delivered.job.request_id, output_uri, size)
    else:
        hook.log.info("LTX-2 video %s is ready at %s", delivered.job.request_id, delivered.video_url)
    context["ti"].xcom_push(key="video_url", value=delivered.video_url)
    result = result_dict(delivered, request=request, output_uri=output_uri, size=size)
    # Assets in the task's outlets get the video's facts, for the DAGs scheduled on them.
    outlet_events = context.get("outlet_events")
    for outlet in outlets:
        if outlet_events is not None and isinstance(outlet, Asset):
            outlet_events[outlet].extra.update({key: result[key] for key in ASSET_EVENT_KEYS})
    return result


class Ltx2GenerateVideoOperator(BaseOperator):
    """Generate a video from an image and a prompt with LTX-2; return the result dict.

    Every request field is validated after templating and before anything is sent (each accepted
    submit costs money). The request id is pushed to XCom ``request_id`` as soon as the gateway accepts
    it, and on Airflow 3.3+ kept in the task state store, so a retry reattaches to the request already
    paid for instead of submitting again.

    :param image_url: public http(s) URL of a JPEG/PNG (templated).
    :param prompt: motion, camera movement and visual context (templated).
    :param duration: seconds, 2-10 (templated); None leaves the service default.
    :param resolution: "720p", "1080p" or "2160p" (templated).
    :param aspect_ratio: "16:9", "9:16" or "1:1" (templated).
    :param fps: 24, 25 or 30 (templated).
    :param generate_audio: add an audio track (templated).
    :param ltx2_conn_id: the ``ltx2`` connection with the subscription key.
    :param wait_for_completion: wait for the video; False returns right after the submit.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status polls (the gateway advises 5-10).
    :param timeout: seconds to wait for the video before failing with ``Ltx2Timeout``.
    :param output_uri: where to stream the MP4, e.g. ``file:///data/v.mp4`` or ``s3://b/{{ ds }}/v.mp4``
        (templated); None keeps only the URL.
    :param output_conn_id: connection of the object store behind ``output_uri``.
    """

    template_fields: Sequence[str] = (
        "image_url",
        "prompt",
        "duration",
        "resolution",
        "aspect_ratio",
        "fps",
        "generate_audio",
        "output_uri",
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_waiting_arguments(poll_interval, timeout, output_uri)
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
        request = self.build_request()
        job, submitted_at = self._reattach_or_submit(context, request)
        context["ti"].xcom_push(key="request_id", value=job.request_id)
        context["ti"].xcom_push(key="request", value=request)  # read back on resume after deferral
        context["ti"].xcom_push(key="video_url", value=None)  # the extra link reads it before the video exists
        if not self.wait_for_completion:
            return {**job.to_dict(), "status": "submitted", "request": request, "submitted_at": submitted_at}

        wait = Wait(job, deadline=time.time() + self.timeout, poll_interval=self.poll_interval)
        if self.deferrable:
            from airflow_provider_ltx2.triggers.ltx2 import Ltx2VideoTrigger

            self.defer(
                trigger=Ltx2VideoTrigger.for_wait(wait, self.ltx2_conn_id, submitted_at),
                method_name="execute_complete",
                timeout=None,  # the trigger enforces the absolute deadline itself
            )
        status = self.hook.wait_for_video(wait)
        return self._finish(context, finished_video(job, status, submitted_at), request)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: every event is checked; anything but a success fails the task."""
        delivered = read_event(event)
        ti = context["ti"]
        request = ti.xcom_pull(task_ids=ti.task_id, key="request", map_indexes=ti.map_index)
        return self._finish(context, delivered, request if isinstance(request, dict) else self.build_request())

    def _finish(self, context: Context, delivered: Delivered, request: dict[str, Any]) -> dict[str, Any]:
        result = deliver(
            self.hook,
            context,
            delivered,
            request=request,
            output_uri=self.output_uri,
            output_conn_id=self.output_conn_id,
            outlets=self.outlets,
        )
        if (store := context.get("task_state_store")) is not None:
            store.delete(STATE_KEY)
        return result

    def _reattach_or_submit(self, context: Context, request: dict[str, Any]) -> tuple[Job, str]:
        """Reuse the request an earlier try of this task paid for, if it can still deliver; else submit.

        The state store exists on Airflow 3.3+; on older versions every try submits anew.
        """
        store = context.get("task_state_store")
        if store is None:
            self.log.warning(
                "Reattaching to the request of an earlier try is unavailable (no task_state_store before "
                "Airflow 3.3): a retry of this task submits, and pays for, a new generation."
            )
        saved = store.get(STATE_KEY) if store is not None else None
        if isinstance(saved, dict) and saved.get("request") == request:
            job = Job.from_dict(saved)
            try:
                state = self.hook.get_status(job).state
            except Ltx2GenerationFailed:  # unknown to the gateway, or expired
                state = JobState.FAILED
            if state is not JobState.FAILED:
                self.log.info(
                    "Reattaching to LTX-2 request %s (%s) submitted by an earlier try; not submitting again.",
                    job.request_id,
                    state.value,
                )
                return job, str(saved.get("submitted_at"))
            self.log.warning(
                "The LTX-2 request %s of an earlier try failed or expired; submitting a new one.", job.request_id
            )
        elif saved:
            self.log.warning("The request changed since an earlier try; submitting the new one.")

        job = self.hook.submit(request)
        submitted_at = utc_now_iso()
        self.log.info(
            "Submitted LTX-2 request %s (USD %.2f): %s", job.request_id, PRICE_PER_VIDEO_USD, summarise(request)
        )
        if store is not None:
            store.set(STATE_KEY, {**job.to_dict(), "request": request, "submitted_at": submitted_at})
        return job, submitted_at


def summarise(request: dict[str, Any]) -> str:
    """The request for a log line, with a long prompt shortened."""
    prompt = request.get("prompt", "")
    shown = prompt if len(prompt) <= 120 else prompt[:117] + "..."
    others = ", ".join(f"{name}={value!r}" for name, value in request.items() if name != "prompt")
    return f"prompt={shown!r}, {others}"
