"""``Ltx2GenerateVideoBatchOperator`` against the simulator: one paid job per row, the manifest, the budget.

Real parts throughout: the simulator on loopback plays the gateway, outputs go to real folders, the
deferrable runs rebuild ``Ltx2BatchTrigger`` from its kwargs as the triggerer does (``run_deferrable``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ltx2.batches.progress import BATCH_STATE_KEY, BatchProgress
from airflow_provider_ltx2.exceptions import (
    Ltx2AuthError,
    Ltx2BatchFailed,
    Ltx2BudgetExceeded,
    Ltx2Error,
    Ltx2Timeout,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator, Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.simulator.server import SAMPLE_JPG
from airflow_provider_ltx2.triggers.ltx2 import Ltx2BatchTrigger
from tests.conftest import KEY, S3_BUCKET, Deferrals, ImageFolder, run_deferrable
from tests.fakes import FakeStateStore, RecordingLog, task_context

JPEG = SAMPLE_JPG.read_bytes()
OTHER_JPEG = JPEG[:-2] + b"\x00\xff\xd9"  # another photo at the same URL: same size, other bytes


def rows(simulator: SimulatorProcess, count: int, prefix: str = "sku") -> list[dict[str, Any]]:
    image = f"{simulator.base_url}/files/{SAMPLE_JPG.name}"
    return [{"id": f"{prefix}-{number}", "image_url": image, "prompt": f"take {number}"} for number in range(count)]


def batch(requests: Any, output: Path, **kwargs: Any) -> Ltx2GenerateVideoBatchOperator:
    settings = {"poll_interval": 0.1, "task_id": "generate_batch", **kwargs}
    return Ltx2GenerateVideoBatchOperator(requests=requests, output_prefix=f"file://{output}", **settings)


def manifest(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "manifest.jsonl").read_text().splitlines()]


def statuses(output: Path) -> dict[str, str]:
    return {entry["id"]: entry["status"] for entry in manifest(output)}


def recorded(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    """The batch operator's log, recorded."""
    log = RecordingLog()
    monkeypatch.setattr(Ltx2GenerateVideoBatchOperator, "log", property(lambda _: log))
    return log


def run(operator: Ltx2GenerateVideoBatchOperator, context: dict[str, Any] | None = None, **seen: Any) -> Any:
    context = context or task_context()
    if operator.deferrable:
        return run_deferrable(operator, context, seen.get("seen"), limit=200)
    return operator.execute(context)


