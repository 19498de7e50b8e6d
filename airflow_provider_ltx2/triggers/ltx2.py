"""``Ltx2VideoTrigger``: waits for a generation in the triggerer, so no worker slot is held meanwhile."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ltx2.api import Job
from airflow_provider_ltx2.exceptions import Ltx2Error
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.waiting import (
    DEFAULT_POLL_INTERVAL,
    Wait,
    error_event,
    finished_event,
    timeout_event,
)


class Ltx2VideoTrigger(BaseTrigger):
    """Poll one LTX-2 request until it finishes, fails, or its absolute deadline passes; emit one event.

    Its kwargs are stored in plain text in the metadata DB and logged by the triggerer, so they hold
    only the request id, the gateway's polling URL, the connection id, the poll interval and the
    deadline (epoch seconds, so a restarted triggerer keeps the original deadline) and the submit time. The key is
    fetched from the connection when the trigger runs.
    """

    def __init__(
        self,
        request_id: str,
        deadline: float,
        polling_url: str | None = None,
        ltx2_conn_id: str = Ltx2Hook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        submitted_at: str | None = None,
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.deadline = deadline
        self.polling_url = polling_url
        self.ltx2_conn_id = ltx2_conn_id
        self.poll_interval = poll_interval
        self.submitted_at = submitted_at

    @classmethod
    def for_wait(cls, wait: Wait, ltx2_conn_id: str, submitted_at: str | None) -> Ltx2VideoTrigger:
        """The trigger that carries on ``wait`` in the triggerer (same job, deadline and interval)."""
        return cls(
            request_id=wait.job.request_id,
            deadline=wait.deadline,
            polling_url=wait.job.polling_url,
            ltx2_conn_id=ltx2_conn_id,
            poll_interval=wait.poll_interval,
            submitted_at=submitted_at,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "deadline": self.deadline,
                "polling_url": self.polling_url,
                "ltx2_conn_id": self.ltx2_conn_id,
                "poll_interval": self.poll_interval,
                "submitted_at": self.submitted_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        job = Job(self.request_id, self.polling_url)
        wait = Wait(job, deadline=self.deadline, poll_interval=self.poll_interval)
        hook = Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id)
        try:
            gateway = await hook.agateway()
            async with hook.async_session() as session:
                # Triggers created together (a mapped task, a triggerer restart) spread their first polls
                # over one interval instead of all hitting the gateway at once.
                await asyncio.sleep(random.uniform(0, wait.next_delay()))
                while not wait.expired():
                    status = await hook.aget_status(session, gateway, job, deadline=self.deadline)
                    if wait.observe(status, self.log):
                        yield TriggerEvent(finished_event(job, status, self.submitted_at))
                        return
                    await asyncio.sleep(wait.next_delay())
        except Ltx2Error as error:
            yield TriggerEvent(error_event(job, error))
            return
        yield TriggerEvent(timeout_event(wait))
