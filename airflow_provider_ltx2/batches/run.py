"""A batch's rounds: survey the table (reuse, image checks, price), fill free slots with paid submits, settle
finished jobs (download, sidecar, or a failed row), and write the manifest.

Each row is one ``lifecycle.Generation``: the batch composes what the single operator does, it does not
repeat it. ``BatchRun`` holds no per-row state but the table itself: the progress (``BatchProgress``) grows
with the jobs in flight and the failed rows, and finished rows are found by their sidecars.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2 import metrics, storage
from airflow_provider_ltx2.api.request import SHOWN_URI_CHARACTERS, is_public_url, shorten
from airflow_provider_ltx2.batches.manifest import (
    FAILED,
    GENERATED,
    PLANNED,
    REUSED,
    STATUSES,
    manifest_entry,
    write_manifest,
)
from airflow_provider_ltx2.batches.progress import BatchProgress, BatchRecord, FailedRow, InFlight
from airflow_provider_ltx2.batches.table import Row, Table
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD, cost_usd
from airflow_provider_ltx2.delivery import store
from airflow_provider_ltx2.events import Delivered, delivered_video
from airflow_provider_ltx2.exceptions import (
    Ltx2BatchFailed,
    Ltx2BudgetExceeded,
    Ltx2Error,
    Ltx2GenerationFailed,
    Ltx2HttpError,
    Ltx2SubmitUnconfirmed,
    Ltx2Throttled,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.lifecycle import Generation, poll_once
from airflow_provider_ltx2.spend import Reservation
from airflow_provider_ltx2.storage import ImageInput, image_input
from airflow_provider_ltx2.waits import CapacityWait, Deadline, JobPace, Next, Wait, started_at, utc_now_iso

if TYPE_CHECKING:
    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
    from airflow_provider_ltx2.spend import SpendGuard

PROGRESS_LOG_EVERY = 60.0
NAMED_FAILED_ROWS = 5  # failed rows a batch's failure names (the manifest has them all)
SHOWN_ERROR_CHARACTERS = 200


@dataclass(frozen=True)
class BatchSettings:
    """The operator's arguments a batch's rounds need (rendered)."""

    output_conn_id: str | None
    image_conn_id: str | None
    image_url_expires_in: int
    check_image: bool
    reuse_existing: bool
    max_concurrent_jobs: int
    max_failed_items: int
    poll_interval: float


@dataclass
class Survey:
    """What the batch found before paying: the rows it can reuse and the fingerprints of the others."""

    reusable: dict[str, dict[str, Any]] = field(default_factory=dict)  # row id -> its sidecar
    fingerprints: dict[str, str] = field(default_factory=dict)  # row id -> fingerprint, rows to generate

    @property
    def to_generate(self) -> int:
        return len(self.fingerprints)

    @property
    def estimated_cost_usd(self) -> float:
        return cost_usd(self.to_generate)


def survey(hook: Ltx2Hook, table: Table, settings: BatchSettings, log: Any, deadline: float | None = None) -> Survey:
    """Look up reuse and check every image to generate from, before any paid call.

    An image several rows share is checked and read once, no read past ``deadline``. Raises
    ``Ltx2ValidationError`` naming the row for an image that cannot be used (the gateway could not fetch it,
    its store cannot sign it, it is no image); nothing is paid: a table is generated in full or not at all.
    """
    found = Survey()
    images: dict[str, ImageInput] = {}
    for row in table.rows:
        try:
            seen = images.get(row.request["image_url"])
            generation = row_generation(hook, row, settings, log, seen, deadline)
            if seen is None:
                generation.check_gateway_can_fetch()
            fingerprint = generation.fingerprint  # a public image read once: its identity and the check's bytes
            saved = generation.reusable(row.output_uri, settings.output_conn_id) if settings.reuse_existing else None
            if saved is None and settings.check_image:
                generation.check_image()
        except Ltx2ValidationError as error:
            raise Ltx2ValidationError(f"Row {row.id!r} (row {row.number}): {error}") from None
        images[row.request["image_url"]] = generation.image
        if saved is not None:
            found.reusable[row.id] = saved
        else:
            found.fingerprints[row.id] = fingerprint
    return found


def row_generation(
    hook: Ltx2Hook,
    row: Row,
    settings: BatchSettings,
    log: Any,
    image: ImageInput | None = None,
    deadline: float | None = None,
) -> Generation:
    """The generation of one row (its request is already validated); ``image`` if already identified."""
    if image is None:
        image = image_input(row.request["image_url"], settings.image_conn_id, settings.image_url_expires_in)
    return Generation(hook, row.request, image, log, check_image=settings.check_image, deadline=deadline)


def check_budget(table: Table, found: Survey, max_cost_usd: float | None) -> None:
    """Refuse, before any paid call, a batch whose rows still to generate cost more than the budget."""
    if max_cost_usd is not None and found.estimated_cost_usd > max_cost_usd:
        raise Ltx2BudgetExceeded(
            f"This batch would cost USD {found.estimated_cost_usd:.2f} ({found.to_generate} rows to generate at USD "
            f"{PRICE_PER_VIDEO_USD:.2f}, {len(found.reusable)} reused of {len(table.rows)}), more than "
            f"max_cost_usd={max_cost_usd:g}; nothing was paid. Raise max_cost_usd, or split the table."
        )


def settle_reservation(progress: BatchProgress, spend: SpendGuard) -> bool:
    """Settle a batch's open reservation in the key's ledger to what it paid since it was made (the rest is freed),
    and forget it; False when the progress holds none."""
    if progress.spend is None:
        return False
    reservation = Reservation.from_dict(progress.spend)
    reservation.paid_for(progress.paid - progress.paid_when_reserved)
    spend.settle(reservation)
    progress.spend = None
    return True


def check_private_images(table: Table, authored: frozenset[str], allowed_image_prefixes: tuple[str, ...]) -> None:
    """Refuse, before any image is read or paid for, a row whose private image the DAG author did not allow.

    The worker signs a private image for the gateway with ``image_conn_id``, which may read far more than
    images: a row may name one only under ``allowed_image_prefixes``, unless the DAG file names it (``authored``).
    """
    for row in table.rows:
        uri = row.request["image_url"]
        if is_public_url(uri) or uri in authored or storage.lies_under(uri, allowed_image_prefixes):
            continue
        shown = shorten(uri, SHOWN_URI_CHARACTERS)
        raise Ltx2ValidationError(
            f"Row {row.id!r} (row {row.number}): image_url={shown} is not under allowed_image_prefixes="
            f"{list(allowed_image_prefixes) or None!r}: a private image named by a table's data (a file, an XComArg "
            f"or a template) must lie in one of those folders, written plainly ({storage.PLAINLY}); nothing was "
            "paid. Add its folder to allowed_image_prefixes, or move the image into an allowed folder."
        )


class BatchRun:
    """A batch task instance's rounds, from its table, settings and progress (fresh or carried over)."""

    def __init__(
        self,
        hook: Ltx2Hook,
        table: Table,
        settings: BatchSettings,
        progress: BatchProgress,
        record: BatchRecord,
        log: Any,
        found: Survey | None = None,
    ) -> None:
        self.hook = hook
        self.table = table
        self.settings = settings
        self.progress = progress
        self.record = record
        self.log = log
        self.found = found  # the survey, in the process that made it; later processes look rows up as they go
        self.capacity: CapacityWait | None = None  # set while the gateway refuses submits for capacity
        self.waits: dict[str, Wait] = {}
        self.pace = JobPace(settings.poll_interval)  # when to poll each job, in the worker
        self.unsaved = False  # settled or reused rows not yet in the task state store

    @classmethod
    def start(
        cls, hook: Ltx2Hook, table: Table, settings: BatchSettings, record: BatchRecord, log: Any, found: Survey
    ) -> BatchRun:
        progress = BatchProgress(
            table=table.digest,
            token=uuid.uuid4().hex,
            started_at=utc_now_iso(),
            total=len(table.rows),
            estimated=found.to_generate,
        )
        return cls(hook, table, settings, progress, record, log, found)

    # ------------------------------------------------------------------------------------ the key's budget

    def reserve(self, spend: SpendGuard) -> None:
        """Reserve what is left to pay in the key's ledger before the next paid call, and record the reservation
        with the progress (it outlives deferrals; a retry settles it, then reserves what is left).

        Raises ``Ltx2BudgetExceeded`` when it does not fit the key's caps.
        """
        self.settle_spend(spend)  # an earlier try's, if it could not settle it (its process was killed)
        reservation = spend.reserve(self.progress.left_to_pay)
        self.progress.spend = reservation.to_dict()
        self.progress.paid_when_reserved = self.progress.paid
        self.save()

    def settle_spend(self, spend: SpendGuard) -> None:
        """Settle the open reservation to what was paid since it was made; the rest of it is freed."""
        if settle_reservation(self.progress, spend):
            self.unsaved = True

    # ------------------------------------------------------------------------------------ submitting

    def fill(self, deadline: Deadline) -> None:
        """Submit the next rows into the free slots, skipping rows with a video to reuse.

        A submit the gateway refuses for capacity stops the round (``self.capacity`` says until when);
        a row the gateway refuses, or whose submit may have been charged unconfirmed, is a failed row.
        """
        progress = self.progress
        capacity = self.capacity or CapacityWait.for_deadline(deadline, self.settings.poll_interval)
        while len(progress.in_flight) < self.settings.max_concurrent_jobs and progress.cursor < progress.total:
            if capacity.submit_delay() > 0:  # the gateway's Retry-After: poll, or defer, meanwhile
                return
            row = self.table.rows[progress.cursor]
            try:
                planned = self._planned(row)
                if planned is None:  # an earlier run's video is reused
                    progress.cursor += 1
                    progress.reused += 1
                    self.unsaved = True
                    metrics.count(metrics.REUSED_VIDEOS)
                    continue
                generation, fingerprint = planned
                submitted = generation.submit(capacity)
            except Ltx2Throttled as throttled:
                self.capacity = capacity
                capacity.throttled(throttled, self.log)  # raises Ltx2Timeout when the deadline leaves no chance
                return
            except (Ltx2ValidationError, Ltx2GenerationFailed, Ltx2SubmitUnconfirmed) as error:
                self._fail(row.id, FailedRow(str(error)))
                progress.cursor += 1
                self.save()
                continue
            if self.capacity is not None:
                self.capacity.got_in(self.log)
                self.capacity = None
                capacity = CapacityWait.for_deadline(deadline, self.settings.poll_interval)
            job = submitted.job
            self.pace.submitted(job.request_id, time.time())
            progress.in_flight.append(
                InFlight(row.id, job.request_id, job.polling_url, submitted.submitted_at, fingerprint)
            )
            progress.paid += 1
            progress.cursor += 1
            self.save()  # at once: a retry must find every paid job

    def _planned(self, row: Row) -> tuple[Generation, str] | None:
        """The row's generation to submit and its fingerprint, or None when an earlier run's video is reused.

        The process that surveyed the table knows both; a later one (a resume, a retry) looks the row up now.
        """
        if self.found is None:
            generation = row_generation(self.hook, row, self.settings, self.log)
            if self.settings.reuse_existing and generation.reusable(row.output_uri, self.settings.output_conn_id):
                return None
            return generation, generation.fingerprint
        if row.id in self.found.reusable:
            return None
        settings = self.settings
        generation = Generation.resumed(  # already identified and checked: only the submit is left
            self.hook,
            row.request,
            image_conn_id=settings.image_conn_id,
            image_url_expires_in=settings.image_url_expires_in,
            log=self.log,
        )
        return generation, self.found.fingerprints[row.id]

    # ------------------------------------------------------------------------------------ settling

    def settle(self, ended: Mapping[str, Delivered | Ltx2Error]) -> None:
        """Deliver the finished videos and record the failed rows; their slots are free afterwards.

        A generation that failed, an input the model rejected, or a video that cannot be fetched is a failed
        row; an outage or the deadline stops the batch (raised), its jobs still recorded for a retry.
        """
        if not ended:
            return
        progress = self.progress
        try:
            for flight in list(progress.in_flight):
                outcome = ended.get(flight.request_id)
                if outcome is None:
                    continue
                if isinstance(outcome, Ltx2GenerationFailed):
                    failed = FailedRow(str(outcome), flight.request_id, flight.submitted_at, utc_now_iso())
                    self._fail(flight.row, failed)
                elif isinstance(outcome, Ltx2Error):
                    raise outcome
                else:
                    self._deliver(self.table.row(flight.row), flight, outcome)
                progress.in_flight.remove(flight)
                self.waits.pop(flight.request_id, None)
        except BaseException:
            self.save()  # what was settled stays settled when the batch stops
            raise
        # Saved with the next paid submit's record (``fill``), or before the batch waits (``save``): a write costs
        # a round trip to the metadata DB, and a settled row still recorded as in flight is only delivered again.
        self.unsaved = True

    def save(self) -> None:
        """Record the progress in the task state store (every paid job is, before the next submit)."""
        self.record.save_progress(self.progress)
        self.unsaved = False

    def _deliver(self, row: Row, flight: InFlight, delivered: Delivered) -> None:
        try:
            store(
                self.hook,
                delivered,
                request=row.request,
                output_uri=row.output_uri,
                output_conn_id=self.settings.output_conn_id,
                fingerprint=flight.fingerprint,
                batch=self.progress.token,
            )
        except (Ltx2HttpError, Ltx2GenerationFailed) as error:  # the video is gone, or is not an MP4
            self._fail(row.id, FailedRow(str(error), flight.request_id, flight.submitted_at, delivered.completed_at))
            return
        self.progress.generated += 1

    def _fail(self, row_id: str, failed: FailedRow) -> None:
        self.progress.failed[row_id] = failed
        metrics.count(metrics.BATCH_ROWS_FAILED)
        self.log.warning("Row %r failed: %s", row_id, failed.error)

    # ------------------------------------------------------------------------------------ waiting in the worker

    def poll_due(self, deadline: Deadline) -> dict[str, Delivered | Ltx2Error]:
        """Poll the jobs in flight that are due (``JobPace``); the ones that ended, with their video or error."""
        ended: dict[str, Delivered | Ltx2Error] = {}
        flights = {flight.request_id: flight for flight in self.progress.in_flight}
        now = time.time()
        due = self.pace.due_now(list(flights), now) if now < deadline.at else list(flights)  # the last poll: all
        for request_id in due:
            flight = flights[request_id]
            wait = self.waits.get(request_id) or Wait(
                flight.job,
                deadline=deadline.at,
                poll_interval=self.settings.poll_interval,
                limit=deadline.limit,
                started=started_at(flight.submitted_at),
            )
            step = poll_once(self.hook, wait, self.log)
            self.waits[request_id] = step.wait
            self.pace.polled(request_id, time.time(), finished=step.next is not Next.POLL)
            if step.next is Next.POLL:
                continue
            try:
                ended[request_id] = delivered_video(flight.job, step.finished_status(), flight.submitted_at)
            except Ltx2Error as error:
                ended[request_id] = error
        return ended

    def in_worker(self, deadline: Deadline) -> None:
        """Run the whole batch in this worker: poll what is due, settle, fill, until every row is settled.

        A freed slot is filled as soon as a poll sees it free; a job is polled when ``JobPace`` expects it
        done, and every ``poll_interval`` after that (never past the deadline, where its poll ends the wait).
        """
        self.fill(deadline)
        while not self.progress.done:
            self.settle(self.poll_due(deadline))
            self.fill(deadline)
            self.report()
            if self.progress.done:
                break
            if self.unsaved:
                self.save()
            wake = [self.pace.next_due(), deadline.at]
            if self.capacity is not None and len(self.progress.in_flight) < self.settings.max_concurrent_jobs:
                wake.append(
                    self.capacity.not_before()
                    if self.progress.in_flight
                    else time.time() + self.capacity.worker_delay()
                )
            time.sleep(max(0.0, min(at for at in wake if at is not None) - time.time()))

    # ------------------------------------------------------------------------------------ telling

    def report(self) -> None:
        """A progress line in the task log, at most once a minute: done / total, running, failed, spent, left.

        The first comes a minute in: the start's own line says the plan.
        """
        progress = self.progress
        now = time.time()
        if progress.logged_at is not None and now - progress.logged_at < PROGRESS_LOG_EVERY:
            return
        first = progress.logged_at is None
        progress.logged_at = now
        if first:
            return
        elapsed = max(1.0, now - datetime.fromisoformat(progress.started_at).timestamp())
        made = progress.generated + len(progress.failed)
        left = progress.total - progress.settled
        pace = f", about {left / (made / elapsed) / 60:.0f} min left at the current pace" if made and left else ""
        self.log.info(
            "Batch progress: %d/%d rows done (%d generated, %d reused, %d failed), %d running, USD %.2f spent%s",
            progress.settled,
            progress.total,
            progress.generated,
            progress.reused,
            len(progress.failed),
            len(progress.in_flight),
            progress.cost_usd,
            pace,
        )

    def finish(self) -> dict[str, Any]:
        """Write the manifest (every row's fate, from the sidecars and the failed rows); the batch's counts."""
        entries = self.manifest_entries()
        result = self.result(write_manifest(self.table.manifest_uri, self.settings.output_conn_id, entries))
        self.log.info(
            "Batch done: %d rows, %d generated, %d reused, %d failed; USD %.2f spent (estimate USD %.2f). Manifest: %s",
            result["total"],
            result["generated"],
            result["reused"],
            result["failed"],
            result["cost_usd"],
            result["estimated_cost_usd"],
            result["manifest_uri"],
        )
        return result

    def raise_if_too_many_failed(self, result: Mapping[str, Any]) -> None:
        """Fail the task when more rows failed than ``max_failed_items`` allows, naming the first of them."""
        if result[FAILED] <= self.settings.max_failed_items:
            return
        failed = self.progress.failed
        named = "; ".join(
            f"{shorten(row_id)}: {shorten(row.error, SHOWN_ERROR_CHARACTERS)}"
            for row_id, row in itertools.islice(failed.items(), NAMED_FAILED_ROWS)
        )
        more = f"; and {len(failed) - NAMED_FAILED_ROWS} more" if len(failed) > NAMED_FAILED_ROWS else ""
        missing = result[FAILED] - len(failed)  # rows whose video vanished after the batch delivered it
        vanished = f"; {missing} rows have no video after the batch" if missing > 0 else ""
        raise Ltx2BatchFailed(
            f"{result[FAILED]} rows of the batch failed, more than max_failed_items={self.settings.max_failed_items} "
            f"({named}{more}{vanished}); the {result[GENERATED] + result[REUSED]} videos made and the manifest "
            f"{self.table.manifest_uri} are kept, with every failed row's error. Clear the task to try the failed "
            "rows again."
        )

    def result(self, counts: Mapping[str, int]) -> dict[str, Any]:
        """The task's return value: small whatever the table's size."""
        return {
            "manifest_uri": self.table.manifest_uri,
            "output_prefix": self.table.output_prefix,
            "total": len(self.table.rows),
            **{status: counts.get(status, 0) for status in STATUSES},
            "cost_usd": self.progress.cost_usd,
            "estimated_cost_usd": cost_usd(self.progress.estimated),
        }

    def manifest_entries(self) -> Iterator[dict[str, Any]]:
        """Every row's fate in the table's order, read from its sidecar (or its failure)."""
        for row in self.table.rows:
            failed = self.progress.failed.get(row.id)
            if failed is not None:
                yield _entry(row, FAILED, error=failed.error, **_failure_times(failed))
                continue
            saved = storage.read_sidecar(row.output_uri, self.settings.output_conn_id)
            if saved is None:
                yield _entry(row, FAILED, error=f"No video at {row.output_uri} after the batch.")
                continue
            ours = saved.get("batch") == self.progress.token
            yield _entry(row, GENERATED if ours else REUSED, saved=saved)

    def plan_entries(self, found: Survey) -> Iterator[dict[str, Any]]:
        """A dry run's manifest: the rows to reuse and the rows a real run would generate."""
        for row in self.table.rows:
            saved = found.reusable.get(row.id)
            yield _entry(row, REUSED, saved=saved) if saved else _entry(row, PLANNED)


def _entry(row: Row, status: str, **fate: Any) -> dict[str, Any]:
    return manifest_entry(row.id, row.request, row.output_uri, status, **fate)


def _failure_times(failed: FailedRow) -> dict[str, Any]:
    return {"request_id": failed.request_id, "submitted_at": failed.submitted_at, "completed_at": failed.completed_at}
