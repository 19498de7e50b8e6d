"""The spend guard: a cap on what all tasks paying with one key spend per UTC day and per calendar month.

Every paying task records what it may spend in the ledger (a folder in any object store: the connection's
``spend_ledger_uri``) before its first paid call, then lists the month's records (the day's, with a daily cap
only). When the total passes a cap it removes its record and fails with ``Ltx2BudgetExceeded`` before paying.
Write first, then read: two tasks racing may both refuse, never both pass; one refused only because of other
open reservations tries again after a random pause, a few times. At its end a task settles its record to what
it really paid.

The totals come from one listing alone: a record's name carries its amounts, so a month of records costs one
recursive listing (1,000 names per call on S3), never one read per record::

    <ledger>/<YYYY-MM>/<YYYY-MM-DD>/<dag_id>/<uid>_r<reserved cents>_s<spent cents>_<open|settled>.json

A record's body names the DAG, run, task, map index and try for people reading the ledger; it carries no key
and no signed URL (nothing of the request at all). Records are never rewritten in place: settling writes the
settled record, then removes the open one, and a listing that sees both counts the settled one.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from airflow_provider_ltx2 import metrics
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.exceptions import Ltx2BudgetExceeded, Ltx2SubmitUnconfirmed

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from airflow_provider_ltx2.api.connection import SpendCaps
    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

RECORD_VERSION = 1
RESERVE_ATTEMPTS = 5  # a reservation refused only for other open reservations is tried again, this often at most
RACE_PAUSE_SECONDS = (0.2, 1.0)  # the first pause before trying again, drawn at random; doubled each time
VIDEO_CENTS = round(PRICE_PER_VIDEO_USD * 100)
_RECORD_FILE = re.compile(
    r"(?P<uid>[0-9a-f]{32})_r(?P<reserved>\d{1,12})_s(?P<spent>\d{1,12})_(?P<state>open|settled)\.json"
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def usd(cents: int) -> float:
    return cents / 100


def cents(amount_usd: float) -> int:
    return round(amount_usd * 100)


def dag_folder(dag_id: str) -> str:
    """A DAG's folder in the ledger: its id as written when plain (Airflow's ids are letters, digits and ``_.-``),
    escaped otherwise, so that no id (``..``) names a folder outside its own."""
    name = quote(dag_id, safe="")
    return name.replace(".", "%2E") if set(name) <= {"."} else name


@dataclass(frozen=True)
class RecordName:
    """One record's place in the ledger, and the amounts its name carries (in cents)."""

    day: str  # YYYY-MM-DD, UTC, of the reservation: its spend counts on that day and in that month
    dag_id: str
    uid: str
    reserved: int
    spent: int = 0
    settled: bool = False

    @property
    def month(self) -> str:
        return self.day[:7]

    @property
    def charge(self) -> int:
        """What the record counts for: a settled one what was paid; an open one its whole reservation at least."""
        return self.spent if self.settled else max(self.reserved, self.spent)

    @property
    def relative(self) -> str:
        state = "settled" if self.settled else "open"
        file_name = f"{self.uid}_r{self.reserved}_s{self.spent}_{state}.json"
        return f"{self.month}/{self.day}/{dag_folder(self.dag_id)}/{file_name}"

    @classmethod
    def parse(cls, relative: str) -> RecordName | None:
        """The record a path under the ledger names; None for anything else (a stray file is no spend)."""
        parts = relative.strip("/").split("/")
        if len(parts) != 4:
            return None
        month, day, folder, file_name = parts
        found = _RECORD_FILE.fullmatch(file_name)
        if found is None or not _DAY.fullmatch(day) or day[:7] != month:
            return None
        return cls(
            day=day,
            dag_id=unquote(folder),
            uid=found["uid"],
            reserved=int(found["reserved"]),
            spent=int(found["spent"]),
            settled=found["state"] == "settled",
        )


@dataclass
class Spend:
    """The key's spend as one listing saw it (cents): settled records, and open reservations whole."""

    day: str
    today: int = 0
    month: int = 0
    today_open: int = 0  # of which open reservations: tasks about to pay, or that refused and are removing theirs
    month_open: int = 0
    today_by_dag: dict[str, int] = field(default_factory=dict)
    month_by_dag: dict[str, int] = field(default_factory=dict)


