"""Benchmarks of the provider against its simulator: ``scripts/bench.sh`` (``python -m bench``).

One module per table: ``triggers`` (pollers at scale), ``parse`` (DAG-parse import cost), ``download``
(streaming a large result), ``latency`` (job done -> task success) and ``batches`` (deferrable batches at
the gateway's concurrency limits). Each measurement that needs Airflow runs in a fresh subprocess of its
module, so tables and sizes never share a process. A run of some tables (``--only``) replaces those in
RESULTS.md and keeps the others.
"""
