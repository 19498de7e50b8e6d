"""The spend guard in a real deployment: eight mapped generations on a key whose daily cap fits three videos.

The tasks run two at a time (the LocalExecutor's two slots), each reserving one video in the ledger (a local
folder) before its submit and settling right after it. At most three may pay; the rest fail with
``Ltx2BudgetExceeded`` before paying, saying so in XCom ``ltx2_failure`` and in their log. The simulator's count of
paid jobs and the ledger must agree, and the ledger must end with no open reservation and no key in any record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from tests.e2e.deployment import E2E_KEY, Deployment, plain, wait_for

pytestmark = pytest.mark.timeout(420)

DAG_ID = "e2e_ltx2_spend_guard"
TASK = "generate_video"
CONN_ID = "ltx2_capped"
VIDEOS = 8  # the DAG's mapped generations
CAP_VIDEOS = 3
CAP_USD = round(CAP_VIDEOS * PRICE_PER_VIDEO_USD, 2)
REFUSAL = f"over the cap daily_budget_usd={CAP_USD:g} of connection '{CONN_ID}'. Nothing was paid."


@pytest.fixture
def ledger(e2e: Deployment) -> Iterator[Path]:
    """A fresh ledger folder, and the connection ``ltx2_capped`` to the simulator that caps spend into it."""
    folder = e2e.root / f"spend-ledger-{uuid.uuid4().hex[:8]}"
    extra = {"daily_budget_usd": CAP_USD, "spend_ledger_uri": f"file://{folder}"}
    e2e.airflow("connections", "delete", CONN_ID, check=False)
    e2e.add_ltx2_connection(CONN_ID, extra)
    yield folder
    e2e.airflow("connections", "delete", CONN_ID, check=False)


def dag_ready(e2e: Deployment) -> bool:
    """The dag-processor has parsed the DAG (the deployment waits only for the DAGs it lists itself)."""
    reply = e2e.api("GET", f"/dags/{DAG_ID}", check=False)
    return reply.status_code == 200 and not reply.json()["is_paused"]


def failure_message(e2e: Deployment, run_id: str, map_index: int) -> str:
    reply = e2e.api(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}/xcomEntries/ltx2_failure",
        params={"map_index": map_index},
    )
    value = reply.json()["value"]
    return str(plain(json.loads(value) if isinstance(value, str) and value.startswith('"') else value))


def test_a_daily_cap_stops_the_tasks_it_does_not_fit_before_they_pay(e2e: Deployment, ledger: Path) -> None:
    from airflow_provider_ltx2.spend import VIDEO_CENTS, Ledger, RecordName

    assert e2e.sim is not None
    e2e.sim.configure(queue_seconds=1, processing_seconds=2)
    wait_for(f"DAG {DAG_ID} to be parsed", lambda: dag_ready(e2e), timeout=240)
    run_id = e2e.trigger(DAG_ID)
    states = e2e.wait_for_runs([(DAG_ID, run_id)], timeout=300)
    assert states == {(DAG_ID, run_id): "failed"}, "the refused tasks failed the run"

    tis = sorted(
        (ti for ti in e2e.task_instances(DAG_ID, run_id) if ti["task_id"] == TASK), key=lambda ti: ti["map_index"]
    )
    assert [ti["map_index"] for ti in tis] == list(range(VIDEOS))
    assert {ti["try_number"] for ti in tis} == {1}, "retries=0: one try each"
    paid = [ti["map_index"] for ti in tis if ti["state"] == "success"]
    refused = [ti["map_index"] for ti in tis if ti["state"] == "failed"]
    assert sorted(paid + refused) == list(range(VIDEOS)), [(ti["map_index"], ti["state"]) for ti in tis]
    jobs = int(e2e.sim.stats()["jobs"])
    assert 1 <= jobs == len(paid) <= CAP_VIDEOS, f"paid jobs {jobs}, tasks that succeeded {paid}"
    for map_index in refused:
        log = e2e.task_log(DAG_ID, run_id, TASK, 1, map_index)
        assert "Ltx2BudgetExceeded" in log, f"task {map_index}: {log[-3000:]}"
        message = failure_message(e2e, run_id, map_index)
        assert message.startswith("The LTX-2 key's spend today (UTC) is USD ") and message.endswith(REFUSAL), message

    files = sorted(path for path in ledger.rglob("*") if path.is_file())
    records = [RecordName.parse(path.relative_to(ledger).as_posix()) for path in files]
    assert None not in records, f"only records in the ledger: {files}"
    assert [record for record in records if record and not record.settled] == [], "no reservation left open"
    assert len(records) == jobs, "one settled record per paid job"
    spend = {day: Ledger(f"file://{ledger}", None).spend(day) for day in {r.day for r in records if r}}
    assert sum(found.today for found in spend.values()) == jobs * VIDEO_CENTS <= CAP_VIDEOS * VIDEO_CENTS
    assert {r.dag_id for r in records if r} == {DAG_ID}
    bodies = [json.loads(path.read_text()) for path in files]
    assert sorted(body["map_index"] for body in bodies) == paid, "each record names the task that paid"
    assert not [path for path in files if E2E_KEY in path.read_text()], "no key in any record"
    print(f"paid {jobs} of {VIDEOS} (cap {CAP_VIDEOS}): tasks {paid}; refused {refused}")
