"""Table 9: what the spend guard's ledger costs a task, with a month of 30,000 records in it.

The month's records (spread over its days and 20 DAGs, all settled) are written straight into the store as empty
objects named as ``RecordName`` names them, not through ``reserve``: the figures are about reading them. S3 is
moto's server on loopback in a process of its own, seeded inside that process (its S3 backend directly: 30,000
PUTs over HTTP would take two minutes), then read only through the S3 API, as the provider reads a real bucket.
Every S3 call the ledger's client makes is counted by an event hook on that client (``before-call.s3``, per
operation), so a ListObjectsV2 page is one call. The store's client is made (listing an empty month) before any
figure is taken.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import multiprocessing
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import Table, median, verdict

RECORDS = 30_000
DAGS = 20
DAYS = 30
REPEATS = 3
PAGE = 1000  # names per ListObjectsV2 call
LOCAL_TARGET_SECONDS = 0.5  # "well under a second"
BUCKET = "ltx2-bench-ledger"
S3_CONN_ID = "ltx2_bench_ledger"
S3_SEED_TIMEOUT = 120


def month_of_records(month: str) -> list[str]:
    """``RECORDS`` settled records of ``month``: its first ``DAYS`` days (fewer in a shorter month), ``DAGS`` DAGs."""
    from airflow_provider_ltx2.spend import VIDEO_CENTS, RecordName

    year, number = map(int, month.split("-"))
    days = min(DAYS, calendar.monthrange(year, number)[1])
    return [
        RecordName(
            day=f"{month}-{index % days + 1:02d}",
            dag_id=f"bench_dag_{index % DAGS:02d}",
            uid=uuid.uuid4().hex,
            reserved=VIDEO_CENTS,
            spent=VIDEO_CENTS,
            settled=True,
        ).relative
        for index in range(RECORDS)
    ]


def serve_seeded(names: list[str], prefix: str, ready: Any, stop: Any) -> None:
    """moto's S3 server on loopback with ``names`` under ``prefix`` in ``BUCKET``; runs until ``stop`` is set."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    backend.create_bucket(BUCKET, "us-east-1")
    for name in names:
        backend.put_object(BUCKET, f"{prefix}/{name}", b"")
    host, port = server.get_host_and_port()
    ready.put(f"http://{host}:{port}")
    stop.wait()
    server.stop()


@contextmanager
def seeded_s3(names: list[str], prefix: str) -> Iterator[float]:
    """The seeded server running, ``S3_CONN_ID`` pointing at it; yields how long the seeding took (s)."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    started = time.monotonic()
    server = context.Process(target=serve_seeded, args=(names, prefix, ready, stop), daemon=True)
    server.start()
    try:
        endpoint = ready.get(timeout=S3_SEED_TIMEOUT)
        seeded = time.monotonic() - started
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        )
        yield seeded
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.kill()
            server.join(10)


def seed_local(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


class S3Calls:
    """Counts the S3 calls of the ledger's client by operation (ListObjectsV2, PutObject, ...)."""

    def __init__(self, fs: Any) -> None:
        self.counts: Counter[str] = Counter()
        fs.connect()  # s3fs makes its client on first use: make it now, to hook it
        fs.s3.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **kwargs: Any) -> None:
        self.counts[model.name] += 1

    def taken(self) -> Counter[str]:
        """The calls since the last ``taken``."""
        counts, self.counts = self.counts, Counter()
        return counts


def bare_listing(uri: str, conn_id: str | None) -> Callable[[], int]:
    """The ledger's folder (the month alone) listed without the provider or fsspec (``os.walk``; boto3's own
    paginator), for scale: what the store itself takes to answer."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if conn_id is None:
        return lambda: sum(len(files) for _, _, files in os.walk(parts.path))
    import boto3

    connection = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    client = boto3.client("s3", **connection["extra"])
    pages = client.get_paginator("list_objects_v2")
    prefix = parts.path.strip("/") + "/"
    return lambda: sum(page.get("KeyCount", 0) for page in pages.paginate(Bucket=parts.netloc, Prefix=prefix))


def measure(uri: str, conn_id: str | None, day: str) -> dict[str, Any]:
    """One store's figures: ``Ledger.spend(day)`` (median of ``REPEATS``), the bare listing once, then ``REPEATS``
    tasks' ``reserve`` and ``settle``; with the S3 calls of each."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_ltx2.api.connection import SpendCaps
    from airflow_provider_ltx2.spend import VIDEO_CENTS, Ledger, SpendGuard, TaskIdentity

    ledger = Ledger(uri, conn_id)
    calls = S3Calls(ObjectStoragePath(uri, conn_id=conn_id).fs) if conn_id else None  # the ledger's own client
    ledger.listing("1999-01")  # made the store's client: not in the figures
    spends: list[tuple[float, Counter[str], int]] = []
    if calls:
        calls.taken()
    for _ in range(REPEATS):
        started = time.perf_counter()
        spent = ledger.spend(day).month
        spends.append((time.perf_counter() - started, calls.taken() if calls else Counter(), spent))
    assert all(spend[1:] == spends[0][1:] for spend in spends), f"the listings differ: {spends}"
    started = time.perf_counter()
    bare = bare_listing(uri, conn_id)()
    bare_seconds = time.perf_counter() - started
    task = TaskIdentity("bench_dag_00", "bench_run", "generate_video", -1, 1)
    reserves: dict[str, list[tuple[float, Counter[str], float, Counter[str]]]] = {"monthly": [], "daily": []}
    for caps, kept in (
        (SpendCaps(daily_usd=10.0**6, monthly_usd=10.0**6, ledger_uri=uri, ledger_conn_id=conn_id), "monthly"),
        (SpendCaps(daily_usd=10.0**6, ledger_uri=uri, ledger_conn_id=conn_id), "daily"),  # lists the day alone
    ):
        guard = SpendGuard(caps, "ltx2_default", task, Quiet())
        for _ in range(REPEATS):
            started = time.perf_counter()
            reservation = guard.reserve(1)
            reserved = time.perf_counter()
            reserve_calls = calls.taken() if calls else Counter()
            reservation.paid_for(1)
            reservation.settle()
            settle_calls = calls.taken() if calls else Counter()
            reserves[kept].append((reserved - started, reserve_calls, time.perf_counter() - reserved, settle_calls))
    daily = reserves["daily"]
    return {
        "records": spends[0][2] // VIDEO_CENTS,
        "bare_records": bare,
        "bare_s": bare_seconds,
        "spend_s": median([spend[0] for spend in spends]),
        "spend_calls": spends[0][1],
        "reserve_s": median([r[0] for r in reserves["monthly"]]),
        "reserve_calls": reserves["monthly"][0][1],
        "daily_reserve_s": median([r[0] for r in daily]),
        "daily_reserve_calls": daily[0][1],
        "settle_s": median([r[2] for r in reserves["monthly"]]),
        "settle_calls": reserves["monthly"][0][3],
    }


