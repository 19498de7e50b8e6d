"""The spend guard's parts: record names, the tally, the refusal, the caps read from the connection, and the
guard itself on a ledger in a local folder (reserve, refuse, settle, release)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ltx2 import metrics, spend
from airflow_provider_ltx2.api.connection import SpendCaps, spend_caps_from_extra
from airflow_provider_ltx2.exceptions import Ltx2BudgetExceeded, Ltx2SubmitUnconfirmed, Ltx2ValidationError
from airflow_provider_ltx2.spend import Ledger, RecordName, Reservation, SpendGuard, TaskIdentity, refusal, tally
from tests.fakes import RecordingLog

DAY = "2026-12-07"
UID = "0123456789abcdef0123456789abcdef"
TASK = TaskIdentity("videos", "manual__2026-12-07T00:00:00+00:00", "generate", 3, 2)


def record(day: str = DAY, dag_id: str = "videos", uid: str = UID, **amounts: Any) -> RecordName:
    return RecordName(day=day, dag_id=dag_id, uid=uid, **{"reserved": 60, **amounts})


def guard(tmp_path: Path, **caps: Any) -> SpendGuard:
    return SpendGuard(SpendCaps(ledger_uri=f"file://{tmp_path}/ledger", **caps), "ltx2_default", TASK, RecordingLog())


def files(tmp_path: Path) -> list[Path]:
    return sorted(path for path in (tmp_path / "ledger").rglob("*") if path.is_file())


# ------------------------------------------------------------------------------------ names and the tally


@pytest.mark.parametrize("dag_id", ["videos", "team.videos", "..", ".", "a/b", "<script>x</script>", "ünï"])
def test_a_record_name_round_trips_and_keeps_its_dag_in_one_folder(dag_id: str) -> None:
    named = record(dag_id=dag_id, spent=120, settled=True)
    path = named.relative
    assert path.split("/")[:2] == ["2026-12", DAY] and len(path.split("/")) == 4
    assert path.split("/")[2] not in (".", "..")
    assert RecordName.parse(path) == named


@pytest.mark.parametrize(
    "path",
    [
        f"2026-11/{DAY}/videos/{UID}_r60_s0_open.json",  # the day is not in the month's folder
        f"2026-12/{DAY}/{UID}_r60_s0_open.json",  # no DAG folder
        f"2026-12/{DAY}/videos/extra/{UID}_r60_s0_open.json",
        f"2026-12/{DAY}/videos/{UID}_r60_s0_open.json.part",
        f"2026-12/{DAY}/videos/{UID}_r-60_s0_open.json",
        f"2026-12/{DAY}/videos/{UID}_r60_s0_maybe.json",
        f"2026-12/{DAY}/videos/notes.txt",
        "2026-12/2026-12-7/videos/{UID}_r60_s0_open.json",
    ],
)
def test_anything_but_a_record_is_no_spend(path: str) -> None:
    assert RecordName.parse(path) is None
    assert tally([path], DAY).month == 0


def test_the_tally_counts_settled_records_as_paid_and_open_ones_whole() -> None:
    paths = [
        record(uid="a" * 32, reserved=300, spent=120, settled=True).relative,  # a batch that paid 2 of 5
        record(uid="b" * 32, reserved=60).relative,  # open: counts its reservation
        record(uid="c" * 32, day="2026-12-01", dag_id="other", reserved=60, spent=60, settled=True).relative,
        record(uid="d" * 32, day="2026-11-30", reserved=600).relative,  # last month
        record(uid="e" * 32, reserved=0, spent=0, settled=True).relative,
    ]
    found = tally(paths, DAY)
    assert (found.today, found.month) == (180, 240)
    assert (found.today_open, found.month_open) == (60, 60), "what running tasks hold, apart"
    assert found.today_by_dag == {"videos": 180}
    assert found.month_by_dag == {"videos": 180, "other": 60}


def test_a_record_seen_open_and_settled_in_one_listing_counts_once_settled() -> None:
    opened = record(reserved=600)
    settled = record(reserved=600, spent=120, settled=True)
    assert tally([opened.relative, settled.relative], DAY).today == 120
    assert tally([settled.relative, opened.relative], DAY).today == 120


def test_a_refusal_names_the_spend_so_far_the_reservation_and_the_cap() -> None:
    found = spend.Spend(DAY, today=300, month=900)
    caps = SpendCaps(daily_usd=2.5, monthly_usd=100, ledger_uri="file:///l")
    message = refusal(found, 60, caps, "ltx2_default")
    assert message is not None
    assert "today" in message and "USD 2.40" in message and "USD 0.60" in message and "USD 3.00" in message
    assert "daily_budget_usd=2.5" in message and "'ltx2_default'" in message and "Nothing was paid" in message
    monthly = refusal(found, 60, SpendCaps(monthly_usd=8.5, ledger_uri="file:///l"), "c")
    assert monthly is not None and "this month" in monthly and "USD 8.40" in monthly and "monthly_budget_usd" in monthly
    assert refusal(found, 60, SpendCaps(daily_usd=3, ledger_uri="file:///l"), "c") is None, "exactly at the cap fits"
    assert refusal(found, 60, SpendCaps(ledger_uri="file:///l"), "c") is None


# ------------------------------------------------------------------------------------ the caps in the connection


def test_caps_come_from_the_extras_as_json_or_as_the_forms_text() -> None:
    caps = spend_caps_from_extra(
        "c",
        {
            "daily_budget_usd": "12.5",
            "monthly_budget_usd": 200,
            "spend_ledger_uri": " s3://b/ledger/ ",
            "spend_ledger_conn_id": "aws_ledger",
        },
    )
    assert caps == SpendCaps(12.5, 200.0, "s3://b/ledger", "aws_ledger") and caps.capped
    assert spend_caps_from_extra("c", {"extra__ltx2__daily_budget_usd": "3", "spend_ledger_uri": "file:///l"}).capped
    assert spend_caps_from_extra("c", {"daily_budget_usd": "", "spend_ledger_uri": ""}) == SpendCaps()
    azure = "abfs://ledgers@account.dfs.core.windows.net/ltx2-spend"  # its user part names the container
    assert spend_caps_from_extra("c", {"spend_ledger_uri": azure}).ledger_uri == azure
    uncapped = spend_caps_from_extra("c", {"spend_ledger_uri": "file:///l"})
    assert not uncapped.capped and uncapped.ledger_uri == "file:///l"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"daily_budget_usd": "ten", "spend_ledger_uri": "file:///l"}, "daily_budget_usd='ten'"),
        ({"monthly_budget_usd": -1, "spend_ledger_uri": "file:///l"}, "monthly_budget_usd=-1"),
        ({"daily_budget_usd": True, "spend_ledger_uri": "file:///l"}, "daily_budget_usd=True"),
        ({"daily_budget_usd": "inf", "spend_ledger_uri": "file:///l"}, "daily_budget_usd='inf'"),
        ({"spend_ledger_uri": "/data/ledger"}, "spend_ledger_uri='/data/ledger'"),
        ({"spend_ledger_uri": "s3://AKIA:secret@bucket/l"}, "spend_ledger_uri="),
        ({"spend_ledger_uri": "s3://b/l?x=1"}, "spend_ledger_uri="),
        ({"spend_ledger_uri": "s3://[bucket/l"}, "spend_ledger_uri='s3://[bucket/l'"),
        ({"spend_ledger_uri": "file:///"}, "spend_ledger_uri='file:///'"),
        ({"spend_ledger_uri": ["s3://b/l"]}, "spend_ledger_uri=['s3://b/l']"),
        ({"spend_ledger_uri": "file:///l", "spend_ledger_conn_id": 5}, "spend_ledger_conn_id=5"),
    ],
)
def test_a_spend_extra_that_cannot_work_is_named(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        spend_caps_from_extra("ltx2_default", extra)
    assert named in str(caught.value) and "accepted values are" in str(caught.value)


def test_a_ledger_uri_refused_for_its_credentials_is_named_without_them() -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        spend_caps_from_extra("c", {"spend_ledger_uri": "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/ltx2-spend"})
    assert "spend_ledger_uri='s3://***@bucket/ltx2-spend'" in str(caught.value)
    assert "AKIAEXAMPLE" not in str(caught.value) and "wJalrXUtnFEMI" not in str(caught.value)


@pytest.mark.parametrize("cap", ["daily_budget_usd", "monthly_budget_usd"])
def test_a_cap_without_a_ledger_names_spend_ledger_uri(cap: str) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        spend_caps_from_extra("ltx2_default", {cap: "5"})
    assert f"{cap}=5" in str(caught.value) and "without spend_ledger_uri" in str(caught.value)


# ------------------------------------------------------------------------------------ the guard on a local ledger


def test_a_reservation_is_written_before_the_listing_and_settled_to_what_was_paid(tmp_path: Path) -> None:
    guarding = guard(tmp_path, daily_usd=5)
    reservation = guarding.reserve(2)
    (opened,) = files(tmp_path)
    assert opened.name.endswith("_r120_s0_open.json")
    body = json.loads(opened.read_text())
    assert body["reserved_usd"] == 1.2 and body["state"] == "open"
    assert {name: body[name] for name in ("dag_id", "run_id", "task_id", "map_index", "try_number")} == vars(TASK)
    reservation.paid_for(1)
    reservation.settle()
    (settled,) = files(tmp_path)
    assert settled.name.endswith("_r120_s60_settled.json") and json.loads(settled.read_text())["spent_usd"] == 0.6
    assert Ledger(f"file://{tmp_path}/ledger", None).spend(settled.parent.parent.name).today == 60


def test_a_reservation_past_a_cap_is_refused_at_once_and_leaves_no_record(tmp_path: Path) -> None:
    guarding = guard(tmp_path, daily_usd=1.5)
    with guarding.reserved(2) as paying:
        paying.paid_for(2)
    with pytest.raises(Ltx2BudgetExceeded) as caught:
        guarding.reserve(1)
    assert (
        "USD 1.20" in str(caught.value)
        and "USD 0.60" in str(caught.value)
        and "daily_budget_usd=1.5" in str(caught.value)
    )
    assert len(files(tmp_path)) == 1, "the refused reservation's record is removed"
    assert not any("trying again" in line for line in guarding.log.messages()), "paid spend is not waited out"


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses a reservation takes before trying again, recorded instead of slept."""
    taken: list[float] = []
    monkeypatch.setattr(spend.time, "sleep", taken.append)
    return taken


