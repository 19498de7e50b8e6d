"""``Ltx2Plugin``: an "LTX-2 video" tab on every task instance page, an "LTX-2 videos" tab on DAG runs, and
an "LTX-2 spend" page in the navigation.

Registered through the ``airflow.plugins`` entry point (a plugin named only in provider info is not loaded
while ``[core] lazy_discover_providers`` is on). Plugins load in every Airflow component, so this module
stays cheap: the FastAPI app behind the tabs (``plugins.app``) is built on its first request, and only the
api-server ever serves one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import AirflowPlugin

from airflow_provider_ltx2.links import PLUGIN_PREFIX, plugin_root

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

# The UI puts the tab's href in an iframe as is: prefixed with the path of [api] base_url, as the app is.
RUN_PATH = plugin_root() + "/dags/{DAG_ID}/runs/{RUN_ID}"


class LazyVideoApp:
    """An ASGI app that builds the plugin's FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from airflow_provider_ltx2.plugins.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class Ltx2Plugin(AirflowPlugin):
    """The provider's views in Airflow's UI; every request is checked with Airflow's own auth."""

    name = "ltx2"
    fastapi_apps = [{"name": "LTX-2 videos", "app": LazyVideoApp(), "url_prefix": PLUGIN_PREFIX}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "LTX-2 video",
            "href": RUN_PATH + "/tasks/{TASK_ID}/video?map_index={MAP_INDEX}",
            "destination": "task_instance",
            "url_route": "ltx2-video",
        },
        {
            "name": "LTX-2 videos",
            "href": RUN_PATH + "/videos",
            "destination": "dag_run",
            "url_route": "ltx2-videos",
        },
        {
            "name": "LTX-2 spend",
            "href": plugin_root() + "/spend",
            "destination": "nav",
            "url_route": "ltx2-spend",
        },
    ]
