"""The provider's metrics, through Airflow's own ``Stats`` (StatsD or OpenTelemetry, as the deployment set it).

Every name is here once, under ``ltx2.``, so the list in docs/reference.md and the code cannot drift apart.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.common.compat.sdk import Stats

PAID_SUBMITS = "ltx2.submits"  # accepted submits: each one is paid for
THROTTLED_SUBMITS = "ltx2.submits_throttled"  # submit attempts the gateway refused for capacity (free)
REUSED_VIDEOS = "ltx2.videos_reused"  # results served from an earlier run's video, no gateway call
BATCH_ROWS_FAILED = "ltx2.batch_rows_failed"  # rows of a batch whose generation failed (the batch goes on)
FAILURES = "ltx2.failures"  # tagged/suffixed by kind: the error class, e.g. ltx2.failures.Ltx2Timeout
GENERATION_SECONDS = "ltx2.generation_seconds"  # submit accepted -> video ready (timer)
DOWNLOAD_SECONDS = "ltx2.download_seconds"  # streaming the MP4 to output_uri (timer)
SPEND_USD = "ltx2.spend_usd"  # the key's spend today, paid or reserved, as the spend guard's ledger says (gauge)


def count(name: str) -> None:
    Stats.incr(name)


def failure(kind: str) -> None:
    """One failed task of the provider, by kind (the exception's class name)."""
    Stats.incr(f"{FAILURES}.{kind}")


def seconds(name: str, value: float) -> None:
    Stats.timing(name, timedelta(seconds=value))


def gauge(name: str, value: float) -> None:
    Stats.gauge(name, value)
