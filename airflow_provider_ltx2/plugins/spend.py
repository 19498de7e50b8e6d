"""What the "LTX-2 spend" view shows of a key's spend: the ledger's totals against the connection's caps, and a
row per DAG the user may read.

Pure: the route lists the ledger (``spend.Ledger``) and asks Airflow which DAGs the user may read. The totals
are the key's, whoever spent it; the spend of DAGs the user may not read (or that Airflow no longer knows) is
shown as one sum, so that the rows add up to the totals without naming those DAGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_ltx2.spend import cents, usd

if TYPE_CHECKING:
    from collections.abc import Collection

    from airflow_provider_ltx2.api.connection import SpendCaps
    from airflow_provider_ltx2.spend import Spend


def money(amount_cents: int) -> str:
    return f"USD {usd(amount_cents):,.2f}"


def cap_text(cap_usd: float | None) -> str:
    return "no cap" if cap_usd is None else f"USD {cap_usd:,.2f}"


@dataclass(frozen=True)
class Period:
    """One period's spend against its cap (cents; the cap as the extra set it, in USD)."""

    name: str  # "today" or "this month"
    label: str  # the day or the month it covers
    spent: int
    cap_usd: float | None

    @property
    def spent_text(self) -> str:
        return money(self.spent)

    @property
    def cap_text(self) -> str:
        return cap_text(self.cap_usd)

    @property
    def left_text(self) -> str | None:
        """What the cap still allows, or by how much the spend is over it; None without a cap."""
        if self.cap_usd is None:
            return None
        left = cents(self.cap_usd) - self.spent
        return f"{money(left)} left" if left >= 0 else f"{money(-left)} over the cap"


@dataclass(frozen=True)
class DagRow:
    """One DAG's spend today and this month (cents)."""

    dag_id: str
    today: int
    month: int

    @property
    def today_text(self) -> str:
        return money(self.today)

    @property
    def month_text(self) -> str:
        return money(self.month)


@dataclass(frozen=True)
class SpendView:
    """The page's figures: both periods, the readable DAGs' rows (most spent first), and the rest as one sum."""

    ledger_uri: str
    today: Period
    month: Period
    rows: list[DagRow]
    unreadable: DagRow | None  # the DAGs the user may not read, summed; None when there are none


def spend_view(spend: Spend, caps: SpendCaps, readable_dag_ids: Collection[str]) -> SpendView:
    """The figures of ``spend`` (one listing of the month) for a user who may read ``readable_dag_ids``."""
    rows = [
        DagRow(dag_id, spend.today_by_dag.get(dag_id, 0), month)
        for dag_id, month in spend.month_by_dag.items()
        if dag_id in readable_dag_ids
    ]
    rows.sort(key=lambda row: (-row.month, -row.today, row.dag_id))
    hidden_today = spend.today - sum(row.today for row in rows)
    hidden_month = spend.month - sum(row.month for row in rows)
    return SpendView(
        ledger_uri=caps.ledger_uri or "",
        today=Period("today", f"{spend.day} (UTC)", spend.today, caps.daily_usd),
        month=Period("this month", spend.day[:7], spend.month, caps.monthly_usd),
        rows=rows,
        unreadable=DagRow("", hidden_today, hidden_month) if hidden_month or hidden_today else None,
    )
