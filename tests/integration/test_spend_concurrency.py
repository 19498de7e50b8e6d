"""The spend guard's promise with real processes racing for the last of a cap, in a local folder and in S3.

Eight OS processes (the spawn context: each a fresh interpreter, as Airflow's task processes are) reserve one
video each at the same instant, released together by a barrier, against a daily cap that fits three. Whoever
passes pays (settles as spent). Write-then-read lets racers both refuse, never both pass: the total settled must
never pass the cap, whatever the interleaving, and no reservation may stay open. The race is run a few rounds in
each store, each round in a ledger folder of its own, so that it is a race and not one lucky ordering; the same
processes run every round (an interpreter that imports Airflow costs seconds of CPU).
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

import pytest

from tests.conftest import S3_BUCKET

pytestmark = pytest.mark.slow

CONN_ID = "ltx2_capped"
DAG_ID = "spend_race"
RACERS = 8
CAP_VIDEOS = 3
CAP_USD = 1.8  # three videos of USD 0.60
VIDEO_USD = 0.6
BARRIER_SECONDS = 120  # every racer's interpreter started and its stores' clients made
# Each racer starts at a random moment within the round's spread after the barrier: from all at once, where on S3
# every racer writes before any lists (and all would refuse, but for the guard trying again after a random pause
# when only open reservations stand in the way), to far enough apart that they pass one after another.
SPREADS = (0.0, 0.0, 0.2, 1.0)


class Round(NamedTuple):
    uri: str  # the round's own ledger folder
    conn_id: str | None  # its store's connection
    spread: float  # seconds


@dataclass(frozen=True)
class Outcome:
    """What one racer got in one round: ``paid``, ``refused`` (with the exception's type and message) or ``error``."""

    round: int
    index: int
    result: str
    error_type: str = ""
    message: str = ""
    warnings: tuple[str, ...] = ()


def racer(rounds: list[Round], index: int, barrier: Any, results: Any) -> None:
    """One task in its own process: in each round wait for every racer, then for a random part of the round's
    spread, reserve one video, and pay for it if it passed."""
    from airflow_provider_ltx2.api.connection import SpendCaps
    from airflow_provider_ltx2.exceptions import Ltx2BudgetExceeded
    from airflow_provider_ltx2.spend import Ledger, SpendGuard, TaskIdentity
    from tests.fakes import RecordingLog

    for made in {(uri.rsplit("/", 1)[0], conn_id) for uri, conn_id, _ in rounds}:
        Ledger(*made).listing("1999-01")  # each store's client is made now, not inside the race
    for number, (uri, conn_id, spread) in enumerate(rounds):
        log = RecordingLog()
        caps = SpendCaps(daily_usd=CAP_USD, ledger_uri=uri, ledger_conn_id=conn_id)
        guard = SpendGuard(caps, CONN_ID, TaskIdentity(DAG_ID, f"race_{number}", "generate_video", index, 1), log)
        try:
            barrier.wait(BARRIER_SECONDS)
            time.sleep(random.uniform(0, spread))
            with guard.reserved(1) as reservation:
                reservation.paid_for(1)
            outcome = Outcome(number, index, "paid")
        except Ltx2BudgetExceeded as refused:
            outcome = Outcome(number, index, "refused", type(refused).__name__, str(refused))
        except Exception as error:  # reported, so that the test fails naming it instead of waiting
            outcome = Outcome(number, index, "error", type(error).__name__, str(error))
        results.put(Outcome(**{**vars(outcome), "warnings": tuple(log.messages("warning"))}))


def race(rounds: list[Round]) -> list[Outcome]:
    """Run ``RACERS`` processes through ``rounds``; every racer's every outcome."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(RACERS), context.Queue()
    processes = [context.Process(target=racer, args=(rounds, index, barrier, results)) for index in range(RACERS)]
    for process in processes:
        process.start()
    outcomes: list[Outcome] = []
    try:
        while len(outcomes) < RACERS * len(rounds):
            try:
                outcomes.append(results.get(timeout=BARRIER_SECONDS + 60))
            except queue.Empty:
                pytest.fail(f"the racers stopped answering: {len(outcomes)} outcomes, exit codes {exits(processes)}")
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join(10)
    assert exits(processes) == [0] * RACERS
    return outcomes


def exits(processes: list[Any]) -> list[int | None]:
    return [process.exitcode for process in processes]


REFUSAL = re.compile(
    r"The LTX-2 key's spend today \(UTC\) is USD (?P<before>\d+\.\d\d), paid or reserved by running tasks; this "
    r"task's reservation of USD 0\.60 would bring it to USD (?P<after>\d+\.\d\d), over the cap "
    rf"daily_budget_usd=1\.8 of connection '{CONN_ID}'\. Nothing was paid\."
)


def assert_capped(outcomes: list[Outcome], rounds: list[Round]) -> list[int]:
    """Every round kept the promise; returns how many racers paid in each round."""
    from airflow_provider_ltx2.spend import VIDEO_CENTS, Ledger, RecordName

    month = datetime.now(timezone.utc).strftime("%Y-%m")  # of every record, unless the race crossed a month's end
    paid_per_round = []
    for number, (uri, conn_id, _) in enumerate(rounds):
        mine = sorted((o for o in outcomes if o.round == number), key=lambda o: o.index)
        assert [o.index for o in mine] == list(range(RACERS))
        assert [o for o in mine if o.result not in ("paid", "refused")] == [], "no racer met another error"
        assert [o.warnings for o in mine if o.warnings] == [], "every record was settled"
        for refused in (o for o in mine if o.result == "refused"):
            found = REFUSAL.fullmatch(refused.message)
            assert refused.error_type == "Ltx2BudgetExceeded" and found, refused.message
            assert float(found["after"]) == pytest.approx(float(found["before"]) + VIDEO_USD)
            assert float(found["after"]) > CAP_USD, "refused only over the cap"
        paid = {o.index for o in mine if o.result == "paid"}

        ledger = Ledger(uri, conn_id)
        paths = ledger.listing(month)
        records = [record for record in map(RecordName.parse, paths) if record is not None]
        assert len(records) == len(paths), f"the ledger holds records only: {paths}"
        assert [r for r in records if not r.settled] == [], "no reservation is left open"
        assert all(r.spent == r.reserved == VIDEO_CENTS for r in records), records
        assert len(records) == len(paid), f"round {number}: one settled record per racer that paid"
        spent = sum(ledger.spend(day).today for day in {r.day for r in records})
        assert spent == len(paid) * VIDEO_CENTS <= CAP_VIDEOS * VIDEO_CENTS, f"round {number}: paid {sorted(paid)}"
        paid_per_round.append(len(paid))
    return paid_per_round


def test_racing_processes_never_pass_the_cap_and_some_pass_in_every_round(bucket: Any, tmp_path: Any) -> None:
    """On S3 the racers started at once all write before any lists: without the guard's second tries none would
    pass. Write-then-read alone cannot promise that someone passes; the bounded tries make it the rule."""
    played = [
        *(Round(f"file://{tmp_path}/round-{number}", None, spread) for number, spread in enumerate(SPREADS)),
        *(Round(f"s3://{S3_BUCKET}/ledger/round-{number}", "ltx2_s3", spread) for number, spread in enumerate(SPREADS)),
    ]
    paid = assert_capped(race(played), played)
    print(f"paid per round (of {RACERS} racers, cap {CAP_VIDEOS}; local, then S3, spreads {list(SPREADS)} s): {paid}")
    assert all(count >= 1 for count in paid), "a cap that fits three is not left unused by racing tasks"
