"""The spend guard on every paying path, against the simulator: the single operator, the decorator, a mapped
instance, the batch (estimate after reuse, rerun, retry), deferrals; refusals before any paid call."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ltx2 import xcom
from airflow_provider_ltx2.batches.progress import BATCH_STATE_KEY, BatchProgress
from airflow_provider_ltx2.decorators.ltx2 import _Ltx2VideoDecoratedOperator
from airflow_provider_ltx2.exceptions import Ltx2BudgetExceeded, Ltx2Error, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator, Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.simulator.server import SAMPLE_JPG
from airflow_provider_ltx2.spend import Ledger, RecordName
from tests.conftest import KEY, S3_BUCKET, Deferrals, run_deferrable
from tests.fakes import FakeStateStore, FakeTaskInstance, task_context

REQUEST = {"image_url": "https://images.example.com/cat.jpg", "prompt": "the cat turns its head"}


class CappedLedger:
    """The ledger folder of a connection with caps, and what it holds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.uri = f"file://{folder}"

    def files(self) -> list[Path]:
        return sorted(path for path in self.folder.rglob("*") if path.is_file()) if self.folder.exists() else []

    def records(self) -> list[RecordName]:
        found = [RecordName.parse(str(path.relative_to(self.folder))) for path in self.files()]
        return [record for record in found if record is not None]

    def open_records(self) -> list[RecordName]:
        return [record for record in self.records() if not record.settled]

    def spent_today(self) -> int:
        return Ledger(self.uri, None).spend(datetime.now(timezone.utc).strftime("%Y-%m-%d")).today

    def prefill(self, cents: int, dag_id: str = "elsewhere") -> None:
        """Spend another DAG made today with the same key."""
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        record = RecordName(day, dag_id, "f" * 32, reserved=cents, spent=cents, settled=True)
        (self.folder / record.relative).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / record.relative).write_text("{}")


