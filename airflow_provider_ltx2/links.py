"""The extra links: "LTX-2 video" (where it reads the video URL, and the one way tasks write it) and
"LTX-2 batch" (a batch task's page in the provider's UI plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow import __version__ as airflow_version
from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom, conf
from packaging.version import Version

from airflow_provider_ltx2 import xcom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

# Airflow 3 asks a task's links in the worker, of the task that just ran, as it ends or defers (and keeps the
# answers for the UI); Airflow 2 asks in the webserver, which has only XCom.
LINKS_ASKED_OF_THE_TASK = Version(airflow_version).major >= 3


class Ltx2VideoLink(BaseOperatorLink):
    """ "LTX-2 video" button on the task: opens the generated video.

    On Airflow 3 the task that just ran answers (its ``generation_facts``): a task refused before paying has
    no video, and looking up an XCom never written would log a false "XCom not found" error after its real
    one. On Airflow 2 it reads the XCom that tasks write through ``persist`` (as amazon's ``BaseAwsLink``
    does).
    """

    name = "LTX-2 video"
    key = xcom.VIDEO_URL

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if LINKS_ASKED_OF_THE_TASK:
            result = operator.generation_facts.result or {}  # type: ignore[attr-defined]  # VideoTaskMixin's
            return str(result.get("video_url") or "")  # none for a request handed off unfinished
        return XCom.get_value(key=self.key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Context | dict[str, Any], video_url: str) -> None:
        """Point the link at ``video_url`` (the video is ready)."""
        context["ti"].xcom_push(key=cls.key, value=video_url)


PLUGIN_PREFIX = "/ltx2"  # the UI plugin's mount: Airflow reserves /api/v2, /ui, /execution, /auth and /pluginsv2


def plugin_root() -> str:
    """The plugin's path under the api-server, prefixed with the path of ``[api] base_url`` as the app is."""
    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/") + PLUGIN_PREFIX


class Ltx2BatchLink(BaseOperatorLink):
    """ "LTX-2 batch" button on a batch task: its page in the UI plugin (counts, spend, videos, failed rows).

    The plugin also knows a batch task by this link, as it knows the other tasks by ``Ltx2VideoLink``.
    """

    name = "LTX-2 batch"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        run = f"{plugin_root()}/dags/{quote(ti_key.dag_id, safe='')}/runs/{quote(ti_key.run_id, safe='')}"
        return f"{run}/tasks/{quote(ti_key.task_id, safe='')}/video?map_index={ti_key.map_index}"
