"""One generation's lifecycle, step by step: what the operator, the decorator and the sensor compose.

Validate and identify the image (``Generation.prepare``), look for a video to reuse, check the image,
submit (the paid call) waiting for capacity while the gateway is full, or reattach to the request an
earlier try paid for, record it, and wait in the worker. Each step is a method or function of its own,
so a task that needs only some of them (the sensor waits and delivers; a batch drives many generations)
takes those and copies none. Delivery is ``delivery``'s; waiting in the triggerer, ``triggers``'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2 import metrics, storage
from airflow_provider_ltx2.api.jobs import Job, JobState, JobStatus
from airflow_provider_ltx2.api.request import build_request
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2GenerationFailed, Ltx2Throttled, Ltx2ValidationError
from airflow_provider_ltx2.storage import ImageInput, image_input
from airflow_provider_ltx2.waits import CapacityWait, Next, PollStep, Wait, after_poll, utc_now_iso

if TYPE_CHECKING:
    from typing_extensions import Self  # typing's own from Python 3.11; the package supports 3.10

    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
    from airflow_provider_ltx2.spend import SpendGuard

STATE_KEY = "ltx2_request"  # task_state_store key (Airflow 3.3+): the paid request of this task instance


@dataclass(frozen=True)
class Submitted:
    """A request the gateway accepted (and charged for), and when."""

    job: Job
    submitted_at: str | None


class StateRecord:
    """One record of a task instance in Airflow 3.3's ``task_state_store``, which survives retries (keyed by
    run, task and map index); before 3.3 there is no store, and the record does nothing."""

    key: str  # the record's key in the store, set by each kind of record

    def __init__(self, store: Any) -> None:
        self.store = store

    @classmethod
    def of(cls, context: Mapping[str, Any]) -> Self:
        return cls(context.get("task_state_store"))

    @property
    def kept(self) -> bool:
        """Whether this Airflow keeps the record across tries (3.3+)."""
        return self.store is not None

    def load(self) -> dict[str, Any] | None:
        saved = self.store.get(self.key) if self.store is not None else None
        return saved if isinstance(saved, dict) else None

    def put(self, record: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.set(self.key, record)

    def forget(self) -> None:
        """Delivered, or handed off: a cleared or rerun task must submit anew, not reattach to this job."""
        if self.store is not None:
            self.store.delete(self.key)


class RequestRecord(StateRecord):
    """The paid request of one task instance, kept across its tries: the one owner of that record.

    A retry finds the request an earlier try paid for and reattaches instead of paying again; before
    Airflow 3.3 every try submits anew.

    Airflow 3.3's ``ResumableJobMixin`` keeps such a record too. It is not used: it decides on the stored job
    id alone, while a retry must also check that the templated request is unchanged (a fixed prompt must
    not reattach to the old video); its ``poll_until_complete`` blocks a worker, where the operator waits
    for capacity and for the video in the triggerer; and it keeps the id after success, which would make a
    cleared task reattach silently.
    """

    key = STATE_KEY

    def save(self, submitted: Submitted, request: Mapping[str, Any]) -> None:
        self.put({**submitted.job.to_dict(), "request": dict(request), "submitted_at": submitted.submitted_at})


class Generation:
    """One generation: its validated request and its image, and the steps that lead to a paid job.

    ``request`` always carries the image as given (a URI, never a signed URL): it is what XCom, the
    record, the sidecar and the logs see. The gateway gets ``image.url_for_gateway()``, made per attempt.
    """

    def __init__(
        self,
        hook: Ltx2Hook,
        request: dict[str, Any],
        image: ImageInput,
        log: Any,
        *,
        check_image: bool = True,
        deadline: float | None = None,
    ) -> None:
        self.hook = hook
        self.request = request
        self.image = image
        self.log = log  # the task's log: what a user reads of its steps
        self.checks_image = check_image  # the image is read before paying
        self.deadline = deadline  # the task's: no read of the image lasts past it

    @classmethod
    def prepare(
        cls,
        hook: Ltx2Hook,
        fields: Mapping[str, Any],
        *,
        image_conn_id: str | None,
        image_url_expires_in: int,
        log: Any,
        check_image: bool = True,
        deadline: float | None = None,
    ) -> Generation:
        """Validate the request fields, check that the gateway can fetch the image and identify an object-storage
        image; no gateway call, nothing paid.

        Raises ``Ltx2ValidationError`` naming the field, the value and what is accepted.
        """
        request = build_request(**fields)
        image = image_input(request["image_url"], image_conn_id, image_url_expires_in)
        generation = cls(hook, request, image, log, check_image=check_image, deadline=deadline)
        generation.check_gateway_can_fetch()
        return generation

    @classmethod
    def resumed(
        cls,
        hook: Ltx2Hook,
        request: dict[str, Any],
        *,
        image_conn_id: str | None,
        image_url_expires_in: int,
        log: Any,
    ) -> Generation:
        """The generation of a task resuming after a deferral: its request was validated before it deferred."""
        image = ImageInput(request["image_url"], image_conn_id, expires_in=image_url_expires_in)
        return cls(hook, request, image, log)

    @cached_property
    def fingerprint(self) -> str:
        """What the sidecar records of this request and its image (hashed once: reuse and XCom both ask).

        A public image is read once for it and known by its bytes, so a new image published at the same URL
        is a new generation. One the worker cannot read (``check_image=False``: only the gateway can reach
        it) is known by its URL alone, and the log says so.
        """
        try:
            self.image = storage.identified_by_content(self.image, lambda url: self.hook.read_image(url, self.deadline))
        except Ltx2ValidationError:
            if self.checks_image:
                raise
            self.image = replace(self.image, identified=True)  # by its URL: not read again for this
            self.log.warning(
                "The image %s cannot be read from this worker (check_image=False): a video is reused for the same "
                "URL even if the image behind it changed.",
                self.image.uri,
            )
        return storage.fingerprint(self.request, self.image)

    def check_gateway_can_fetch(self) -> None:
        """Fail before paying, and before any read of a public image, on an image the gateway could never fetch
        (``storage.check_gateway_can_fetch``): the single operator and a batch's survey share this rule."""
        storage.check_gateway_can_fetch(self.image, self.hook.check_fetchable)

    def reusable(self, output_uri: str, output_conn_id: str | None) -> dict[str, Any] | None:
        """The sidecar of a video an earlier run made of this very request and image, if still intact."""
        return storage.reusable(output_uri, output_conn_id, self.fingerprint)

    def check_image(self) -> None:
        """Fail before paying on a missing, empty or non-JPEG/PNG image."""
        storage.check_image(self.image, lambda url, size: self.hook.read_head(url, size, self.deadline))

    def submit(self, capacity: CapacityWait) -> Submitted:
        """One paid submit, once ``capacity.submit_delay`` lets it go (never past the deadline, never before the
        gateway's ``Retry-After``); raises ``Ltx2Throttled`` when the gateway is at capacity (nothing was created)."""
        delay = capacity.submit_delay()
        if delay > 0:  # even sleep(0) hands the GIL over: a batch submits thousands of times
            time.sleep(delay)
        signed = self.image.url_for_gateway()  # made afresh for every attempt; never stored nor logged
        try:
            job = self.hook.submit(
                {**self.request, "image_url": signed}, hidden=(signed,) if self.image.private else ()
            )
        except Ltx2Throttled:
            metrics.count(metrics.THROTTLED_SUBMITS)
            raise
        metrics.count(metrics.PAID_SUBMITS)
        self.log.info(
            "Submitted LTX-2 request %s (USD %.2f): %s", job.request_id, PRICE_PER_VIDEO_USD, summarise(self.request)
        )
        return Submitted(job, utc_now_iso())

    def submit_when_capacity(
        self, capacity: CapacityWait, defer: Callable[[CapacityWait], None] | None = None
    ) -> Submitted:
        """Submit, waiting while the gateway is at capacity: in this worker, or through ``defer`` (which
        hands the wait to the triggerer and does not return). Raises ``Ltx2Timeout`` at the deadline."""
        while True:
            try:
                submitted = self.submit(capacity)
            except Ltx2Throttled as throttled:
                capacity.throttled(throttled, self.log)  # raises Ltx2Timeout once the deadline leaves no chance
                if defer is not None:
                    defer(capacity)
                time.sleep(capacity.worker_delay())
                continue
            capacity.got_in(self.log)
            return submitted

    def reattach(self, record: RequestRecord, deadline: float) -> Submitted | None:
        """The request an earlier try of this task paid for, if it is the same and can still deliver."""
        saved = record.load()
        if saved is None:
            return None
        if saved.get("request") != self.request:
            self.log.warning("The request changed since an earlier try; submitting the new one.")
            record.forget()
            return None
        job = Job.from_dict(saved)
        try:
            state = self.hook.get_status(job, deadline=deadline).state
        except Ltx2GenerationFailed:  # unknown to the gateway, or expired
            state = JobState.FAILED
        if state is JobState.FAILED:
            self.log.warning(
                "The LTX-2 request %s of an earlier try failed or expired; submitting a new one.", job.request_id
            )
            record.forget()
            return None
        self.log.info(
            "Reattaching to LTX-2 request %s (%s) submitted by an earlier try; not submitting again.",
            job.request_id,
            state.value,
        )
        submitted_at = saved.get("submitted_at")
        return Submitted(job, submitted_at if isinstance(submitted_at, str) else None)

    def paid_job(
        self,
        record: RequestRecord,
        capacity: CapacityWait,
        spend: SpendGuard,
        defer: Callable[[CapacityWait], None] | None = None,
    ) -> Submitted:
        """The job this task pays for once: an earlier try's (nothing reserved), else a new submit within the key's
        budget (``spend`` reserves one video first, and settles once the job is recorded), recorded at once."""
        submitted = self.reattach(record, capacity.deadline)
        if submitted is None:
            # A deferral for capacity ends the block too: the reservation is freed while the task waits.
            with spend.reserved(videos=1) as reservation:
                submitted = self.submit_when_capacity(capacity, defer)
                reservation.paid_for(1)
                record.save(submitted, self.request)
        return submitted


def poll_once(hook: Ltx2Hook, wait: Wait, log: Any) -> PollStep:
    """Poll the gateway once (its retries included) and decide what the answer means for ``wait``."""
    try:
        answer: JobStatus | Ltx2Error = hook.get_status(wait.job, deadline=wait.deadline)
    except Ltx2Error as error:
        answer = error
    step = after_poll(wait, answer, time.time())
    if step.news:
        log.info(step.news)
    return step


def wait_in_worker(hook: Ltx2Hook, wait: Wait, log: Any = None) -> JobStatus:
    """Poll from this worker until the job finishes; raise ``Ltx2Timeout`` at the deadline."""
    while (step := poll_once(hook, wait, log or hook.log)).next is Next.POLL:
        wait = step.wait
        time.sleep(step.delay)
    return step.finished_status()


def summarise(request: Mapping[str, Any]) -> str:
    """The request for a log line, with a long prompt shortened."""
    prompt = request.get("prompt", "")
    shown = prompt if len(prompt) <= 120 else prompt[:117] + "..."
    others = ", ".join(f"{name}={value!r}" for name, value in request.items() if name != "prompt")
    return f"prompt={shown!r}, {others}"
