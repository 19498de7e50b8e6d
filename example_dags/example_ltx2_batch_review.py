"""Spend approval for a batch: price the table, let a person approve the estimate, only then pay.

``price_batch`` is the batch with ``dry_run=True``: it checks every row, looks up the videos an earlier run
already made under the output prefix, prices the rest and writes the plan to ``manifest.jsonl`` (``planned``
and ``reused`` rows), paying nothing. ``approve_spend`` is a human-in-the-loop task (Airflow 3.1+): its page
in the Airflow UI ("Required actions") shows the row count, the rows to generate, the rows reused and the
estimate in USD, read from the dry run's return value; it can also be answered through the REST API
(``PATCH .../taskInstances/approve_spend/-1/hitlDetails`` with ``{"chosen_options": ["Approve"]}``).
"Reject" skips the rest. On "Approve", ``generate_batch`` runs the same table into the same prefix with the
approved estimate as its ``max_cost_usd``: should the table need more than was approved (an earlier video
deleted meanwhile), it refuses before paying. ``report`` says where the manifest is and what was made.

The table is ``data/products.csv``, with the batch operator's columns (``id``, ``image_url``, ``prompt``,
``duration``, ``aspect_ratio``, ``generate_audio``); its cells are text ("6", "true"), and an empty cell
takes the operator's default. An image is a full URL or object-storage URI, or a bare name under
``IMAGE_BASE_URL``, which ``read_table`` resolves. A table whose images are all full URIs needs no
``read_table``: pass the file's URI (``s3://bucket/products.csv``) as ``requests``.

As the output prefix does not change from run to run, a second run reuses every video: its dry run
plans nothing to generate, with an estimate of USD 0.00.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowOptionalProviderFeatureException, task

from airflow_provider_ltx2.operators.batch import Ltx2GenerateVideoBatchOperator

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
except (ImportError, AirflowOptionalProviderFeatureException):
    # Human-in-the-loop operators need Airflow 3.1+ (and a standard provider that has them): on older
    # Airflow this file defines no DAG, so the dags folder still imports cleanly.
    ApprovalOperator = None

OUTPUT_DIR = os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", "/tmp/ltx2-videos")
IMAGE_BASE_URL = os.environ.get("LTX2_EXAMPLE_IMAGE_BASE_URL", "http://127.0.0.1:8089/files/")
IMAGE_CONN_ID = os.environ.get("LTX2_EXAMPLE_IMAGE_CONN_ID")  # the store of object-storage images, e.g. aws_default
# The tests run this DAG both ways; in your own DAGs just write deferrable=True.
DEFERRABLE = os.environ.get("LTX2_EXAMPLE_DEFERRABLE", "true").lower() != "false"
POLL_INTERVAL = float(os.environ.get("LTX2_EXAMPLE_POLL_INTERVAL", "10"))
PRODUCTS_CSV = Path(__file__).parent / "data" / "products.csv"
# One folder for the table, not one per run: a video made once is reused, not paid for again.
OUTPUT_PREFIX = f"file://{OUTPUT_DIR}/batch_review/products"
PRICE_TASK = "price_batch"

APPROVAL_SUBJECT = (
    "{% set plan = ti.xcom_pull(task_ids='" + PRICE_TASK + "') %}"
    "Spend USD {{ '%.2f' | format(plan.estimated_cost_usd) }} on {{ plan.planned }} LTX-2 videos?"
)
APPROVAL_BODY = (
    "{% set plan = ti.xcom_pull(task_ids='" + PRICE_TASK + "') -%}\n"
    """The dry run priced the table of **{{ plan.total }} rows** and paid nothing:

- **{{ plan.planned }}** rows to generate, at a charge
- **{{ plan.reused }}** rows reused from earlier runs, free
- estimate: **USD {{ '%.2f' | format(plan.estimated_cost_usd) }}**

The plan, row by row, is in `{{ plan.manifest_uri }}`. "Approve" generates the videos into
`{{ plan.output_prefix }}`, refusing to spend more than this estimate; "Reject" stops here."""
)


def full_image_url(image: str) -> str:
    """A URL or object-storage URI as it is; a bare name under IMAGE_BASE_URL."""
    return image if "://" in image else IMAGE_BASE_URL + image


if ApprovalOperator is not None:
    with DAG(
        dag_id="example_ltx2_batch_review",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["ltx2", "example"],
    ):

        @task
        def read_table() -> list[dict[str, Any]]:
            """The CSV's rows as the batch's requests, with images given by name under IMAGE_BASE_URL.

            Cells stay text: the batch converts "6" and "true", and takes its default for an empty cell.
            """
            with PRODUCTS_CSV.open(newline="") as rows:
                return [row | {"image_url": full_image_url(row["image_url"])} for row in csv.DictReader(rows)]

        table = read_table()
        batch = {
            "requests": table,
            "output_prefix": OUTPUT_PREFIX,
            # Defaults for the rows that leave these cells empty.
            "duration": 6,
            "aspect_ratio": "16:9",
            "image_conn_id": IMAGE_CONN_ID,
            # The rows come through XCom, so they are data: private images only from the folder named here.
            "allowed_image_prefixes": None if IMAGE_BASE_URL.startswith("http") else IMAGE_BASE_URL,
            # The gateway runs 2 generations at a time per key; more would wait for room.
            "max_concurrent_jobs": 2,
            "deferrable": DEFERRABLE,
            "poll_interval": POLL_INTERVAL,
        }

        price = Ltx2GenerateVideoBatchOperator(task_id=PRICE_TASK, dry_run=True, **batch)

        approve = ApprovalOperator(task_id="approve_spend", subject=APPROVAL_SUBJECT, body=APPROVAL_BODY)

        generate = Ltx2GenerateVideoBatchOperator(
            task_id="generate_batch",
            # The approved estimate is the budget: a table that now needs more is refused before paying.
            max_cost_usd="{{ ti.xcom_pull(task_ids='" + PRICE_TASK + "')['estimated_cost_usd'] }}",
            **batch,
        )

        @task
        def report(result: dict[str, Any]) -> str:
            """Where the manifest is, and what the batch made and spent."""
            print(
                f"Manifest of {result['total']} rows at {result['manifest_uri']}: {result['generated']} generated, "
                f"{result['reused']} reused, {result['failed']} failed; USD {result['cost_usd']:.2f} spent "
                f"(estimate USD {result['estimated_cost_usd']:.2f})."
            )
            return str(result["manifest_uri"])

        price >> approve >> generate
        report(generate.output)