def tally(paths: Iterable[str], day: str) -> Spend:
    """Sum the records among ``paths`` (relative to the ledger) into ``day``'s and its month's spend, per DAG.

    A record seen twice (settled while the listing ran) counts once, settled.
    """
    records: dict[str, RecordName] = {}
    for path in paths:
        record = RecordName.parse(path)
        if record is None:
            continue
        kept = records.get(record.uid)
        if kept is None or (record.settled, record.charge) > (kept.settled, kept.charge):
            records[record.uid] = record
    spend = Spend(day)
    for record in records.values():
        if record.month != day[:7]:
            continue
        open_charge = 0 if record.settled else record.charge
        spend.month += record.charge
        spend.month_open += open_charge
        spend.month_by_dag[record.dag_id] = spend.month_by_dag.get(record.dag_id, 0) + record.charge
        if record.day == day:
            spend.today += record.charge
            spend.today_open += open_charge
            spend.today_by_dag[record.dag_id] = spend.today_by_dag.get(record.dag_id, 0) + record.charge
    return spend


def refusal(spend: Spend, reserving: int, caps: SpendCaps, conn_id: str) -> str | None:
    """Why a reservation of ``reserving`` cents, already counted in ``spend``, passes a cap; None if it fits."""
    for period, total, cap, extra in (
        ("today", spend.today, caps.daily_usd, "daily_budget_usd"),
        ("this month", spend.month, caps.monthly_usd, "monthly_budget_usd"),
    ):
        if cap is not None and total > cents(cap):
            return (
                f"The LTX-2 key's spend {period} (UTC) is USD {usd(total - reserving):.2f}, paid or reserved by "
                f"running tasks; this task's reservation of USD {usd(reserving):.2f} would bring it to USD "
                f"{usd(total):.2f}, over the cap {extra}={cap:g} of connection {conn_id!r}. Nothing was paid."
            )
    return None


def may_fit_later(spend: Spend, reserving: int, caps: SpendCaps) -> bool:
    """Whether a refused reservation would fit without the other open reservations: those of tasks that raced it
    may be removed a moment later (a task refused removes its own), so trying again after a pause can pass."""
    return all(
        cap is None or total - (still_open - reserving) <= cents(cap)
        for total, still_open, cap in (
            (spend.today, spend.today_open, caps.daily_usd),
            (spend.month, spend.month_open, caps.monthly_usd),
        )
    )


class Ledger:
    """The ledger folder in its object store: records are written, listed by month, and removed."""

    def __init__(self, uri: str, conn_id: str | None) -> None:
        self.uri = uri
        self.conn_id = conn_id

    def _path(self, relative: str = "") -> ObjectStoragePath:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        root = ObjectStoragePath(self.uri, conn_id=self.conn_id)
        return root / relative if relative else root

    def write(self, record: RecordName, body: Mapping[str, Any]) -> None:
        path = self._path(record.relative)
        if path.protocol in ("file", "local"):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, sort_keys=True))  # one PUT: a record appears whole or not at all

    def remove(self, record: RecordName) -> None:
        path = self._path(record.relative)
        with suppress(FileNotFoundError):  # S3 ignores a missing key; a local folder does not
            path.fs.rm_file(path.path)  # one DELETE (``unlink`` asks the store first)

    def listing(self, folder: str) -> list[str]:
        """Every path under ``folder`` (a month's or a day's), relative to the ledger: one recursive listing
        (fsspec's ``find``, which S3 answers 1,000 names per call), not one per DAG or day folder."""
        path = self._path(folder)
        base = path.path.rstrip("/")
        if path.protocol in ("file", "local"):
            # os.walk: fsspec's local ``find`` stats every file (0.3-0.8 s for 30,000 records; the walk, 25 ms).
            return [
                "/".join(part for part in (folder, root[len(base) :].strip("/"), name) if part)
                for root, _, names in os.walk(base)
                for name in names
            ]
        fs = path.fs
        fs.invalidate_cache(base)  # the listing must see what other tasks wrote a moment ago
        try:
            found = fs.find(base)
        except FileNotFoundError:
            return []
        return [f"{folder}/{name[len(base) :].lstrip('/')}" for name in found if name.startswith(base + "/")]

    def spend(self, day: str, *, whole_month: bool = True) -> Spend:
        """The key's spend on ``day`` and in its month. ``whole_month=False`` lists the day's folder alone (one S3
        call for up to 1,000 records a day, against one per 1,000 of the month): the month's figures then hold
        that day only."""
        return tally(self.listing(day[:7] if whole_month else f"{day[:7]}/{day}"), day)