def test_a_reservation_refused_only_for_open_ones_tries_again_a_few_times(tmp_path: Path, pauses: list[float]) -> None:
    guarding = guard(tmp_path, daily_usd=1.5)
    guarding.reserve(2)  # another task's, still running
    with pytest.raises(Ltx2BudgetExceeded, match=r"USD 1\.20"):
        guarding.reserve(1)
    assert len(pauses) == spend.RESERVE_ATTEMPTS - 1
    assert all(low <= pause <= high for pause, (low, high) in zip(pauses, pause_bounds(), strict=False))
    assert len(files(tmp_path)) == 1 and len(guarding.log.messages()) >= len(pauses)


def pause_bounds() -> list[tuple[float, float]]:
    low, high = spend.RACE_PAUSE_SECONDS
    return [(low * 2**tried, high * 2**tried) for tried in range(spend.RESERVE_ATTEMPTS - 1)]


def test_a_reservation_passes_once_the_racing_one_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guarding = guard(tmp_path, daily_usd=1.5)
    racing = guarding.reserve(2)  # a task that will refuse, or pay nothing, and remove its record

    def pause(seconds: float) -> None:
        racing.settle()  # nothing paid: the record goes

    monkeypatch.setattr(spend.time, "sleep", pause)
    guarding.reserve(1).settle()
    assert files(tmp_path) == [] and any("trying again" in line for line in guarding.log.messages())


