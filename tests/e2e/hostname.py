"""``[core] hostname_callable`` of the e2e Celery workers: the name a task instance records as its host.

Both workers run on one machine, where every process would report the same host name; each worker is
started with its own name in ``LTX2_E2E_WORKER_HOSTNAME``, so a task's ``hostname`` tells which worker
ran it, as it would with a worker per machine.
"""

from __future__ import annotations

import os
import socket

WORKER_HOSTNAME_VARIABLE = "LTX2_E2E_WORKER_HOSTNAME"


def worker_hostname() -> str:
    return os.environ.get(WORKER_HOSTNAME_VARIABLE) or socket.gethostname()
