"""``Ltx2GenerateVideoBatchOperator``: one video per row of a table, in one task, with a manifest."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from airflow.providers.common.compat.sdk import TaskDeferred, XComArg

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.links import Ltx2BatchLink
from airflow_provider_ltx2.operators.base import Ltx2BaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_ltx2.batches.run import BatchRun, BatchSettings
    from airflow_provider_ltx2.batches.table import Table
    from airflow_provider_ltx2.spend import SpendGuard
    from airflow_provider_ltx2.waits import Deadline


# The checks of the batch's own arguments, at DAG-parse time (templates once rendered).


def check_batch_arguments(max_concurrent_jobs: Any, max_failed_items: Any) -> None:
    """Fail at DAG parse time on batch arguments that could never work."""

    def whole(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not whole(max_concurrent_jobs, 1):
        raise Ltx2ValidationError(
            f"max_concurrent_jobs={max_concurrent_jobs!r}: accepted values are whole numbers >= 1."
        )
    if not whole(max_failed_items, 0):
        raise Ltx2ValidationError(f"max_failed_items={max_failed_items!r}: accepted values are whole numbers >= 0.")


def budget(max_cost_usd: Any) -> float | None:
    """``max_cost_usd`` as an amount: None, a number >= 0, or its text as a template renders it ("2.40")."""
    amount: Any = max_cost_usd
    if isinstance(amount, str):
        try:
            amount = float(amount.strip())
        except ValueError:
            amount = None if amount.strip().lower() == "none" else max_cost_usd
    if amount is None or (isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount >= 0):
        return None if amount is None else float(amount)
    raise Ltx2ValidationError(f"max_cost_usd={max_cost_usd!r}: accepted values are None or an amount in USD >= 0.")


JINJA_MARKERS = ("{{", "{%", "{#")


def templated(value: Any) -> bool:
    """Whether rendering may change ``value``: text with Jinja in it, or an XComArg."""
    return isinstance(value, XComArg) or (isinstance(value, str) and any(marker in value for marker in JINJA_MARKERS))


def written_out(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is text that rendering leaves as written."""
    return isinstance(value, str) and not templated(value)


def listed(allowed_image_prefixes: Any) -> list[Any]:
    """The prefixes given: None is none, a list or tuple its items, anything else one."""
    if allowed_image_prefixes is None:
        return []
    if isinstance(allowed_image_prefixes, (list, tuple)):
        return list(allowed_image_prefixes)
    return [allowed_image_prefixes]


def image_prefixes(allowed_image_prefixes: Any) -> tuple[str, ...]:
    """``allowed_image_prefixes`` (as rendered) as object-storage folder URIs written plainly."""
    from airflow_provider_ltx2.api.request import is_public_url  # for rows from files or XCom: not at parse time
    from airflow_provider_ltx2.storage import PLAINLY, folder_uri

    prefixes = listed(allowed_image_prefixes)
    if all(isinstance(prefix, str) and not is_public_url(prefix) and folder_uri(prefix) for prefix in prefixes):
        return tuple(prefixes)
    raise Ltx2ValidationError(
        f"allowed_image_prefixes={allowed_image_prefixes!r}: accepted values are None, or an object-storage folder "
        f"URI such as s3://bucket/images/ (or a list of them) naming a bucket or a folder, written plainly ({PLAINLY})."
    )


def authored_images(requests: Any) -> frozenset[str]:
    """The image URIs that a list of rows written in the DAG file names as text without Jinja: the author's own.

    A table read from a file or an XComArg is data (a vendor's CSV, an upstream task's output): none.
    """
    if not isinstance(requests, (list, tuple)):
        return frozenset()
    images = (row.get("image_url") for row in requests if isinstance(row, Mapping))
    return frozenset(image.strip() for image in images if written_out(image))  # as build_request keeps it