def test_without_a_monthly_cap_only_the_days_folder_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []
    real = Ledger.listing
    monkeypatch.setattr(Ledger, "listing", lambda self, folder: listed.append(folder) or real(self, folder))
    guard(tmp_path, daily_usd=5).reserve(1)
    guard(tmp_path, daily_usd=5, monthly_usd=50).reserve(1)
    day = files(tmp_path)[0].parent.parent.name
    assert listed == [f"{day[:7]}/{day}", day[:7]]


def test_nothing_to_pay_or_no_ledger_writes_nothing(tmp_path: Path) -> None:
    guard(tmp_path, daily_usd=1).reserve(0).settle()
    SpendGuard(SpendCaps(), "c", TASK, RecordingLog()).reserve(3).settle()
    assert not (tmp_path / "ledger").exists()


def test_a_ledger_without_a_cap_records_spend_and_refuses_nothing(tmp_path: Path) -> None:
    guarding = guard(tmp_path)
    for _ in range(3):
        guarding.reserve(100).settle()  # nothing paid: released
    with guarding.reserved(1) as reservation:
        reservation.paid_for(1)
    (settled,) = files(tmp_path)
    assert settled.name.endswith("_r60_s60_settled.json")


class Refused(Exception):
    pass


@pytest.mark.parametrize(
    ("raised", "left"),
    [(Refused, []), (Ltx2SubmitUnconfirmed, ["_r60_s60_settled.json"])],
    ids=["failed before paying: released", "may have been charged: counted as paid"],
)
def test_a_reserved_block_settles_however_it_ends(tmp_path: Path, raised: type[Exception], left: list[str]) -> None:
    with pytest.raises(raised), guard(tmp_path, daily_usd=5).reserved(1):
        raise raised("stopped")
    assert [path.name[32:] for path in files(tmp_path)] == left


