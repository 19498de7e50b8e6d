"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Kept free of imports so Airflow can list the provider and draw the connection form cheaply.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_ltx2 import __version__

DEFAULT_BASE_URL = "https://gateway.pixazo.ai"

# How the connection form looks: the key goes in the (masked) password field, the host is optional.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port", "extra"],
    "relabeling": {"password": "Subscription key", "host": "Gateway base URL"},
    "placeholders": {
        "password": "Ocp-Apim-Subscription-Key value",
        "host": DEFAULT_BASE_URL,
    },
}

# Labelled fields for the network and spend extras (Airflow 3.2+ draws them from here; stored in the extras).
CONN_FIELDS: dict[str, Any] = {
    "verify": {
        "label": "TLS verification",
        "description": "true (default), false (not recommended), or the path of a CA bundle, e.g. a corporate CA.",
        "schema": {"type": ["string", "null"]},
    },
    "proxies": {
        "label": "Proxies",
        "description": 'One proxy URL for both schemes, or JSON such as {"https": "http://proxy:3128"}. '
        "Empty: HTTPS_PROXY / HTTP_PROXY / NO_PROXY apply.",
        "schema": {"type": ["string", "null"]},
    },
    "cert": {
        "label": "Client certificate",
        "description": "Path of a PEM client certificate, or 'cert.pem,key.pem'.",
        "schema": {"type": ["string", "null"]},
    },
    # The spend guard: caps on what every task paying with this key spends, kept in a ledger folder.
    "daily_budget_usd": {
        "label": "Daily budget (USD)",
        "description": "Cap on the key's spend per UTC day, across all DAGs and runs. Empty: no daily cap. "
        "Needs a spend ledger.",
        "schema": {"type": ["string", "null"]},
    },
    "monthly_budget_usd": {
        "label": "Monthly budget (USD)",
        "description": "Cap on the key's spend per calendar month (UTC). Empty: no monthly cap. Needs a spend ledger.",
        "schema": {"type": ["string", "null"]},
    },
    "spend_ledger_uri": {
        "label": "Spend ledger folder",
        "description": "Folder in any object store where every task records what it reserves and spends, "
        "e.g. s3://bucket/ltx2-spend/. Required with a budget; one folder per key.",
        "schema": {"type": ["string", "null"]},
    },
    "spend_ledger_conn_id": {
        "label": "Spend ledger connection",
        "description": "Connection of the ledger's object store (e.g. aws_default). Empty: the store's default.",
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-ltx2",
        "name": "LTX-2 video",
        "description": "Generate videos with Lightricks' LTX-2 image-to-video model through the Pixazo gateway.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "LTX-2",
                "external-doc-url": "https://www.pixazo.ai/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "LTX-2", "python-modules": ["airflow_provider_ltx2.hooks.ltx2"]}],
        "operators": [
            {
                "integration-name": "LTX-2",
                "python-modules": ["airflow_provider_ltx2.operators.video", "airflow_provider_ltx2.operators.batch"],
            }
        ],
        "sensors": [{"integration-name": "LTX-2", "python-modules": ["airflow_provider_ltx2.sensors.ltx2"]}],
        "triggers": [{"integration-name": "LTX-2", "python-modules": ["airflow_provider_ltx2.triggers.ltx2"]}],
        "connection-types": [
            {
                "connection-type": "ltx2",
                "hook-class-name": "airflow_provider_ltx2.hooks.ltx2.Ltx2Hook",
                "hook-name": "LTX-2 (Pixazo gateway)",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
        "extra-links": ["airflow_provider_ltx2.links.Ltx2VideoLink", "airflow_provider_ltx2.links.Ltx2BatchLink"],
        "task-decorators": [
            {"class-name": "airflow_provider_ltx2.decorators.ltx2.ltx2_video_task", "name": "ltx2_video"}
        ],
    }
