"""What the "LTX-2 spend" view shows (``airflow_provider_ltx2.plugins.spend`` and its template in ``pages``):
a month's ledger listing, tallied by the spend guard's own ``tally``, against the connection's caps.

The route, over a real ledger and Airflow's auth, is in tests/integration/plugins/test_spend_view.py.
"""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_ltx2.api.connection import SpendCaps
from airflow_provider_ltx2.plugins.pages import spend_page
from airflow_provider_ltx2.plugins.spend import DagRow, Period, spend_view
from airflow_provider_ltx2.spend import RecordName, Spend, tally
from tests.conftest import SPEND_EXTRAS

DAY = "2026-12-07"
LEDGER = "s3://ledger-bucket/ltx2-spend"
HOSTILE_DAG = '<script>alert("x")</script>'


def record(dag_id: str, cents: int, day: str = DAY, *, settled: bool = True) -> str:
    """A record's path in the ledger, as ``SpendGuard`` names it."""
    uid = uuid.uuid4().hex
    return RecordName(day, dag_id, uid, reserved=cents, spent=cents if settled else 0, settled=settled).relative


@pytest.fixture
def spend() -> Spend:
    """Three DAGs this month: two spent today, one only earlier; an open reservation counts whole."""
    return tally(
        [
            record("daily_ads", 600),
            record("daily_ads", 60, settled=False),
            record("daily_ads", 1200, day="2026-12-01"),
            record("trailers", 180),
            record("archive", 2400, day="2026-12-02"),
            record("archive", 999, day="2026-11-30"),  # last month: not this month's
        ],
        DAY,
    )


def test_rows_are_the_readable_dags_most_spent_first(spend: Spend) -> None:
    view = spend_view(spend, SpendCaps(ledger_uri=LEDGER), {"daily_ads", "trailers", "archive", "other"})
    assert view.rows == [DagRow("archive", 0, 2400), DagRow("daily_ads", 660, 1860), DagRow("trailers", 180, 180)]
    assert view.unreadable is None
    assert (view.today.spent, view.month.spent) == (840, 4440)
    assert view.today.label == "2026-12-07 (UTC)" and view.month.label == "2026-12"


def test_dags_the_user_may_not_read_are_one_sum(spend: Spend) -> None:
    view = spend_view(spend, SpendCaps(ledger_uri=LEDGER), {"trailers"})
    assert [row.dag_id for row in view.rows] == ["trailers"]
    assert view.unreadable == DagRow("", 660, 4260)
    # The totals are the key's: the rows and the sum add up to them.
    assert (view.today.spent, view.month.spent) == (840, 4440)


def test_no_readable_dag_shows_only_the_totals(spend: Spend) -> None:
    view = spend_view(spend, SpendCaps(ledger_uri=LEDGER), set())
    assert view.rows == [] and view.unreadable == DagRow("", 840, 4440)


@pytest.mark.parametrize(
    ("spent", "cap", "shown_cap", "left"),
    [
        (840, None, "no cap", None),
        (840, 10.0, "USD 10.00", "USD 1.60 left"),
        (1000, 10.0, "USD 10.00", "USD 0.00 left"),
        (1060, 10.0, "USD 10.00", "USD 0.60 over the cap"),  # an open reservation may pass it: it is refused
        (0, 0.0, "USD 0.00", "USD 0.00 left"),
        (444_000, 5000.5, "USD 5,000.50", "USD 560.50 left"),
    ],
)
def test_a_period_against_its_cap(spent: int, cap: float | None, shown_cap: str, left: str | None) -> None:
    period = Period("today", DAY, spent, cap)
    assert (period.cap_text, period.left_text) == (shown_cap, left)


def test_caps_go_to_their_periods(spend: Spend) -> None:
    view = spend_view(spend, SpendCaps(daily_usd=20, monthly_usd=None, ledger_uri=LEDGER), {"trailers"})
    assert (view.today.cap_text, view.month.cap_text) == ("USD 20.00", "no cap")
    assert view.today.spent_text == "USD 8.40" and view.month.spent_text == "USD 44.40"


def test_empty_month_has_no_rows() -> None:
    view = spend_view(Spend(DAY), SpendCaps(ledger_uri=LEDGER), {"trailers"})
    assert view.rows == [] and view.unreadable is None
    assert 'data-status="no-spend"' in spend_page("ltx2_default", view)


def test_page_shows_the_figures_and_escapes_dag_ids() -> None:
    spend = tally([record(HOSTILE_DAG, 60), record("trailers", 120)], DAY)
    page = spend_page("ltx2_default", spend_view(spend, SpendCaps(daily_usd=5, ledger_uri=LEDGER), {HOSTILE_DAG}))
    assert "<script" not in page
    assert '<tr data-dag="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;">' in page
    assert '<td data-field="spent">USD 1.80</td><td data-field="cap">USD 5.00</td>' in page
    assert '<td data-field="left">USD 3.20 left</td>' in page
    assert "no cap" in page and f'data-field="ledger_uri">{LEDGER}<' in page
    assert "DAGs you may not read" in page  # the trailers' USD 1.20


def test_page_without_a_ledger_says_how_to_set_one() -> None:
    page = spend_page("ltx2_default", status="no-ledger")
    assert 'data-status="no-ledger"' in page
    assert all(f"<code>{extra}</code>" in page for extra in SPEND_EXTRAS)


def test_page_of_a_problem_shows_its_message_escaped() -> None:
    page = spend_page("ltx2_<b>", status="invalid", message="Connection 'x' has daily_budget_usd='<b>lots</b>'")
    assert 'data-status="invalid"' in page and "daily_budget_usd=&#39;&lt;b&gt;lots&lt;/b&gt;&#39;" in page
    assert "<b>" not in page