def test_a_ledger_that_cannot_be_written_when_settling_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: Ledger, record: RecordName, body: Any) -> None:
        raise PermissionError("read-only")

    guarding = guard(tmp_path, daily_usd=5)
    with guarding.reserved(1) as reservation:
        reservation.paid_for(1)
        monkeypatch.setattr(Ledger, "write", refused)  # the store turns read-only while the task pays
    assert any("Could not settle the spend record" in line for line in guarding.log.messages())
    (opened,) = files(tmp_path)
    assert opened.name.endswith("_r60_s0_open.json"), "the open record keeps counting its whole reservation"


def test_a_ledger_that_cannot_be_listed_refuses_and_leaves_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(self: Ledger, month: str) -> list[str]:
        raise OSError("the store is down")

    monkeypatch.setattr(Ledger, "listing", unreachable)
    with pytest.raises(OSError, match="down"):
        guard(tmp_path, daily_usd=5).reserve(1)
    assert files(tmp_path) == []


def test_each_reservation_reports_the_days_spend_as_a_gauge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[tuple[str, float]] = []
    monkeypatch.setattr(metrics, "gauge", lambda name, value: reported.append((name, value)))
    guarding = guard(tmp_path, monthly_usd=50)
    guarding.reserve(1)
    guarding.reserve(2)
    assert reported == [("ltx2.spend_usd", 0.6), ("ltx2.spend_usd", 1.8)]


def test_a_kept_reservation_settles_once_in_the_ledger_it_was_written_to(tmp_path: Path) -> None:
    kept = guard(tmp_path, daily_usd=5).reserve(5).to_dict()
    assert kept is not None and json.loads(json.dumps(kept)) == kept, "plain JSON: it rides in the batch's progress"
    # The connection names another ledger by the time the batch ends: the record is settled where it is.
    moved = SpendGuard(SpendCaps(ledger_uri=f"file://{tmp_path}/elsewhere", daily_usd=5), "c", TASK, RecordingLog())
    resumed = Reservation.from_dict(kept)
    resumed.paid_for(2)
    moved.settle(resumed)
    moved.settle(resumed)
    (settled,) = files(tmp_path)
    assert settled.name.endswith("_r300_s120_settled.json")
    assert json.loads(settled.read_text())["task_id"] == TASK.task_id
    assert not (tmp_path / "elsewhere").exists()


def test_a_reservation_is_never_paid_a_negative_amount(tmp_path: Path) -> None:
    reservation = guard(tmp_path, daily_usd=5).reserve(1)
    with pytest.raises(ValueError, match="videos=-1"):
        reservation.paid_for(-1)
    reservation.settle()
    assert files(tmp_path) == [], "nothing paid: released"


@pytest.mark.parametrize(
    "saved",
    [None, {}, {"record": "../../etc/passwd", "ledger_uri": "file:///l"}, {"record": f"2026-12/{DAY}/d/x.json"}],
)
def test_a_kept_reservation_that_is_not_one_settles_nothing(saved: Any) -> None:
    assert Reservation.from_dict(saved).record is None
