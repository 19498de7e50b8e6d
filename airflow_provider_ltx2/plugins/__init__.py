"""The Airflow UI plugin of the provider (entry point ``airflow.plugins``: ``ltx2``)."""