@pytest.fixture
def capped(simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``capped(daily_budget_usd=...)``: point ``ltx2_default`` at the simulator with these spend extras."""

    def connect(**extra: Any) -> CappedLedger:
        ledger = CappedLedger(tmp_path / "ledger")
        connection = json.loads(simulator.connection())
        connection["extra"] = {"spend_ledger_uri": ledger.uri, **extra}
        monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", json.dumps(connection))
        return ledger

    return connect


def operator(**kwargs: Any) -> Ltx2GenerateVideoOperator:
    arguments = {**REQUEST, "task_id": "generate", "poll_interval": 0.1, "timeout": 20, "deferrable": False}
    return Ltx2GenerateVideoOperator(**{**arguments, "check_image": False, **kwargs})


# ------------------------------------------------------------------------------------ one video


def test_a_generation_reserves_one_video_and_settles_it_once_paid(simulator: SimulatorProcess, capped: Any) -> None:
    ledger = capped(daily_budget_usd="5")
    context = task_context(ti=FakeTaskInstance(map_index=4))  # a mapped instance: its record names its index
    operator().execute(context)
    (record,) = ledger.records()
    assert (record.reserved, record.spent, record.settled) == (60, 60, True)
    body = json.loads(ledger.files()[0].read_text())
    assert (body["dag_id"], body["task_id"], body["map_index"], body["try_number"]) == ("ltx2_test", "generate", 4, 1)
    assert body["run_id"] == FakeTaskInstance.run_id and body["spent_usd"] == 0.6
    assert simulator.stats()["submits"] == 1


def test_a_generation_past_the_cap_fails_before_any_paid_call(simulator: SimulatorProcess, capped: Any) -> None:
    ledger = capped(daily_budget_usd="3.00")
    ledger.prefill(270)
    context = task_context()
    with pytest.raises(Ltx2BudgetExceeded) as caught:
        operator().execute(context)
    message = str(caught.value)
    assert "today" in message and "USD 2.70" in message and "USD 0.60" in message and "daily_budget_usd=3" in message
    assert simulator.stats()["submits"] == 0
    assert context["ti"].xcom[xcom.FAILURE] == message, "the UI shows why"
    assert [record.uid for record in ledger.records()] == ["f" * 32], "the refused reservation is removed"


def test_the_monthly_cap_holds_too(simulator: SimulatorProcess, capped: Any) -> None:
    ledger = capped(daily_budget_usd=100, monthly_budget_usd=1)
    ledger.prefill(60)
    with pytest.raises(Ltx2BudgetExceeded, match=r"this month.*monthly_budget_usd=1"):
        operator().execute(task_context())
    assert simulator.stats()["submits"] == 0


def test_a_cap_without_a_ledger_fails_before_any_call(
    simulator: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connection = {**json.loads(simulator.connection()), "extra": {"daily_budget_usd": 10}}
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", json.dumps(connection))
    for task in (operator(check_image=True), batch([{"id": "a", **REQUEST}], tmp_path / "out")):
        with pytest.raises(Ltx2ValidationError, match="daily_budget_usd=10 without spend_ledger_uri"):
            task.execute(task_context())
    assert simulator.stats()["submits"] == 0 and simulator.stats()["polls"] == 0
    assert not (tmp_path / "out").exists()


def test_the_decorator_reserves_as_the_operator_does(simulator: SimulatorProcess, capped: Any) -> None:
    ledger = capped(daily_budget_usd=0.5)  # less than one video

    def animate() -> dict[str, Any]:
        return dict(REQUEST)

    decorated = _Ltx2VideoDecoratedOperator(python_callable=animate, task_id="animate", check_image=False)
    with pytest.raises(Ltx2BudgetExceeded, match=r"daily_budget_usd=0\.5"):
        decorated.execute(task_context())
    assert simulator.stats()["submits"] == 0 and ledger.records() == []


def test_a_retry_that_reattaches_and_a_rerun_that_reuses_reserve_nothing(
    simulator: SimulatorProcess, capped: Any, tmp_path: Path
) -> None:
    ledger = capped(daily_budget_usd=0.6)  # room for exactly one video
    store = FakeStateStore()
    output = f"file://{tmp_path}/v.mp4"
    with pytest.raises(TaskDeferred):  # the first try pays, then its process dies while deferred
        operator(deferrable=True, output_uri=output).execute(task_context(store))
    operator(output_uri=output).execute(task_context(store))  # the retry reattaches: the cap is not hit
    operator(output_uri=output).execute(task_context())  # a rerun reuses the video
    assert simulator.stats()["submits"] == 1
    assert [(r.spent, r.settled) for r in ledger.records()] == [(60, True)]


def test_waiting_for_capacity_in_the_triggerer_holds_no_reservation(simulator: SimulatorProcess, capped: Any) -> None:
    ledger = capped(daily_budget_usd=5)
    simulator.configure(max_concurrent_jobs=1, queue_seconds=0.0, processing_seconds=1.5)
    Ltx2Hook().submit(REQUEST)  # the gateway is full for 1.5 s
    task = operator(deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    assert type(deferred.value.trigger).__name__ == "Ltx2CapacityTrigger"
    assert ledger.files() == [], "a task waiting for capacity has paid nothing and holds nothing"
    seen = Deferrals()
    result = run_deferrable(task, context, seen)
    assert result["status"] == "succeeded"
    assert [(r.spent, r.settled) for r in ledger.records()] == [(60, True)]


# ------------------------------------------------------------------------------------ a batch


def rows(simulator: SimulatorProcess, count: int) -> list[dict[str, Any]]:
    image = f"{simulator.base_url}/files/{SAMPLE_JPG.name}"
    return [{"id": f"sku-{number}", "image_url": image, "prompt": f"take {number}"} for number in range(count)]


def batch(requests: Any, output: Path, **kwargs: Any) -> Ltx2GenerateVideoBatchOperator:
    settings = {"poll_interval": 0.1, "task_id": "generate_batch", **kwargs}
    return Ltx2GenerateVideoBatchOperator(requests=requests, output_prefix=f"file://{output}", **settings)


def test_a_batch_reserves_its_estimate_after_reuse_and_a_full_rerun_reserves_nothing(
    simulator: SimulatorProcess, capped: Any, tmp_path: Path
) -> None:
    ledger = capped(daily_budget_usd=3.0)  # five videos
    output = tmp_path / "out"
    batch(rows(simulator, 3), output).execute(task_context())
    assert [(r.reserved, r.spent, r.settled) for r in ledger.records()] == [(180, 180, True)]
    result = batch(rows(simulator, 5), output).execute(task_context())  # 3 reused, 2 new: exactly the cap
    assert (result["reused"], result["generated"]) == (3, 2)
    assert sorted((r.reserved, r.spent) for r in ledger.records()) == [(120, 120), (180, 180)]
    batch(rows(simulator, 5), output).execute(task_context())  # everything reused: nothing reserved
    assert len(ledger.records()) == 2 and ledger.spent_today() == 300 and ledger.open_records() == []
    assert simulator.stats()["submits"] == 5


def test_a_batch_over_the_cap_is_refused_before_its_first_row(
    simulator: SimulatorProcess, capped: Any, tmp_path: Path
) -> None:
    ledger = capped(monthly_budget_usd=2)
    with pytest.raises(Ltx2BudgetExceeded) as caught:
        batch(rows(simulator, 4), tmp_path / "out").execute(task_context())
    assert (
        "USD 0.00" in str(caught.value)
        and "USD 2.40" in str(caught.value)
        and "monthly_budget_usd=2" in str(caught.value)
    )
    assert simulator.stats()["submits"] == 0 and ledger.files() == []
    batch(rows(simulator, 4), tmp_path / "out", dry_run=True).execute(task_context())  # a dry run reserves nothing
    assert ledger.files() == []


def test_a_deferred_batch_keeps_its_reservation_and_a_retry_reserves_what_is_left(
    simulator: SimulatorProcess, capped: Any, tmp_path: Path
) -> None:
    ledger = capped(daily_budget_usd=3.0)
    store, table, output = FakeStateStore(), rows(simulator, 5), tmp_path / "out"
    with pytest.raises(TaskDeferred):  # the first try dies right after deferring, with 2 jobs paid
        batch(table, output, deferrable=True).execute(task_context(store))
    assert [(r.reserved, r.settled) for r in ledger.records()] == [(300, False)], "open while the batch waits"
    assert BatchProgress.from_dict(store.values[BATCH_STATE_KEY]).spend is not None

    result = batch(table, output).execute(task_context(store))  # within the cap: its first reservation is settled
    assert result["cost_usd"] == 3.0 and simulator.stats()["submits"] == 5
    assert sorted((r.reserved, r.spent) for r in ledger.records()) == [(180, 180), (300, 120)]
    assert ledger.open_records() == [] and ledger.spent_today() == 300


def test_a_batch_whose_resume_fails_settles_what_it_paid(
    simulator: SimulatorProcess, capped: Any, tmp_path: Path
) -> None:
    """The trigger's error (here: the connection gone while the batch waited) fails the resume before it knows its
    batch; the reservation kept in the task state store is settled all the same, not left holding the cap."""
    ledger = capped(daily_budget_usd=3.0)
    store, task = FakeStateStore(), batch(rows(simulator, 5), tmp_path / "out", deferrable=True)
    with pytest.raises(TaskDeferred):  # 2 jobs paid, 5 videos reserved
        task.execute(task_context(store))
    error = {"status": "error", "error_class": "Ltx2ConnectionNotFound", "message": "The connection is gone."}
    with pytest.raises(Ltx2Error, match="connection is gone"):
        task.resume_batch(task_context(store), event=error)
    assert [(r.reserved, r.spent, r.settled) for r in ledger.records()] == [(300, 120, True)]
    assert BatchProgress.from_dict(store.values[BATCH_STATE_KEY]).spend is None, "a retry settles nothing twice"


def test_a_failed_batch_settles_what_it_paid(simulator: SimulatorProcess, capped: Any, tmp_path: Path) -> None:
    ledger = capped(daily_budget_usd=10)
    simulator.configure(outcome="fail")
    with pytest.raises(Exception, match="rows of the batch failed"):
        batch(rows(simulator, 2), tmp_path / "out").execute(task_context())
    assert [(r.reserved, r.spent, r.settled) for r in ledger.records()] == [(120, 120, True)]


def test_no_record_holds_the_key_or_a_signed_url(
    simulator: SimulatorProcess, capped: Any, bucket: Any, tmp_path: Path
) -> None:
    ledger = capped(daily_budget_usd=10)
    bucket.put_object(Bucket=S3_BUCKET, Key="images/boat.jpg", Body=SAMPLE_JPG.read_bytes())
    image = f"s3://{S3_BUCKET}/images/boat.jpg"
    operator(image_url=image, image_conn_id="ltx2_s3").execute(task_context())
    batch(
        [{"id": "boat", "image_url": image, "prompt": "drift"}],
        tmp_path / "out",
        image_conn_id="ltx2_s3",
        allowed_image_prefixes=f"s3://{S3_BUCKET}/images/",
    ).execute(task_context())
    written = "\n".join(f"{path}\n{path.read_text()}" for path in ledger.files())
    assert len(ledger.records()) == 2
    for secret in (KEY, "Signature", "X-Amz", "boat.jpg"):
        assert secret not in written