@pytest.fixture(params=[False, True], ids=["in the worker", "deferrable"])
def deferrable(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# ------------------------------------------------------------------------------------ a batch, whole


def test_every_row_becomes_a_video_with_its_sidecar_and_a_line_in_the_manifest(
    simulator: SimulatorProcess, tmp_path: Path, deferrable: bool
) -> None:
    table = rows(simulator, 5)
    result = run(batch(table, tmp_path, deferrable=deferrable))

    assert result == {
        "manifest_uri": f"file://{tmp_path}/manifest.jsonl",
        "output_prefix": f"file://{tmp_path}",
        "total": 5,
        "generated": 5,
        "reused": 0,
        "failed": 0,
        "planned": 0,
        "cost_usd": 3.0,
        "estimated_cost_usd": 3.0,
    }
    assert simulator.stats()["submits"] == 5
    entries = manifest(tmp_path)
    assert [entry["id"] for entry in entries] == [row["id"] for row in table], "the input's order"
    for entry, row in zip(entries, table, strict=True):
        video = tmp_path / f"{row['id']}.mp4"
        sidecar = json.loads((tmp_path / f"{row['id']}.mp4.json").read_text())
        assert entry["status"] == "generated" and entry["output_uri"] == f"file://{video}"
        assert entry["bytes"] == video.stat().st_size == sidecar["bytes"] and entry["sha256"] == sidecar["sha256"]
        assert entry["request_id"] == sidecar["request_id"] and entry["error"] is None
        assert (entry["image_url"], entry["prompt"]) == (row["image_url"], row["prompt"])
        assert entry["submitted_at"] <= entry["completed_at"]
    assert not list(tmp_path.glob(".*.part")), "nothing half-written is left"


def test_deferred_the_batch_waits_in_one_trigger_that_holds_only_its_jobs_in_flight(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    seen = Deferrals()
    run(batch(rows(simulator, 7), tmp_path, deferrable=True, max_concurrent_jobs=2), seen=seen)

    assert set(seen.triggers) == {"Ltx2BatchTrigger"}
    assert len(seen.triggers) <= 7, "at most one resume per paid video"
    assert all(len(kwargs["batch"]["in_flight"]) <= 2 for kwargs in seen.kwargs)
    sizes = {len(json.dumps(kwargs)) for kwargs in seen.kwargs}
    assert max(sizes) - min(sizes) < 600, "the kwargs grow with the jobs in flight, not with the table"
    assert all(event["status"] == "batch" and event["ended"] for event in seen.events)
    assert simulator.stats()["submits"] == 7


def test_never_more_than_max_concurrent_jobs_in_flight(simulator: SimulatorProcess, tmp_path: Path) -> None:
    simulator.configure(max_concurrent_jobs=3)
    run(batch(rows(simulator, 8), tmp_path, max_concurrent_jobs=3))
    stats = simulator.stats()
    assert stats["submits"] == 8 and stats["throttled"]["submit"] == 0, stats


@pytest.mark.slow
def test_a_gateway_fuller_than_the_batch_expects_makes_it_wait_not_fail(
    simulator: SimulatorProcess, tmp_path: Path, deferrable: bool
) -> None:
    simulator.configure(max_concurrent_jobs=1)
    result = run(batch(rows(simulator, 4), tmp_path, max_concurrent_jobs=3, deferrable=deferrable))
    stats = simulator.stats()
    assert (result["generated"], result["failed"], stats["jobs"]) == (4, 0, 4), "one paid job per row"
    assert stats["throttled"]["submit"] > 0, "the gateway did refuse some submits for capacity"


# ------------------------------------------------------------------------------------ checked before paying


def test_a_bad_row_pays_nothing_and_writes_nothing(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 3)
    table[2]["duration"] = "12"
    ctx = task_context()
    with pytest.raises(Ltx2ValidationError) as caught:
        batch(table, tmp_path).execute(ctx)
    assert "'sku-2' (row 3)" in str(caught.value) and "duration='12'" in str(caught.value)
    assert ctx["ti"].xcom["ltx2_failure"] == str(caught.value), "the UI shows why"
    assert simulator.stats()["submits"] == 0 and not list(tmp_path.iterdir())


def test_a_missing_image_pays_nothing(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 3)
    table[1]["image_url"] = f"{simulator.base_url}/files/missing.jpg"
    with pytest.raises(Ltx2ValidationError, match=r"'sku-1' \(row 2\).*not found \(HTTP 404\)"):
        batch(table, tmp_path).execute(task_context())
    assert simulator.stats()["submits"] == 0


def test_a_duplicate_id_pays_nothing(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 3)
    table[2]["id"] = "sku-0"
    with pytest.raises(Ltx2ValidationError, match="unique"):
        batch(table, tmp_path).execute(task_context())
    assert simulator.stats()["submits"] == 0


def test_the_budget_refuses_a_batch_that_would_cost_more(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 4)
    run(batch(table[:2], tmp_path))  # two rows made earlier: reused, free
    with pytest.raises(Ltx2BudgetExceeded) as caught:
        batch(table + rows(simulator, 1, "new"), tmp_path, max_cost_usd=1.5).execute(task_context())
    message = str(caught.value)
    assert all(part in message for part in ("USD 1.80", "3 rows to generate", "2 reused of 5", "max_cost_usd=1.5"))
    assert simulator.stats()["submits"] == 2, "nothing more was paid"
    with pytest.raises(Ltx2ValidationError, match="max_cost_usd='lots': accepted values are None or an amount"):
        batch(table, tmp_path, max_cost_usd="lots").execute(task_context())  # a template rendered badly
    result = run(batch(table, tmp_path, max_cost_usd="1.2"))  # as a template renders an approved estimate
    assert (result["generated"], result["reused"], result["estimated_cost_usd"]) == (2, 2, 1.2)


def test_a_dry_run_writes_the_plan_and_pays_nothing(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 3)
    run(batch(table[:1], tmp_path))
    ctx = task_context()
    result = batch(table, tmp_path, dry_run=True).execute(ctx)
    assert (result["planned"], result["reused"], result["cost_usd"], result["estimated_cost_usd"]) == (2, 1, 0.0, 1.2)
    assert statuses(tmp_path) == {"sku-0": "reused", "sku-1": "planned", "sku-2": "planned"}
    assert simulator.stats()["submits"] == 1 and not ctx["task_state_store"].values


def test_a_dry_run_of_a_table_past_the_mapping_limit(simulator: SimulatorProcess, tmp_path: Path) -> None:
    """1,100 rows: Airflow would refuse to map them (max_map_length 1,024); one task prices them."""
    result = batch(rows(simulator, 1100), tmp_path, dry_run=True).execute(task_context())
    assert (result["total"], result["planned"], result["estimated_cost_usd"]) == (1100, 1100, 660.0)
    assert len(json.dumps(result)) < 400, "the XCom stays small whatever the table's size"
    assert len(manifest(tmp_path)) == 1100 and simulator.stats()["submits"] == 0


# ------------------------------------------------------------------------------------ images the worker may sign


def table_file(folder: Path, table: list[dict[str, Any]], suffix: str) -> str:
    """``table`` written as a ``.jsonl`` or ``.csv`` file in ``folder``; its URI."""
    import csv

    path = folder / f"table.{suffix}"
    with path.open("w", newline="") as out:
        if suffix == "csv":
            writer = csv.DictWriter(out, fieldnames=["id", "image_url", "prompt"])
            writer.writeheader()
            writer.writerows(table)
        else:
            out.write("\n".join(json.dumps(row) for row in table))
    return f"file://{path}"


def image_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The images the batch looks up (their metadata, before any check), recorded as it does so."""
    from airflow_provider_ltx2.batches import run as batch_run

    read: list[str] = []
    look_up = batch_run.image_input

    def recording(uri: str, *args: Any) -> Any:
        read.append(uri)
        return look_up(uri, *args)

    monkeypatch.setattr(batch_run, "image_input", recording)
    return read


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.parametrize("mode", [{}, {"dry_run": True}, {"check_image": False}], ids=["paid", "dry run", "unchecked"])
def test_a_table_file_cannot_have_the_worker_sign_an_object_outside_the_allowed_prefixes(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, mode: dict[str, Any]
) -> None:
    secret = tmp_path / "finance" / "salaries.csv"
    secret.parent.mkdir()
    secret.write_text("name,salary\n")
    table = [
        {"id": "fine", "image_url": f"{simulator.base_url}/files/{SAMPLE_JPG.name}", "prompt": "drift"},
        {"id": "leak", "image_url": f"file://{secret}", "prompt": "drift"},
    ]
    read = image_reads(monkeypatch)
    allowed = f"file://{tmp_path}/images/"
    operator = batch(table_file(tmp_path, table, suffix), tmp_path / "out", allowed_image_prefixes=allowed, **mode)
    with pytest.raises(Ltx2ValidationError) as caught:
        operator.execute(task_context())
    message = str(caught.value)
    assert message.startswith(f"Row 'leak' (row 2): image_url='file://{secret}' is not under ")
    assert f"allowed_image_prefixes=[{allowed!r}]" in message and "nothing was paid" in message
    assert read == [], "refused before any image is looked up"
    stats = simulator.stats()
    assert (stats["submits"], stats["downloads"]) == (0, 0) and not (tmp_path / "out").exists()


def test_a_private_bucket_object_named_by_a_table_file_is_not_signed(
    simulator: SimulatorProcess, bucket: Any, tmp_path: Path
) -> None:
    """Without ``allowed_image_prefixes`` a table's data names no private image, whatever ``image_conn_id`` reads."""
    bucket.put_object(Bucket=S3_BUCKET, Key="finance/salaries.csv", Body=b"name,salary\n")
    leak = {"id": "leak", "image_url": f"s3://{S3_BUCKET}/finance/salaries.csv", "prompt": "drift"}
    requests = table_file(tmp_path, [leak], "jsonl")
    operator = batch(requests, tmp_path / "out", image_conn_id="ltx2_s3", check_image=False)
    with pytest.raises(Ltx2ValidationError, match=r"Row 'leak' \(row 1\).* is not under allowed_image_prefixes=None"):
        operator.execute(task_context())
    assert simulator.stats()["submits"] == 0


@pytest.mark.parametrize("slash", ["", "/"], ids=["a folder", "a folder with its slash"])
def test_a_table_file_may_name_private_images_inside_the_allowed_prefixes(
    simulator: SimulatorProcess, bucket: Any, tmp_path: Path, slash: str
) -> None:
    bucket.put_object(Bucket=S3_BUCKET, Key="images/boat.jpg", Body=JPEG)
    boat = {"id": "boat", "image_url": f"s3://{S3_BUCKET}/images/boat.jpg", "prompt": "drift"}
    requests = table_file(tmp_path, [boat], "csv")
    folder = f"s3://{S3_BUCKET}/images{slash}"
    for allowed in (folder, ["s3://elsewhere/images/", folder]):
        settings = {"image_conn_id": "ltx2_s3", "allowed_image_prefixes": allowed, "dry_run": True}
        operator = batch(requests, tmp_path / "out", **settings)
        assert operator.execute(task_context())["planned"] == 1
    assert simulator.stats()["submits"] == 0


@pytest.mark.parametrize(
    "uri",
    [
        "s3://media/images-private/a.jpg",
        "s3://media/images/../salaries.csv",
        "s3://media/images/./a.jpg",
        "s3://media/images/%2e%2e/salaries.csv",
        "s3://media/images/%2E%2E/salaries.csv",
        "s3://media/images%2Fa.jpg",
        "s3://media/images/a%2fb.jpg",
        "s3://media/images/a.jpg\\..\\..\\salaries.csv",
        "s3://media/images/a.jpg?versionId=1",
        "s3://media/images/a.jpg#b",
        "s3://media/images//a.jpg",
        "s3://media/images/.\n./salaries.csv",
        "s3://media/images/a.jpg::s3://other-bucket/salaries.csv",
        "s3://media/images",
        "s3://media/images/",
        "s3://Media/images/a.jpg",
        "s3://media/Images/a.jpg",
        "s3://media:443/images/a.jpg",
        "s3a://media/images/a.jpg",
        "s3://other-bucket/images/a.jpg",
    ],
)
def test_an_image_lies_under_a_prefix_only_plainly_inside_its_folder(uri: str) -> None:
    from airflow_provider_ltx2.storage import lies_under

    assert not lies_under(uri, ["s3://media/images"])
    assert not lies_under(uri, ["s3://media/images/"])


@pytest.mark.parametrize(
    ("uri", "prefix"),
    [
        ("s3://media/images/a.jpg", "s3://media/images"),
        ("s3://media/images/a.jpg", "s3://media/images/"),
        ("S3://media/images/2026/a.jpg", "s3://media/images/"),
        ("s3://media/a.jpg", "s3://media"),
        ("file:///data/images/a.jpg", "file:///data/images/"),
    ],
)
def test_an_image_plainly_inside_a_prefix_lies_under_it(uri: str, prefix: str) -> None:
    from airflow_provider_ltx2.storage import lies_under

    assert lies_under(uri, ["gs://elsewhere/", prefix])


@pytest.mark.parametrize(
    "allowed",
    [
        "images/",
        "https://cdn.example.com/images/",
        "s3://media/images/../",
        "s3://media/%2e%2e/",
        "s3://",
        "file:///",
        ["s3://media/images/", 5],
        {"s3://media/images/"},
    ],
)
def test_allowed_image_prefixes_are_checked_when_the_dag_is_parsed(tmp_path: Path, allowed: Any) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        batch([], tmp_path, allowed_image_prefixes=allowed)
    assert str(caught.value).startswith(f"allowed_image_prefixes={allowed!r}: accepted values are None, or an ")


def test_a_templated_prefix_is_checked_once_rendered(simulator: SimulatorProcess, tmp_path: Path) -> None:
    operator = batch(rows(simulator, 1), tmp_path, allowed_image_prefixes="{{ params.images }}")
    operator.render_template_fields({"params": {"images": "images/"}})
    with pytest.raises(Ltx2ValidationError, match="allowed_image_prefixes='images/': accepted values are None, or "):
        operator.execute(task_context())
    assert simulator.stats()["submits"] == 0


def test_only_image_uris_written_in_the_dag_file_are_the_authors(
    simulator: SimulatorProcess, bucket: Any, tmp_path: Path
) -> None:
    """A literal list's private image needs no prefix; one that a template brings in (params, conf, XCom) does."""
    image = f"s3://{S3_BUCKET}/images/boat.jpg"
    bucket.put_object(Bucket=S3_BUCKET, Key="images/boat.jpg", Body=JPEG)
    settings = {"image_conn_id": "ltx2_s3", "dry_run": True}
    written = [{"id": "boat", "image_url": image, "prompt": "drift"}]
    assert batch(written, tmp_path / "out", **settings).execute(task_context())["planned"] == 1

    templated = [{"id": "boat", "image_url": "{{ params.image }}", "prompt": "drift"}]
    operator = batch(templated, tmp_path / "out", **settings)
    operator.render_template_fields({"params": {"image": image}})
    with pytest.raises(Ltx2ValidationError, match=r"Row 'boat' \(row 1\).* is not under allowed_image_prefixes=None"):
        operator.execute(task_context())
    assert simulator.stats()["submits"] == 0


@pytest.mark.parametrize("given", ["an XComArg", "a mapped task"])
def test_rows_resolved_from_xcom_are_data(simulator: SimulatorProcess, tmp_path: Path, given: str) -> None:
    """A list that reaches the task from XCom, as a whole or mapped, is not the DAG file's: its images need a prefix."""
    import pendulum
    from airflow.providers.common.compat.sdk import DAG, BaseOperator

    image = tmp_path / "boat.jpg"
    image.write_bytes(JPEG)
    table = [{"id": "boat", "image_url": f"file://{image}", "prompt": "drift"}]
    output = {"output_prefix": f"file://{tmp_path}/out", "dry_run": True}
    with DAG(dag_id="rows_from_xcom", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        upstream = BaseOperator(task_id="read_rows")
        if given == "an XComArg":
            operator = Ltx2GenerateVideoBatchOperator(task_id="generate_batch", requests=upstream.output, **output)
            operator.requests = table  # as rendering resolves the XComArg
        else:
            mapped = Ltx2GenerateVideoBatchOperator.partial(task_id="generate_batch", **output).expand(
                requests=upstream.output
            )
            operator = mapped.unmap({"requests": table})  # as the worker makes the mapped instance
    with pytest.raises(Ltx2ValidationError, match=r"Row 'boat' \(row 1\).* is not under allowed_image_prefixes=None"):
        operator.execute(task_context())
    assert simulator.stats()["submits"] == 0


# ------------------------------------------------------------------------------------ failures and reruns


@pytest.mark.parametrize("max_failed_items", [0, 1])
def test_a_failed_row_is_recorded_and_the_batch_goes_on(
    simulator: SimulatorProcess, tmp_path: Path, deferrable: bool, max_failed_items: int
) -> None:
    table = rows(simulator, 4)
    table[1]["prompt"] += " [sim:fail]"
    operator = batch(table, tmp_path, deferrable=deferrable, max_failed_items=max_failed_items)
    ctx = task_context()
    if max_failed_items == 0:
        with pytest.raises(Ltx2BatchFailed, match="1 rows of the batch failed, more than max_failed_items=0") as raised:
            run(operator, ctx)
        assert "('sku-1': 'LTX-2 generation ltx2-v-" in str(raised.value), "names the row and its error"
        assert "simulated failure" in str(raised.value)
    else:
        assert run(operator, ctx)["failed"] == 1
    assert statuses(tmp_path) == {"sku-0": "generated", "sku-1": "failed", "sku-2": "generated", "sku-3": "generated"}
    [failed] = [entry for entry in manifest(tmp_path) if entry["status"] == "failed"]
    assert "simulated failure" in failed["error"] and failed["request_id"] and failed["output_uri"] is None
    assert sorted(path.name for path in tmp_path.glob("*.mp4")) == ["sku-0.mp4", "sku-2.mp4", "sku-3.mp4"]
    assert simulator.stats()["submits"] == 4 and not ctx["task_state_store"].values, "done: a clear starts anew"


def test_a_batch_failure_names_its_first_failed_rows_shortened(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 8)
    for row in table[:7]:
        row["prompt"] += " [sim:fail]"
    table[0]["id"] = "x" * 128  # the longest id accepted

    with pytest.raises(Ltx2BatchFailed) as raised:
        run(batch(table, tmp_path, max_concurrent_jobs=4))

    message = str(raised.value)
    assert message.startswith("7 rows of the batch failed, more than max_failed_items=0 (")
    assert message.count("simulated failure") == 5 and "; and 2 more)" in message, "the first five, then a count"
    assert "x" * 100 not in message and len(message) < 2000, "a long id or error is shortened"


def test_a_batch_submits_nothing_after_its_deadline_in_the_worker(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its survey outlasted the deadline: no row is paid for after it."""
    from airflow_provider_ltx2.batches import run as batch_run

    surveyed = batch_run.survey

    def slow_survey(*args: Any, **kwargs: Any) -> Any:
        found = surveyed(*args, **kwargs)
        time.sleep(1.2)
        return found

    monkeypatch.setattr(batch_run, "survey", slow_survey)
    with pytest.raises(Ltx2Timeout, match=r"passed before this submit: it was not sent, nothing was paid"):
        batch(rows(simulator, 2), tmp_path, timeout=1).execute(task_context())
    assert simulator.stats()["submits"] == 0


def test_a_deferred_batch_submits_nothing_after_its_deadline(simulator: SimulatorProcess, tmp_path: Path) -> None:
    """Its slot freed just before the deadline and the task resumed just after: the next row is not paid."""
    simulator.configure(queue_seconds=0, processing_seconds=0)
    operator = batch(rows(simulator, 2), tmp_path, deferrable=True, max_concurrent_jobs=1)
    ctx = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    kwargs = deferred.value.trigger.serialize()[1]
    trigger = Ltx2BatchTrigger(**{**kwargs, "deadline": time.time() + 1.0})

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["woken_by"] == "finish", "its job ended before the deadline"
    time.sleep(max(0.0, event["deadline"] - time.time()) + 0.1)
    with pytest.raises(Ltx2Timeout, match="passed before this submit"):
        operator.resume_batch(ctx, event)
    assert simulator.stats()["submits"] == 1, "the second row was not submitted after the deadline"
    assert (tmp_path / "sku-0.mp4").exists(), "the job that ended in time was delivered"


def test_a_rerun_with_one_row_changed_and_one_added_pays_two(
    simulator: SimulatorProcess, tmp_path: Path, deferrable: bool
) -> None:
    table = rows(simulator, 4)
    run(batch(table, tmp_path, deferrable=deferrable))
    table[2]["prompt"] = "a new take"
    table.append({"image_url": table[0]["image_url"], "prompt": "an added row without id"})
    result = run(batch(table, tmp_path, deferrable=deferrable))

    assert (result["generated"], result["reused"], result["cost_usd"]) == (2, 3, 1.2)
    assert simulator.stats()["submits"] == 4 + 2
    assert list(statuses(tmp_path).values()) == ["reused", "reused", "generated", "reused", "generated"]


@pytest.mark.slow
def test_a_new_image_at_the_same_url_is_a_new_video(
    simulator: SimulatorProcess, image_folder: ImageFolder, tmp_path: Path
) -> None:
    """A product photo replaced in place must not hand back the old photo's video: images are known by bytes."""
    url = image_folder.put("product.jpg", JPEG)
    single = {"image_url": url, "prompt": "turntable", "output_uri": f"file://{tmp_path}/single.mp4"}
    table = [{"id": "product", "image_url": url, "prompt": "turntable"}]
    first = Ltx2GenerateVideoOperator(task_id="one", poll_interval=0.1, **single).execute(task_context())
    run(batch(table, tmp_path / "batch"))
    again = Ltx2GenerateVideoOperator(task_id="one", poll_interval=0.1, **single).execute(task_context())
    assert (first["reused"], again["reused"], statuses(tmp_path / "batch")) == (False, True, {"product": "generated"})
    assert batch(table, tmp_path / "batch").execute(task_context())["reused"] == 1

    image_folder.put("product.jpg", OTHER_JPEG)
    replaced = Ltx2GenerateVideoOperator(task_id="one", poll_interval=0.1, **single).execute(task_context())
    result = batch(table, tmp_path / "batch").execute(task_context())
    assert (replaced["reused"], result["generated"]) == (False, 1)
    assert simulator.stats()["submits"] == 4


def test_a_retry_goes_on_from_the_jobs_an_earlier_try_paid_for(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-batch: the next try reattaches to the jobs in flight and pays for no row twice."""
    store = FakeStateStore()
    table = rows(simulator, 5)
    with pytest.raises(TaskDeferred):  # the first try dies right after deferring, with 2 jobs paid
        batch(table, tmp_path, deferrable=True).execute(task_context(store))
    saved = BatchProgress.from_dict(store.values[BATCH_STATE_KEY])
    assert (saved.paid, len(saved.in_flight), saved.cursor) == (2, 2, 2)

    log = recorded(monkeypatch)
    result = batch(table, tmp_path).execute(task_context(store))
    assert (result["generated"], result["cost_usd"]) == (5, 3.0)
    assert simulator.stats()["submits"] == 5, "one paid job per row over both tries"
    assert any(
        "Going on with the batch of an earlier try: 0 of 5 rows settled, 2 in flight" in m for m in log.messages()
    )
    assert BATCH_STATE_KEY not in store.values


class RecordedStore(FakeStateStore):
    """A state store that keeps, for each write, when it came and which paid jobs the progress held."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[float, set[str]]] = []

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        super().set(key, value, **kwargs)
        if key == BATCH_STATE_KEY:
            known = {flight["request_id"] for flight in self.values[key]["in_flight"]}  # as stored, through JSON
            self.writes.append((time.time(), known))


def test_every_paid_job_is_recorded_before_the_next_submit_with_about_one_write_per_row(
    simulator: SimulatorProcess, tmp_path: Path, deferrable: bool
) -> None:
    """Writes cost a metadata DB round trip each: settled rows ride along with the next paid job's record."""
    simulator.configure(queue_seconds=0, processing_seconds=0.2)
    store = RecordedStore()
    run(batch(rows(simulator, 12), tmp_path, deferrable=deferrable, max_concurrent_jobs=3), task_context(store))

    jobs = sorted(simulator.stats()["job_times"], key=lambda job: job["started"])
    assert len(jobs) == 12
    for job, following in itertools.pairwise(jobs):
        recorded = [at for at, known in store.writes if job["request_id"] in known and at <= following["started"]]
        assert recorded, f"{job['request_id']} was not in the task state store before the next submit"
    assert 12 <= len(store.writes) <= 12 + 6, f"{len(store.writes)} writes for 12 rows"


def test_without_a_state_store_a_retry_says_what_it_costs(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = recorded(monkeypatch)
    operator = batch(rows(simulator, 2), tmp_path)
    context = task_context()
    del context["task_state_store"]  # Airflow before 3.3
    assert operator.execute(context)["generated"] == 2
    assert any("pays again for the rows in flight" in message for message in log.messages("warning"))


@pytest.mark.slow
def test_a_poll_outage_is_ridden_out(simulator: SimulatorProcess, tmp_path: Path, deferrable: bool) -> None:
    simulator.configure(faults=[{"on": "poll", "status": 502, "count": 3}])
    result = run(batch(rows(simulator, 3), tmp_path, deferrable=deferrable))
    assert (result["generated"], simulator.stats()["submits"]) == (3, 3)


@pytest.mark.slow
def test_a_submit_surely_refused_is_tried_again_and_one_that_may_have_been_paid_never(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.configure(faults=[{"on": "submit", "status": 503, "count": 2}])
    assert run(batch(rows(simulator, 3), tmp_path / "retried"))["generated"] == 3
    assert simulator.stats()["jobs"] == 3

    simulator.reset()
    simulator.configure(queue_seconds=0.2, processing_seconds=0.3, faults=[{"on": "submit", "status": 500, "count": 1}])
    result = run(batch(rows(simulator, 3), tmp_path / "unconfirmed", max_failed_items=1))
    assert (result["generated"], result["failed"]) == (2, 1)
    [failed] = [entry for entry in manifest(tmp_path / "unconfirmed") if entry["status"] == "failed"]
    assert failed["id"] == "sku-0" and "HTTP 500" in failed["error"] and "not resent" in failed["error"]
    assert simulator.stats()["submits"] == 3, "the submit that may have created a job is never sent again"


def test_the_deadline_stops_the_batch_and_keeps_its_jobs_for_a_retry(
    simulator: SimulatorProcess, tmp_path: Path, deferrable: bool
) -> None:
    simulator.configure(outcome="never_finish")
    ctx = task_context()
    with pytest.raises(Ltx2Timeout):
        run(batch(rows(simulator, 3), tmp_path, deferrable=deferrable, timeout=1.0), ctx)
    saved = BatchProgress.from_dict(ctx["task_state_store"].values[BATCH_STATE_KEY])
    assert len(saved.in_flight) == 2 and simulator.stats()["submits"] == 2
    assert not (tmp_path / "manifest.jsonl").exists(), "no manifest of a batch that did not end"


def test_a_table_changed_while_deferred_is_refused(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = rows(simulator, 3)
    ctx = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        batch(table, tmp_path, deferrable=True).execute(ctx)
    kwargs = deferred.value.trigger.serialize()[1]
    changed = batch(table[:2], tmp_path, deferrable=True)
    event = {"status": "batch", "batch": kwargs["batch"], "ended": {}, "deadline": kwargs["deadline"], "capacity": None}
    with pytest.raises(Ltx2ValidationError, match="the table changed while the batch waited"):
        changed.resume_batch(ctx, event)


# ------------------------------------------------------------------------------------ seen and kept


def test_private_images_stay_uris_everywhere(
    simulator: SimulatorProcess, bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import S3_BUCKET

    bucket.put_object(Bucket=S3_BUCKET, Key="images/boat.jpg", Body=JPEG)
    table = [{"id": "boat", "image_url": f"s3://{S3_BUCKET}/images/boat.jpg", "prompt": "drift"}]
    log = recorded(monkeypatch)
    batch(table, tmp_path, image_conn_id="ltx2_s3").execute(task_context())
    written = (tmp_path / "manifest.jsonl").read_text() + (tmp_path / "boat.mp4.json").read_text()
    assert f"s3://{S3_BUCKET}/images/boat.jpg" in written
    for text in (written, "\n".join(log.messages())):
        assert "Signature" not in text and "X-Amz" not in text and KEY not in text


def test_the_trigger_round_trips_and_a_connection_without_key_fails_the_batch(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = task_context()
    operator = batch(rows(simulator, 2), tmp_path, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "airflow_provider_ltx2.triggers.ltx2.Ltx2BatchTrigger"
    assert Ltx2BatchTrigger(**kwargs).serialize() == (classpath, kwargs) and KEY not in json.dumps(kwargs)

    import asyncio

    keyless = {"conn_type": "ltx2", "host": simulator.base_url}
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", json.dumps(keyless))

    async def first_event() -> dict[str, Any]:
        async for event in Ltx2BatchTrigger(**kwargs).run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["status"] == "error"
    with pytest.raises(Ltx2AuthError):
        operator.resume_batch(ctx, event)


def test_malformed_progress_is_refused() -> None:
    with pytest.raises(Ltx2Error, match="Malformed LTX-2 batch progress"):
        BatchProgress.from_dict({"version": 1, "table": "x", "started_at": "now", "total": "many"})


@pytest.mark.parametrize(("paid", "paid_when_reserved"), [(2, 3), (2, -1), (2, "1"), (2, True)])
def test_progress_whose_reservation_could_hide_spend_is_refused(paid: int, paid_when_reserved: Any) -> None:
    """Settling pays ``paid - paid_when_reserved``: a damaged count must fail the task, not write a record no
    listing would count."""
    saved = BatchProgress("digest", "token", "2026-12-07T00:00:00+00:00", total=5, estimated=5, paid=paid).to_dict()
    with pytest.raises(Ltx2Error, match=r"Malformed LTX-2 batch progress.*paid_when_reserved"):
        BatchProgress.from_dict({**saved, "paid_when_reserved": paid_when_reserved})


def test_progress_is_logged_at_most_once_a_minute(simulator: SimulatorProcess, tmp_path: Path) -> None:
    from airflow_provider_ltx2.batches.progress import BatchRecord
    from airflow_provider_ltx2.batches.run import BatchRun, BatchSettings
    from airflow_provider_ltx2.batches.table import check_table

    table = check_table(rows(simulator, 20), {}, f"file://{tmp_path}")
    settings = BatchSettings(None, None, 3600, True, True, 2, 0, 1.0)
    progress = BatchProgress(table.digest, "t", "2026-01-01T00:00:00+00:00", 20, 20, cursor=14, paid=14, generated=10)
    log = RecordingLog()
    run_ = BatchRun(None, table, settings, progress, BatchRecord(None), log)  # type: ignore[arg-type]
    run_.report()
    run_.report()
    assert log.messages() == [], "the first line comes a minute in"
    progress.logged_at = (progress.logged_at or 0) - 61
    run_.report()
    run_.report()
    [line] = log.messages()
    assert "10/20 rows done (10 generated, 0 reused, 0 failed), 0 running, USD 8.40 spent" in line
    assert "min left at the current pace" in line


def test_lineage_comes_from_the_finished_operator(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table_file = tmp_path / "table.jsonl"
    table_file.write_text("\n".join(json.dumps(row) for row in rows(simulator, 2)))
    operator = batch(f"file://{table_file}", tmp_path / "out")
    operator.execute(task_context())
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(dataset.namespace, dataset.name) for dataset in lineage.inputs] == [("file", str(table_file))]
    [output] = lineage.outputs
    assert output.name == str(tmp_path / "out") and output.outputFacets["outputStatistics"].rowCount == 2
    facet = lineage.run_facets["ltx2_batch"]
    assert (facet.generated, facet.costUsd, facet.total) == (2, 1.2, 2)
    assert KEY not in repr(lineage)


def test_a_killed_writers_leftovers_are_cleared_once_and_only_the_batchs_own(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    tmp_path.mkdir(exist_ok=True)
    ours = tmp_path / ".sku-0.mp4.0123456789ab.part"
    theirs = tmp_path / ".another-task.mp4.0123456789ab.part"
    for leftover in (ours, theirs):
        leftover.write_bytes(b"half a video")
    run(batch(rows(simulator, 3), tmp_path, max_concurrent_jobs=1))
    assert not ours.exists() and theirs.exists(), "another task writing into the folder keeps its own"
    assert sorted(path.name for path in tmp_path.glob(".*")) == [theirs.name]


def test_an_image_the_worker_cannot_read_is_tried_once_for_all_its_rows(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_image=False: the image only the gateway can reach is known by its URL, after one try to read it."""
    log = recorded(monkeypatch)
    table = rows(simulator, 3)
    for row in table:
        row["image_url"] = f"{simulator.base_url}/files/only-the-gateway-sees.jpg"
    result = run(batch(table, tmp_path, check_image=False))
    assert result["generated"] == 3
    assert simulator.stats()["downloads"] == 1 + 3, "one read of the image, then the three videos"
    assert len([line for line in log.messages("warning") if "cannot be read from this worker" in line]) == 1


def test_a_batch_job_is_logged_with_its_age_since_its_submit(
    simulator: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the batch has learnt how long jobs take, it polls a job first when it should be done: its log says how
    old the job is then (a 3 s job is not "succeeded after 0s")."""
    simulator.configure(queue_seconds=0.5, processing_seconds=2.5)
    log = recorded(monkeypatch)

    run(batch(rows(simulator, 3), tmp_path, max_concurrent_jobs=1))

    ages = [
        int(line.rsplit(" after ", 1)[1].rstrip("s")) for line in log.messages("info") if " is succeeded after " in line
    ]
    assert len(ages) == 3 and min(ages) >= 2, ages