class Ltx2GenerateVideoBatchOperator(Ltx2BaseOperator):
    """Generate one video per row of a table, in one task; write the MP4s and a manifest under ``output_prefix``.

    For tables larger than Airflow should map (``max_map_length`` is 1,024 by default, and the scheduler
    slows long before). Every row is checked, reuse looked up and the price computed before the first paid
    call; ``max_cost_usd`` refuses a batch that would cost more, ``dry_run`` only writes the plan. At most
    ``max_concurrent_jobs`` generations are in flight; a freed slot is filled as soon as a poll sees it. Each
    row is paid for once: its paid job is kept in the task state store (Airflow 3.3+) until its video is
    delivered, and a delivered row is found again by its sidecar. Rows that fail are recorded in the
    manifest and the batch goes on; with more than ``max_failed_items`` of them the task fails at the end.

    :param requests: a list of dicts (an XComArg works), or the URI of a ``.jsonl`` or ``.csv`` file in any
        object store (templated). A row has the request fields of ``Ltx2GenerateVideoOperator`` and an
        optional ``id`` naming its video.
    :param output_prefix: the folder for ``{id}.mp4``, its sidecar ``{id}.mp4.json`` and ``manifest.jsonl``
        (templated).
    :param requests_conn_id: connection of the object store behind a ``requests`` URI.
    :param duration: default for rows that do not set it (likewise ``resolution``, ``aspect_ratio``, ``fps``,
        ``generate_audio``; templated).
    :param output_conn_id: connection of the object store behind ``output_prefix``.
    :param max_concurrent_jobs: generations in flight at the gateway at most (its limit per key is 2 by default).
    :param max_cost_usd: fail with ``Ltx2BudgetExceeded`` before paying when the rows still to generate cost more
        (templated: an approved estimate can come from a dry run's XCom).
    :param max_failed_items: failed rows allowed before the task fails (at the end; everything made is kept).
    :param dry_run: validate, look up reuse, price, write the manifest of the plan; pay nothing.
    :param timeout: seconds for the whole batch from the try's start (default 24 h).
    :param allowed_image_prefixes: the folders (URI prefixes such as ``s3://bucket/images/``: one, or a list) that
        a private image named by a table read from a file or an XComArg must lie in (templated); None allows
        none. The worker signs such an image with ``image_conn_id``, which may read far more than images. Rows
        written in the DAG file are the author's: their image URIs written without Jinja need no prefix.
    The connection, waiting, deferring and image arguments are ``Ltx2BaseOperator``'s.
    """

    dry_run: bool  # type: ignore[assignment]  # the argument: BaseOperator's render-only dry_run() is not used
    template_fields: Sequence[str] = (
        "requests",
        "requests_conn_id",
        "output_prefix",
        "max_cost_usd",
        "allowed_image_prefixes",
        *Ltx2BaseOperator.template_fields,
    )
    operator_extra_links = (Ltx2BatchLink(),)
    ui_color = "#e9d5ff"

    def __init__(
        self,
        *,
        requests: Any,
        output_prefix: str,
        requests_conn_id: str | None = None,
        max_concurrent_jobs: int = defaults.MAX_CONCURRENT_JOBS,
        max_cost_usd: float | str | None = None,
        max_failed_items: int = 0,
        dry_run: bool = False,
        timeout: float = defaults.BATCH_TIMEOUT,
        allowed_image_prefixes: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(timeout=timeout, **kwargs)
        check_batch_arguments(max_concurrent_jobs, max_failed_items)
        if not isinstance(max_cost_usd, str):  # a template is checked once rendered
            budget(max_cost_usd)
        if not any(map(templated, listed(allowed_image_prefixes))):  # a template is checked once rendered
            image_prefixes(allowed_image_prefixes)
        # A mapped instance is made at run time with arguments resolved from XCom: data, not the DAG file's.
        mapped = self.has_dag() and self.dag.task_dict.get(self.task_id) is not self
        # Decided on the value as written: rendering can bring in params, dag_run.conf or XCom, which are data.
        self.authored_images = frozenset() if mapped else authored_images(requests)
        self.requests = requests
        self.output_prefix = output_prefix
        self.requests_conn_id = requests_conn_id
        self.max_concurrent_jobs = max_concurrent_jobs
        self.max_cost_usd = max_cost_usd
        self.max_failed_items = max_failed_items
        self.dry_run = dry_run
        self.allowed_image_prefixes = allowed_image_prefixes
        self.batch_result: dict[str, Any] | None = None  # what this instance returned: OpenLineage reads it

    def _table(self) -> Table:
        """The table's rows, checked (every one of its private images allowed) before anything is read or paid."""
        from airflow_provider_ltx2.batches.run import check_private_images
        from airflow_provider_ltx2.batches.table import check_table, read_table

        table = check_table(
            read_table(self.requests, self.requests_conn_id), self.request_settings(), self.output_prefix
        )
        check_private_images(table, self.authored_images, image_prefixes(self.allowed_image_prefixes))
        return table

    def _settings(self) -> BatchSettings:
        from airflow_provider_ltx2.batches.run import BatchSettings

        return BatchSettings(
            output_conn_id=self.output_conn_id,
            image_conn_id=self.image_conn_id,
            image_url_expires_in=self.image_url_expires_in,
            check_image=self.check_image,
            reuse_existing=self.reuse_existing,
            max_concurrent_jobs=self.max_concurrent_jobs,
            max_failed_items=self.max_failed_items,
            poll_interval=self.poll_interval,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_ltx2.batches.manifest import write_manifest
        from airflow_provider_ltx2.batches.progress import BatchRecord
        from airflow_provider_ltx2.batches.run import BatchRun, check_budget, survey
        from airflow_provider_ltx2.delivery import failure_reported
        from airflow_provider_ltx2.spend import SpendGuard
        from airflow_provider_ltx2.storage import clear_partials
        from airflow_provider_ltx2.waits import Deadline

        with failure_reported(context):
            deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
            spend = SpendGuard.for_task(self.hook, context, self.log)  # a cap without a ledger fails here
            table, settings, record = self._table(), self._settings(), BatchRecord.of(context)
            clear_partials(table.output_prefix, self.output_conn_id, table.file_names)  # a killed try's, once
            earlier = None if self.dry_run else record.load_progress()
            if earlier is not None and earlier.table == table.digest:
                self.log.info(
                    "Going on with the batch of an earlier try: %d of %d rows settled, %d in flight; no row is paid "
                    "for again.",
                    earlier.settled,
                    earlier.total,
                    len(earlier.in_flight),
                )
                run = BatchRun(self.hook, table, settings, earlier, record, self.log)
                run.reserve(spend)  # what is left to pay
                return self._advance(run, deadline, spend)
            if earlier is not None:
                self.log.warning(
                    "The table changed since an earlier try: its %d jobs in flight are left to finish unused.",
                    len(earlier.in_flight),
                )
            if not record.kept and not self.dry_run:
                self.log.warning(
                    "No task_state_store before Airflow 3.3: a retry of this batch finds the rows already delivered "
                    "by their sidecars, but pays again for the rows in flight when it failed (up to "
                    "max_concurrent_jobs=%d) and for its failed rows.",
                    self.max_concurrent_jobs,
                )
            found = survey(self.hook, table, settings, self.log, deadline.at)
            self.log.info(
                "Batch of %d rows: %d to generate (estimate USD %.2f), %d reused; up to %d at a time.",
                len(table.rows),
                found.to_generate,
                found.estimated_cost_usd,
                len(found.reusable),
                self.max_concurrent_jobs,
            )
            check_budget(table, found, budget(self.max_cost_usd))
            run = BatchRun.start(self.hook, table, settings, record, self.log, found)
            if self.dry_run:
                result = run.result(
                    write_manifest(table.manifest_uri, settings.output_conn_id, run.plan_entries(found))
                )
                self.log.info("Dry run: nothing was paid. The plan is in %s", table.manifest_uri)
                self.batch_result = result
                return result
            run.reserve(spend)  # the estimate after reuse; saved with the progress
            return self._advance(run, deadline, spend)

    def resume_batch(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the batch trigger: deliver what ended, fill the freed slots, defer again or finish."""
        from airflow_provider_ltx2.batches.progress import BatchProgress, BatchRecord
        from airflow_provider_ltx2.batches.run import BatchRun, settle_reservation
        from airflow_provider_ltx2.delivery import failure_reported
        from airflow_provider_ltx2.events import read_batch_event
        from airflow_provider_ltx2.spend import SpendGuard
        from airflow_provider_ltx2.waits import Deadline

        with failure_reported(context):
            spend = SpendGuard.for_task(self.hook, context, self.log)
            record = BatchRecord.of(context)
            try:
                wake = read_batch_event(event)
                progress = BatchProgress.from_dict(wake.progress)
                table = self._table()
                if table.digest != progress.table:
                    raise Ltx2ValidationError(
                        "requests: the table changed while the batch waited in the triggerer; its rows must stay as "
                        "they were when it started. Its jobs in flight are kept for a retry."
                    )
            except Exception:  # the trigger's error (the connection gone), a damaged event, the table changed
                kept = record.load_progress()  # Airflow 3.3+: the batch as last saved, its reservation with it
                if kept is not None and settle_reservation(kept, spend):
                    record.save_progress(kept)
                raise
            run = BatchRun(self.hook, table, self._settings(), progress, record, self.log)
            run.capacity = wake.capacity
            return self._advance(run, Deadline(wake.deadline, wake.deadline_limit), spend, wake.ended)

    def _advance(
        self, run: BatchRun, deadline: Deadline, spend: SpendGuard, ended: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Go on until the batch is done: in this worker, or deferring whenever its slots are full (the key's
        reservation stays open meanwhile); settle what this try paid when it ends, finished or failed."""
        try:
            if ended:
                run.settle(ended)
                run.report()
            if not self.deferrable:
                run.in_worker(deadline)
            else:
                run.fill(deadline)
            if not run.progress.done:
                if run.unsaved:  # what the last submit's record left out (settled or reused rows)
                    run.save()
                self._defer_batch(run, deadline)
            result = run.finish()
        except TaskDeferred:
            raise
        except BaseException:
            run.settle_spend(spend)  # what this try paid; a retry reserves what is left
            run.save()
            raise
        run.settle_spend(spend)
        run.record.forget()  # the manifest is written: a cleared task starts anew, reusing what was made
        self.batch_result = result
        run.raise_if_too_many_failed(result)
        return result

    def _defer_batch(self, run: BatchRun, deadline: Deadline) -> None:
        from airflow_provider_ltx2.triggers.ltx2 import Ltx2BatchTrigger  # not at DAG-parse time

        capacity = run.capacity
        wake_at = None if capacity is None else time.time() + capacity.fallback_delay(head=not run.progress.in_flight)
        trigger = Ltx2BatchTrigger(
            batch=run.progress.to_dict(),
            deadline=deadline.at,
            deadline_limit=deadline.limit,
            ltx2_conn_id=self.ltx2_conn_id,
            poll_interval=self.poll_interval,
            wake_at=wake_at,
            capacity=None if capacity is None else capacity.to_dict(),
            retry_policy=self.hook.retry_policy.to_dict(),
            read_timeout=self.hook.read_timeout,
        )
        self.defer_to(trigger, "resume_batch")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the request table in, the output prefix out, the counts and the cost as facets."""
        from airflow_provider_ltx2 import lineage

        return lineage.batch_lineage(self.requests, self.output_prefix, self.batch_result)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage of a failed batch: its table in and its output prefix out (with counts if it finished)."""
        return self.get_openlineage_facets_on_complete(task_instance)
