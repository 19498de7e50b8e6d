"""The "LTX-2 video" extra link: where it reads the video URL, and the one way tasks write it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey


class Ltx2VideoLink(BaseOperatorLink):
    """ "LTX-2 video" button on the task: opens the generated video.

    Tasks write its XCom through ``persist`` (as amazon's ``BaseAwsLink`` does), so the key lives here only.
    """

    name = "LTX-2 video"
    key = "video_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=self.key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Context | dict[str, Any], video_url: str | None) -> None:
        """Point the link at ``video_url``; None (before the video exists) makes it an empty link."""
        context["ti"].xcom_push(key=cls.key, value=video_url)
