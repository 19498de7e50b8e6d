"""``Ltx2GenerateVideoOperator``: submit one LTX-2 generation, wait for it, optionally save the MP4."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeGuard

from airflow.providers.common.compat.sdk import BaseOperator, XComArg, conf

from airflow_provider_ltx2 import metrics, xcom
from airflow_provider_ltx2.api.request import build_request, is_public_url
from airflow_provider_ltx2.contract import REQUEST_FIELDS
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.links import Ltx2BatchLink, Ltx2VideoLink
from airflow_provider_ltx2.storage import DEFAULT_IMAGE_URL_EXPIRES_IN, PLAINLY, folder_uri
from airflow_provider_ltx2.tasks import Ltx2TaskMixin
from airflow_provider_ltx2.waits import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    CapacityWait,
    Deadline,
    Wait,
    check_waiting_arguments,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_ltx2.batches.run import BatchRun, BatchSettings
    from airflow_provider_ltx2.batches.table import Table
    from airflow_provider_ltx2.lifecycle import Generation


class Ltx2GenerateVideoOperator(Ltx2TaskMixin, BaseOperator):
    """Generate a video from an image and a prompt with LTX-2; return the result dict.

    Every request field is validated after templating and before anything is sent (each accepted
    submit costs money). A gateway at capacity (429) is waited out until the task's deadline, in the
    triggerer when deferrable. The request id is pushed to XCom ``request_id`` as soon as the gateway
    accepts it, and on Airflow 3.3+ kept in the task state store, so a retry reattaches to the request
    already paid for instead of submitting again.

    :param image_url: public http(s) URL of a JPEG/PNG, or an object-storage URI (``s3://``, ``gs://``...)
        sent as a short-lived signed URL (templated).
    :param prompt: motion, camera movement and visual context (templated).
    :param duration: seconds, 2-10 (templated); None leaves the service default.
    :param resolution: "720p", "1080p" or "2160p" (templated).
    :param aspect_ratio: "16:9", "9:16" or "1:1" (templated).
    :param fps: 24, 25 or 30 (templated).
    :param generate_audio: add an audio track (templated).
    :param ltx2_conn_id: the ``ltx2`` connection with the subscription key.
    :param wait_for_completion: wait for the video; False returns right after the submit.
    :param deferrable: wait (for room, then for the video) in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status polls (the gateway advises 5-10).
    :param timeout: seconds from the task's start to the video (waiting for room included) before it
        fails with ``Ltx2Timeout``; an earlier ``execution_timeout`` wins, deferred or not.
    :param output_uri: where to stream the MP4, e.g. ``file:///data/v.mp4`` or ``s3://b/{{ ds }}/v.mp4``
        (templated); None keeps only the URL.
    :param output_conn_id: connection of the object store behind ``output_uri``.
    :param image_conn_id: connection of the object store behind an object-storage ``image_url`` (templated).
    :param image_url_expires_in: seconds the signed image URL stays valid (default 3600: long enough for a
        job that waits in the gateway's queue).
    :param check_image: read the image's first bytes before paying and fail on a missing, empty or
        non-JPEG/PNG image; False for images only the gateway can reach.
    :param reuse_existing: when ``output_uri`` already holds the MP4 of this very request (its sidecar
        ``<output_uri>.json`` says so and the MP4 matches it), return it without any gateway call.
    """

    template_fields: Sequence[str] = (
        "image_url",
        "image_conn_id",
        "prompt",
        "duration",
        "resolution",
        "aspect_ratio",
        "fps",
        "generate_audio",
        "output_uri",
        "output_conn_id",
    )
    operator_extra_links = (Ltx2VideoLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        image_url: str,
        prompt: str,
        duration: int | str | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        fps: int | str | None = None,
        generate_audio: bool | str | None = None,
        ltx2_conn_id: str = Ltx2Hook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        output_uri: str | None = None,
        output_conn_id: str | None = None,
        image_conn_id: str | None = None,
        image_url_expires_in: int = DEFAULT_IMAGE_URL_EXPIRES_IN,
        check_image: bool = True,
        reuse_existing: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_waiting_arguments(poll_interval, timeout, output_uri)
        self.image_conn_id = image_conn_id
        self.image_url_expires_in = image_url_expires_in
        self.check_image = check_image
        self.reuse_existing = reuse_existing
        self.image_url = image_url
        self.prompt = prompt
        self.duration = duration
        self.resolution = resolution
        self.aspect_ratio = aspect_ratio
        self.fps = fps
        self.generate_audio = generate_audio
        self.ltx2_conn_id = ltx2_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.output_uri = output_uri
        self.output_conn_id = output_conn_id

    def request_fields(self) -> dict[str, Any]:
        """The request fields as templated, before validation."""
        return {name: getattr(self, name) for name in REQUEST_FIELDS}

    def build_request(self) -> dict[str, Any]:
        """The JSON body this task will submit, validated (raises ``Ltx2ValidationError``)."""
        return build_request(**self.request_fields())

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_ltx2.delivery import (
            failure_reported,  # task-time modules, imported at run time, not at DAG-parse time
        )
        from airflow_provider_ltx2.lifecycle import Generation, RequestRecord

        with failure_reported(context):
            deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
            if not RequestRecord.of(context).kept:  # said once per try, not on every resume
                self.log.warning(
                    "Reattaching to the request of an earlier try is unavailable (no task_state_store before "
                    "Airflow 3.3): a retry of this task submits, and pays for, a new generation."
                )
            generation = Generation.prepare(
                self.hook,
                self.request_fields(),
                image_conn_id=self.image_conn_id,
                image_url_expires_in=self.image_url_expires_in,
                log=self.log,
                examine_image=self.check_image,
                deadline=deadline.at,
            )
            self.learnt(request=generation.request)
            if self.reuse_existing and self.output_uri:
                saved = generation.reusable(self.output_uri, self.output_conn_id)
                if saved is not None:
                    return self._reuse(context, saved)
            if self.check_image:
                generation.check_image()
            # Read back on every resume: `airflow dags test` drops `defer(kwargs=...)`, and a decorated task's
            # request comes from a function that must not run twice.
            context["ti"].xcom_push(key=xcom.REQUEST, value=generation.request)
            if self.output_uri:  # the sidecar's: without an output there is none, and no image to read whole
                context["ti"].xcom_push(key=xcom.FINGERPRINT, value=generation.fingerprint)
            return self._submit_then_wait(context, generation, CapacityWait.for_deadline(deadline, self.poll_interval))

    def _reuse(self, context: Context, saved: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_ltx2.delivery import publish, reused_result

        result = reused_result({**saved, "output_uri": self.output_uri})  # where it is now, if moved
        self.log.info(
            "Reused %s (LTX-2 request %s of %s, same request and image), no charge; reuse_existing=False "
            "generates anew.",
            self.output_uri,
            result["request_id"],
            result["completed_at"],
        )
        metrics.count(metrics.REUSED_VIDEOS)
        publish(context, result, self.outlets)
        self.learnt(result=result)
        return result

    def retry_submit(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after waiting for capacity in the triggerer: try the submit again (same deadline)."""
        from airflow_provider_ltx2.delivery import failure_reported
        from airflow_provider_ltx2.events import read_capacity_event
        from airflow_provider_ltx2.lifecycle import Generation

        with failure_reported(context):
            generation = Generation.resumed(
                self.hook,
                self.known_request(context),
                image_conn_id=self.image_conn_id,
                image_url_expires_in=self.image_url_expires_in,
                log=self.log,
            )
            self.learnt(request=generation.request)
            return self._submit_then_wait(context, generation, read_capacity_event(event))

    def known_request(self, context: Context) -> dict[str, Any]:
        request = xcom.own_xcom(context["ti"], xcom.REQUEST)
        return request if isinstance(request, dict) else self.build_request()

    def known_fingerprint(self, context: Context) -> str | None:
        return xcom.own_xcom(context["ti"], xcom.FINGERPRINT)

    def _submit_then_wait(self, context: Context, generation: Generation, capacity: CapacityWait) -> dict[str, Any]:
        from airflow_provider_ltx2.events import finished_video
        from airflow_provider_ltx2.lifecycle import RequestRecord, wait_in_worker

        record = RequestRecord.of(context)
        submitted = generation.paid_job(record, capacity, self._defer_for_capacity if self.deferrable else None)
        job = submitted.job
        context["ti"].xcom_push(key=xcom.REQUEST_ID, value=job.request_id)
        self.learnt(request_id=job.request_id)
        if not self.wait_for_completion:
            record.forget()  # handed off: a cleared task must submit anew, not reattach to this job
            handed_off = {
                **job.to_dict(),
                "status": "submitted",
                "request": generation.request,
                "submitted_at": submitted.submitted_at,
            }
            self.learnt(result=handed_off)
            return handed_off
        wait = Wait(job, deadline=capacity.deadline, poll_interval=self.poll_interval, limit=capacity.limit)
        if self.deferrable:
            self.defer_wait(wait, submitted.submitted_at)
        delivered = finished_video(job, wait_in_worker(self.hook, wait, self.log), submitted.submitted_at)
        result = self.finish(context, delivered)
        record.forget()
        return result

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the video trigger: deliver, then forget the paid request (it is done)."""
        from airflow_provider_ltx2.lifecycle import RequestRecord

        result = super().execute_complete(context, event)
        RequestRecord.of(context).forget()
        return result

    def _defer_for_capacity(self, capacity: CapacityWait) -> None:
        from airflow_provider_ltx2.triggers.ltx2 import Ltx2CapacityTrigger, resume_not_before  # not at parse time

        self.defer(
            trigger=Ltx2CapacityTrigger(capacity.to_dict(), self.ltx2_conn_id, not_before=resume_not_before()),
            method_name="retry_submit",
            timeout=None,  # the trigger enforces the absolute deadline itself
        )


DEFAULT_BATCH_TIMEOUT = 24 * 3600.0  # a whole table, not one video: hours at a gateway running 2 at a time


class Ltx2GenerateVideoBatchOperator(BaseOperator):
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
    The other arguments are as on ``Ltx2GenerateVideoOperator``.
    """

    template_fields: Sequence[str] = (
        "requests",
        "requests_conn_id",
        "output_prefix",
        "output_conn_id",
        "image_conn_id",
        "duration",
        "resolution",
        "aspect_ratio",
        "fps",
        "generate_audio",
        "max_cost_usd",
        "allowed_image_prefixes",
    )
    operator_extra_links = (Ltx2BatchLink(),)
    ui_color = "#e9d5ff"

    def __init__(
        self,
        *,
        requests: Any,
        output_prefix: str,
        output_conn_id: str | None = None,
        image_conn_id: str | None = None,
        requests_conn_id: str | None = None,
        ltx2_conn_id: str = Ltx2Hook.default_conn_name,
        duration: int | str | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        fps: int | str | None = None,
        generate_audio: bool | str | None = None,
        max_concurrent_jobs: int = 2,
        max_cost_usd: float | str | None = None,
        max_failed_items: int = 0,
        dry_run: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_BATCH_TIMEOUT,
        check_image: bool = True,
        reuse_existing: bool = True,
        image_url_expires_in: int = DEFAULT_IMAGE_URL_EXPIRES_IN,
        allowed_image_prefixes: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_waiting_arguments(poll_interval, timeout, None)
        check_batch_arguments(max_concurrent_jobs, max_failed_items)
        if not isinstance(max_cost_usd, str):  # a template is checked once rendered
            budget(max_cost_usd)
        if not any(map(templated, listed(allowed_image_prefixes))):  # a template is checked once rendered
            image_prefixes(allowed_image_prefixes)
        self.allowed_image_prefixes = allowed_image_prefixes
        # A mapped instance is made at run time with arguments resolved from XCom: data, not the DAG file's.
        mapped = self.has_dag() and self.dag.task_dict.get(self.task_id) is not self
        # Decided on the value as written: rendering can bring in params, dag_run.conf or XCom, which are data.
        self.authored_images = frozenset() if mapped else authored_images(requests)
        self.requests = requests
        self.output_prefix = output_prefix
        self.output_conn_id = output_conn_id
        self.image_conn_id = image_conn_id
        self.requests_conn_id = requests_conn_id
        self.ltx2_conn_id = ltx2_conn_id
        self.duration = duration
        self.resolution = resolution
        self.aspect_ratio = aspect_ratio
        self.fps = fps
        self.generate_audio = generate_audio
        self.max_concurrent_jobs = max_concurrent_jobs
        self.max_cost_usd = max_cost_usd
        self.max_failed_items = max_failed_items
        self.plan_only = dry_run  # not ``self.dry_run``: BaseOperator has a method of that name
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.check_image = check_image
        self.reuse_existing = reuse_existing
        self.image_url_expires_in = image_url_expires_in
        self.batch_result: dict[str, Any] | None = None  # what this instance returned: OpenLineage reads it

    @cached_property
    def hook(self) -> Ltx2Hook:
        return Ltx2Hook(ltx2_conn_id=self.ltx2_conn_id)

    def _table(self) -> Table:
        """The table's rows, checked (every one of its private images allowed) before anything is read or paid."""
        from airflow_provider_ltx2.batches.run import check_private_images
        from airflow_provider_ltx2.batches.table import check_table, read_table

        defaults = {name: getattr(self, name) for name in REQUEST_FIELDS if name not in ("image_url", "prompt")}
        table = check_table(read_table(self.requests, self.requests_conn_id), defaults, self.output_prefix)
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
        from airflow_provider_ltx2.storage import clear_partials

        with failure_reported(context):
            deadline = Deadline.starting_now(self.timeout, self.execution_timeout)
            table, settings, record = self._table(), self._settings(), BatchRecord.of(context)
            clear_partials(table.output_prefix, self.output_conn_id, table.file_names)  # a killed try's, once
            earlier = None if self.plan_only else record.load_progress()
            if earlier is not None and earlier.table == table.digest:
                self.log.info(
                    "Going on with the batch of an earlier try: %d of %d rows settled, %d in flight; no row is paid "
                    "for again.",
                    earlier.settled,
                    earlier.total,
                    len(earlier.in_flight),
                )
                return self._advance(context, BatchRun(self.hook, table, settings, earlier, record, self.log), deadline)
            if earlier is not None:
                self.log.warning(
                    "The table changed since an earlier try: its %d jobs in flight are left to finish unused.",
                    len(earlier.in_flight),
                )
            if not record.kept and not self.plan_only:
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
            if self.plan_only:
                result = run.result(
                    write_manifest(table.manifest_uri, settings.output_conn_id, run.plan_entries(found))
                )
                self.log.info("Dry run: nothing was paid. The plan is in %s", table.manifest_uri)
                self.batch_result = result
                return result
            run.save()
            return self._advance(context, run, deadline)

    def resume_batch(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the batch trigger: deliver what ended, fill the freed slots, defer again or finish."""
        from airflow_provider_ltx2.batches.progress import BatchProgress, BatchRecord
        from airflow_provider_ltx2.batches.run import BatchRun
        from airflow_provider_ltx2.delivery import failure_reported
        from airflow_provider_ltx2.events import read_batch_event

        with failure_reported(context):
            wake = read_batch_event(event)
            progress = BatchProgress.from_dict(wake.progress)
            table = self._table()
            if table.digest != progress.table:
                raise Ltx2ValidationError(
                    "requests: the table changed while the batch waited in the triggerer; its rows must stay as they "
                    "were when it started. Its jobs in flight are kept for a retry."
                )
            run = BatchRun(self.hook, table, self._settings(), progress, BatchRecord.of(context), self.log)
            run.capacity = wake.capacity
            run.settle(wake.ended)
            run.report()
            return self._advance(context, run, Deadline(wake.deadline, wake.deadline_limit))

    def _advance(self, context: Context, run: BatchRun, deadline: Deadline) -> dict[str, Any]:
        """Go on until the batch is done: in this worker, or deferring whenever its slots are full."""
        if not self.deferrable:
            run.in_worker(deadline)
        else:
            run.fill(deadline)
        if not run.progress.done:
            if run.unsaved:  # what the last submit's record left out (settled or reused rows)
                run.save()
            self._defer_batch(run, deadline)
        result = run.finish()
        run.record.forget()  # the manifest is written: a cleared task starts anew, reusing what was made
        self.batch_result = result
        run.raise_if_too_many_failed(result)
        return result

    def _defer_batch(self, run: BatchRun, deadline: Deadline) -> None:
        from airflow_provider_ltx2.triggers.ltx2 import Ltx2BatchTrigger, resume_not_before  # not at parse time

        capacity = run.capacity
        wake_at = None if capacity is None else time.time() + capacity.fallback_delay(head=not run.progress.in_flight)
        self.defer(
            trigger=Ltx2BatchTrigger(
                batch=run.progress.to_dict(),
                deadline=deadline.at,
                deadline_limit=deadline.limit,
                ltx2_conn_id=self.ltx2_conn_id,
                poll_interval=self.poll_interval,
                wake_at=wake_at,
                capacity=None if capacity is None else capacity.to_dict(),
                retry_policy=self.hook.retry_policy.to_dict(),
                read_timeout=self.hook.read_timeout,
                not_before=resume_not_before(),
            ),
            method_name="resume_batch",
            timeout=None,  # the trigger enforces the absolute deadline itself
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the request table in, the output prefix out, the counts and the cost as facets."""
        from airflow_provider_ltx2 import lineage

        return lineage.batch_lineage(self.requests, self.output_prefix, self.batch_result)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage of a failed batch: its table in and its output prefix out (with counts if it finished)."""
        return self.get_openlineage_facets_on_complete(task_instance)


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
