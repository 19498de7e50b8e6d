"""Where a batch stands, as plain JSON: carried through the batch trigger and kept across the task's tries.

Its size grows with the jobs in flight and the failed rows, never with the table: finished rows are found
by their sidecars, and the table's rows before ``cursor`` are settled. Only ``BatchProgress.from_dict``
reads it back, and it checks every field: a damaged record fails the task rather than paying twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_ltx2.api.jobs import Job
from airflow_provider_ltx2.contract import cost_usd
from airflow_provider_ltx2.exceptions import Ltx2Error
from airflow_provider_ltx2.lifecycle import StateRecord

BATCH_STATE_KEY = "ltx2_batch"  # task_state_store key (Airflow 3.3+) of a batch task's progress
PROGRESS_VERSION = 1


@dataclass(frozen=True)
class InFlight:
    """A row's paid job, not yet delivered: enough to poll it, deliver it and write its sidecar."""

    row: str
    request_id: str
    polling_url: str | None
    submitted_at: str | None
    fingerprint: str

    @property
    def job(self) -> Job:
        return Job(self.request_id, self.polling_url)


@dataclass(frozen=True)
class FailedRow:
    """A row whose generation failed (or whose submit may have been charged unconfirmed): never resent."""

    error: str
    request_id: str | None = None
    submitted_at: str | None = None
    completed_at: str | None = None


@dataclass
class BatchProgress:
    """One batch task instance's progress through its table (the rows before ``cursor`` are settled)."""

    table: str  # the table's digest: a resumed or retried task must be running the same table
    token: str  # written into the sidecars this batch makes: a sidecar without it is an earlier run's, reused
    started_at: str  # the first try's start, for the pace in the progress lines
    total: int
    estimated: int  # rows that needed generating when the batch started
    cursor: int = 0
    paid: int = 0  # accepted submits
    generated: int = 0
    reused: int = 0
    in_flight: list[InFlight] = field(default_factory=list)
    failed: dict[str, FailedRow] = field(default_factory=dict)
    logged_at: float | None = None  # the last progress line in the task log
    spend: dict[str, Any] | None = None  # this try's open reservation in the key's ledger (``spend.Reservation``)
    paid_when_reserved: int = 0  # ``paid`` when it was made: what it settles to is what was paid since

    @property
    def settled(self) -> int:
        return self.generated + self.reused + len(self.failed)

    @property
    def done(self) -> bool:
        return self.cursor >= self.total and not self.in_flight

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.paid)

    @property
    def left_to_pay(self) -> int:
        """Rows the batch may still pay for: its estimate less the submits made and the rows that failed unpaid
        (at most; a row found reusable later is not paid for)."""
        failed_unpaid = sum(1 for row in self.failed.values() if row.request_id is None)
        return max(0, self.estimated - self.paid - failed_unpaid)

    def to_dict(self) -> dict[str, Any]:
        return {"version": PROGRESS_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any) -> BatchProgress:
        """The progress ``to_dict`` wrote; anything else raises ``Ltx2Error``."""
        try:
            if data.get("version") != PROGRESS_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            progress = cls(
                table=_typed(data, "table", str),
                token=_typed(data, "token", str),
                started_at=_typed(data, "started_at", str),
                total=_typed(data, "total", int),
                estimated=_typed(data, "estimated", int),
                cursor=_typed(data, "cursor", int),
                paid=_typed(data, "paid", int),
                generated=_typed(data, "generated", int),
                reused=_typed(data, "reused", int),
                in_flight=[InFlight(**entry) for entry in data["in_flight"]],
                failed={str(row): FailedRow(**entry) for row, entry in data["failed"].items()},
                logged_at=data.get("logged_at"),
                spend=_optional_dict(data, "spend"),
                paid_when_reserved=_typed(data, "paid_when_reserved", int) if "paid_when_reserved" in data else 0,
            )
            if not 0 <= progress.paid_when_reserved <= progress.paid:  # else settling would hide what was paid
                raise ValueError(f"paid_when_reserved={progress.paid_when_reserved!r} with paid={progress.paid!r}")
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise Ltx2Error(f"Malformed LTX-2 batch progress ({error}): {str(data)[:300]}") from None
        return progress


def _optional_dict(data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)  # absent from progress written before 0.4
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name}={value!r}")
    return value


def _typed(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r}")
    return value


class BatchRecord(StateRecord):
    """A batch task instance's progress in ``task_state_store`` (Airflow 3.3+), so a retry goes on from it."""

    key = BATCH_STATE_KEY

    def load_progress(self) -> BatchProgress | None:
        saved = self.load()
        return None if saved is None else BatchProgress.from_dict(saved)

    def save_progress(self, progress: BatchProgress) -> None:
        self.put(progress.to_dict())
