"""The operators' path in 0.3 and earlier: DAG files (and DAGs serialised by Airflow) name it, so it stays.

A new DAG file imports from ``operators.video`` or ``operators.batch`` and pays for that module alone.
"""

from airflow_provider_ltx2.operators.batch import Ltx2GenerateVideoBatchOperator
from airflow_provider_ltx2.operators.video import Ltx2GenerateVideoOperator

__all__ = ["Ltx2GenerateVideoBatchOperator", "Ltx2GenerateVideoOperator"]
