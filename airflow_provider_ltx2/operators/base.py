"""``Ltx2BaseOperator``: what the provider's operators share, in the shape of Amazon's ``AwsBaseOperator``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.contract import REQUEST_FIELDS
from airflow_provider_ltx2.tasks import Ltx2HookMixin, check_waiting_arguments

REQUEST_SETTINGS = tuple(name for name in REQUEST_FIELDS if name not in ("image_url", "prompt"))


class Ltx2BaseOperator(Ltx2HookMixin, BaseOperator):
    """The connection and its hook, the image and request settings, waiting and deferring.

    A subclass declares its own arguments (what to generate, where the videos go) and passes these on.

    :param duration: seconds, 2-10 (templated); None leaves the service default.
    :param resolution: "720p", "1080p" or "2160p" (templated).
    :param aspect_ratio: "16:9", "9:16" or "1:1" (templated).
    :param fps: 24, 25 or 30 (templated).
    :param generate_audio: add an audio track (templated).
    :param ltx2_conn_id: the ``ltx2`` connection with the subscription key.
    :param deferrable: wait (for capacity, then for the video) in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status polls (the gateway advises 5-10).
    :param timeout: seconds from the task's start to its end (waiting for capacity included) before it fails
        with ``Ltx2Timeout``; an earlier ``execution_timeout`` wins, deferred or not.
    :param output_conn_id: connection of the object store the videos are written to.
    :param image_conn_id: connection of the object store behind an object-storage image URI (templated).
    :param image_url_expires_in: seconds a signed image URL stays valid (default 3600: long enough for a job
        that waits in the gateway's queue).
    :param check_image: read the image's first bytes before paying and fail on a missing, empty or
        non-JPEG/PNG image; False for images only the gateway can reach.
    :param reuse_existing: when the output already holds the MP4 of this very request (its sidecar says so and
        the MP4 matches it), keep it without any gateway call.
    """

    # The shared arguments a template may set; each operator adds its own in front.
    template_fields: Sequence[str] = (*REQUEST_SETTINGS, "image_conn_id", "output_conn_id")

    def __init__(
        self,
        *,
        duration: int | str | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        fps: int | str | None = None,
        generate_audio: bool | str | None = None,
        ltx2_conn_id: str = defaults.CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = defaults.POLL_INTERVAL,
        timeout: float = defaults.TIMEOUT,
        output_conn_id: str | None = None,
        image_conn_id: str | None = None,
        image_url_expires_in: int = defaults.IMAGE_URL_EXPIRES_IN,
        check_image: bool = True,
        reuse_existing: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_waiting_arguments(poll_interval, timeout)
        self.duration = duration
        self.resolution = resolution
        self.aspect_ratio = aspect_ratio
        self.fps = fps
        self.generate_audio = generate_audio
        self.ltx2_conn_id = ltx2_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.output_conn_id = output_conn_id
        self.image_conn_id = image_conn_id
        self.image_url_expires_in = image_url_expires_in
        self.check_image = check_image
        self.reuse_existing = reuse_existing

    def request_settings(self) -> dict[str, Any]:
        """The request settings as templated (``duration``, ``resolution``...), before validation."""
        return {name: getattr(self, name) for name in REQUEST_SETTINGS}