@dataclass(frozen=True)
class TaskIdentity:
    """Who spends: the task instance a record belongs to (what its body names)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int

    @classmethod
    def of(cls, context: Context) -> TaskIdentity:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=str(ti.dag_id),
            run_id=str(ti.run_id),
            task_id=str(ti.task_id),
            map_index=map_index if isinstance(map_index, int) else -1,
            try_number=int(getattr(ti, "try_number", 1) or 1),
        )


@dataclass
class Reservation:
    """A task's open record and what it has paid against it; settling writes what was paid and frees the rest.

    Without a ledger (no cap) it is ``nothing``, and settling does nothing.
    """

    ledger: Ledger | None
    record: RecordName | None
    body: dict[str, Any] = field(default_factory=dict)
    paid: int = 0  # cents

    @classmethod
    def nothing(cls) -> Reservation:
        return cls(None, None)

    def paid_for(self, videos: int) -> None:
        if videos < 0:  # a negative amount would make a record name no listing counts
            raise ValueError(f"videos={videos!r}: a reservation is paid for 0 or more videos")
        self.paid += videos * VIDEO_CENTS

    def to_dict(self) -> dict[str, Any] | None:
        """What a batch carries across its deferrals and tries to settle the record later, in the ledger it was
        written to (even if the connection names another one by then)."""
        if self.ledger is None or self.record is None:
            return None
        ledger = {"ledger_uri": self.ledger.uri, "ledger_conn_id": self.ledger.conn_id}
        return {**ledger, "record": self.record.relative, "body": self.body}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any] | None) -> Reservation:
        """The reservation ``to_dict`` kept (a batch's, across deferrals and tries); nothing for None
        or for anything else."""
        if not isinstance(saved, Mapping):
            return cls.nothing()
        record = RecordName.parse(str(saved.get("record", "")))
        uri, conn_id, body = saved.get("ledger_uri"), saved.get("ledger_conn_id"), saved.get("body")
        if record is None or not isinstance(uri, str) or not isinstance(conn_id, (str, type(None))):
            return cls.nothing()
        return cls(Ledger(uri, conn_id), record, dict(body) if isinstance(body, Mapping) else {})

    def settle(self) -> None:
        """Write the record as settled to what was paid (none when nothing was), then remove the open one."""
        if self.ledger is None or self.record is None:
            return
        opened = self.record
        if self.paid:
            settled = replace(opened, spent=self.paid, settled=True)
            body = {**self.body, "spent_usd": usd(self.paid), "state": "settled", "settled_at": _now_iso()}
            self.ledger.write(settled, body)
        self.ledger.remove(opened)
        self.record = None


class SpendGuard:
    """The key's caps and ledger, for one task instance: reserve before the first paid call, settle at the end."""

    def __init__(self, caps: SpendCaps, conn_id: str, task: TaskIdentity, log: Any) -> None:
        self.caps = caps
        self.conn_id = conn_id
        self.task = task
        self.log = log

    @classmethod
    def for_task(cls, hook: Ltx2Hook, context: Context, log: Any) -> SpendGuard:
        """The guard of this task; raises ``Ltx2ValidationError`` for caps that cannot work (a cap without a ledger)
        before anything is read or paid."""
        return cls(hook.spend_caps, hook.ltx2_conn_id, TaskIdentity.of(context), log)

    @property
    def ledger(self) -> Ledger | None:
        uri = self.caps.ledger_uri
        return None if uri is None else Ledger(uri, self.caps.ledger_conn_id)

    def reserve(self, videos: int) -> Reservation:
        """Record a reservation for ``videos`` generations, then check the caps against the ledger's records.

        Raises ``Ltx2BudgetExceeded`` (the record removed) when today's or this month's total would pass a cap.
        When only other tasks' open reservations stand in the way (tasks that started at the same moment: each
        sees all the others' records, and all may refuse), it tries again after a random pause, a few times;
        every try writes before it reads, so two tasks can still never both pass.
        Reserving nothing writes nothing: a task that reuses every video pays and reserves nothing.
        """
        ledger = self.ledger
        if ledger is None or videos <= 0:
            return Reservation.nothing()
        attempt = 0
        while True:
            attempt += 1
            record, body = self._written(ledger, videos)
            if not self.caps.capped:
                return Reservation(ledger, record, body)
            refused = self._refusal(ledger, record)
            if refused is None:
                return Reservation(ledger, record, body)
            message, fits_later = refused
            if attempt == RESERVE_ATTEMPTS or not fits_later:
                raise Ltx2BudgetExceeded(message)
            pause = random.uniform(*RACE_PAUSE_SECONDS) * 2 ** (attempt - 1)
            self.log.info(
                "Reservations of other running tasks leave no room under the LTX-2 key's cap now; trying again in "
                "%.1f s (%d of %d).",
                pause,
                attempt,
                RESERVE_ATTEMPTS,
            )
            time.sleep(pause)

    def _written(self, ledger: Ledger, videos: int) -> tuple[RecordName, dict[str, Any]]:
        """A new open record for ``videos`` generations, written to the ledger, and its body."""
        now = datetime.now(timezone.utc)
        record = RecordName(
            day=now.strftime("%Y-%m-%d"), dag_id=self.task.dag_id, uid=uuid.uuid4().hex, reserved=videos * VIDEO_CENTS
        )
        body = {
            "version": RECORD_VERSION,
            **vars(self.task),
            "day": record.day,
            "reserved_usd": usd(record.reserved),
            "spent_usd": 0.0,
            "state": "open",
            "reserved_at": now.isoformat(),
        }
        ledger.write(record, body)
        return record, body

    def _refusal(self, ledger: Ledger, record: RecordName) -> tuple[str, bool] | None:
        """Read the ledger after ``record`` was written: None when it fits the caps; else, with the record removed,
        why not and whether it would fit without the other open reservations."""
        try:
            # Without a monthly cap the day's folder is enough: one S3 call per 1,000 records of the day.
            spend = ledger.spend(record.day, whole_month=self.caps.monthly_usd is not None)
        except BaseException:
            ledger.remove(record)  # a cap that cannot be checked is not passed
            raise
        metrics.gauge(metrics.SPEND_USD, usd(spend.today))
        refused = refusal(spend, record.reserved, self.caps, self.conn_id)
        if refused is not None:
            ledger.remove(record)
            return refused, may_fit_later(spend, record.reserved, self.caps)
        standing = [f"today USD {usd(spend.today):.2f} of USD {self.caps.daily_usd:.2f}"] if self.caps.daily_usd else []
        if self.caps.monthly_usd is not None:
            standing.append(f"this month USD {usd(spend.month):.2f} of USD {self.caps.monthly_usd:.2f}")
        self.log.info(
            "Reserved USD %.2f under the LTX-2 key's cap: %s (paid or reserved).",
            usd(record.reserved),
            ", ".join(standing),
        )
        return None

    def settle(self, reservation: Reservation) -> None:
        """Settle ``reservation``; a ledger that cannot be written is logged, not raised: what was paid is paid,
        and the open record keeps counting its whole reservation until the month ends."""
        try:
            reservation.settle()
        except Exception as error:  # the store is down or refuses: the task's own outcome stands
            self.log.warning(
                "Could not settle the spend record in %s (%s): its reservation keeps counting.",
                self.caps.ledger_uri,
                type(error).__name__,
            )

    @contextmanager
    def reserved(self, videos: int) -> Iterator[Reservation]:
        """Reserve for the block; settle when it ends, however it ends (an unconfirmed submit counts as paid)."""
        reservation = self.reserve(videos)
        try:
            yield reservation
        except Ltx2SubmitUnconfirmed:
            reservation.paid = max(reservation.paid, reservation.record.reserved if reservation.record else 0)
            raise
        finally:
            self.settle(reservation)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