class Quiet:
    """The guard's log: nothing printed per reservation."""

    def info(self, *args: Any) -> None:
        pass


def calls_text(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "-"


def run() -> Table:
    started = time.monotonic()
    now = datetime.now(timezone.utc)
    day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
    names = month_of_records(month)
    table = Table(
        f"9. The spend guard's ledger: a month of {RECORDS:,} records ({DAYS} days, {DAGS} DAGs) in a local folder "
        "and in S3 (moto's server on loopback); what one task's reservation costs",
        [
            "store",
            "records counted",
            "seeding s",
            f"Ledger.spend(day) ms (median of {REPEATS})",
            "its S3 calls",
            "bare listing ms",
            "reserve ms (monthly cap)",
            "its S3 calls",
            "reserve ms (daily cap only)",
            "its S3 calls",
            "settle ms",
            "its S3 calls",
        ],
    )
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ltx2-bench-ledger-") as folder:
        began = time.monotonic()
        seed_local(Path(folder), names)
        seeded = time.monotonic() - began
        figures["local folder"] = {**measure(f"file://{folder}", None, day), "seeded": seeded}
    try:
        import moto  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError:
        table.notes.append("S3 row not run: it needs the test extra (boto3, s3fs, moto).")
    else:
        with seeded_s3(names, "ledger") as seeded:
            figures["S3 (moto)"] = {**measure(f"s3://{BUCKET}/ledger", S3_CONN_ID, day), "seeded": seeded}
    for store, found in figures.items():
        assert found["records"] == found["bare_records"] == RECORDS, found
        table.rows.append(
            [
                store,
                f"{found['records']:,}",
                f"{found['seeded']:.1f}",
                f"{found['spend_s'] * 1000:.0f}",
                calls_text(found["spend_calls"]),
                f"{found['bare_s'] * 1000:.0f}",
                f"{found['reserve_s'] * 1000:.0f}",
                calls_text(found["reserve_calls"]),
                f"{found['daily_reserve_s'] * 1000:.0f}",
                calls_text(found["daily_reserve_calls"]),
                f"{found['settle_s'] * 1000:.0f}",
                calls_text(found["settle_calls"]),
            ]
        )
    local, pages = figures["local folder"], math.ceil(RECORDS / PAGE)
    table.notes += [
        "records counted = the month's spend as `Ledger.spend(day)` tallied it / USD 0.60 (every record once); "
        "bare listing = the same month listed once without the provider or fsspec: `os.walk`, boto3's own "
        f"`list_objects_v2` paginator. reserve = `SpendGuard.reserve(1)` under caps it fits (a record written, "
        f"then the month listed, or with a daily cap only the day's folder: {RECORDS // DAYS:,} records); "
        "settle = `Reservation.settle()` after paying (the settled record written, the open one "
        f"removed); medians of {REPEATS} tasks. S3 calls are counted on the ledger's own s3fs client by a botocore "
        "`before-call.s3` hook, per operation; the store's client is made before the figures.",
        f"Target a month of {RECORDS:,} records lists from a local folder in under {LOCAL_TARGET_SECONDS:g} s: "
        f"{verdict(local['spend_s'] < LOCAL_TARGET_SECONDS)} ({local['spend_s'] * 1000:.0f} ms).",
    ]
    if "S3 (moto)" in figures:
        s3 = figures["S3 (moto)"]
        lists = s3["spend_calls"]["ListObjectsV2"]
        table.notes += [
            f"Target a month of {RECORDS:,} records costs about {pages} listing calls on S3 ({PAGE:,} names a page): "
            f"{verdict(lists <= pages + 1 and sum(s3['spend_calls'].values()) == lists)} ({lists} ListObjectsV2, "
            f"{sum(s3['spend_calls'].values())} calls in all).",
            f"The S3 listing's time is moto's: boto3's bare paginator takes as long ({s3['bare_s']:.1f} s against "
            f"{s3['spend_s']:.1f} s), because for each page it answers moto gathers and sorts every key under the "
            "prefix, then skips to the token. On AWS "
            f"the {lists} pages come one after another (each needs the last one's continuation token): at 30 to 100 "
            "ms a page, about 1 to 3 s per reservation.",
        ]
    table.notes.append(f"Table 9 took {time.monotonic() - started:.0f} s.")
    return table


if __name__ == "__main__":
    print(run().markdown())
