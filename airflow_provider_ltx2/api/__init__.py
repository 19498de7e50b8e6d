"""The gateway's HTTP contract as pure functions, one module per subject.

``request`` (validation), ``calls`` (what is sent), ``replies`` (what an answer means), ``jobs`` (a
generation's id and status), ``retries`` (the retry policy), ``connection`` (base URL, key, TLS, proxies),
``media`` (file signatures). The sync path (operator, sensor) and the async path (trigger) both use them.
The plain constants (paths, price, accepted values) are in ``airflow_provider_ltx2.contract``.
"""
