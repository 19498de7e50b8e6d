"""The calls the gateway takes: where each goes, with which body and headers, before a client sends it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_ltx2.api.jobs import Job, polling_url_on_gateway
from airflow_provider_ltx2.contract import KEY_HEADER, RESULT_PATH, SUBMIT_PATH


def auth_headers(key: str) -> dict[str, str]:
    return {KEY_HEADER: key, "Content-Type": "application/json", "Cache-Control": "no-cache"}


@dataclass(frozen=True)
class Call:
    """One HTTP call to the gateway, before either client library sends it."""

    method: str
    url: str
    json_body: dict[str, Any] | None


def submit_call(base_url: str, body: dict[str, Any]) -> Call:
    return Call("POST", base_url.rstrip("/") + SUBMIT_PATH, body)


def poll_call(base_url: str, job: Job) -> Call:
    """The universal status GET when the submit reply gave a polling URL (kept on the gateway), else the legacy
    result POST."""
    polling_url = polling_url_on_gateway(job, base_url)
    if polling_url:
        return Call("GET", polling_url, None)
    return Call("POST", base_url.rstrip("/") + RESULT_PATH, {"request_id": job.request_id})
