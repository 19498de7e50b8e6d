"""The defaults of the tasks' arguments, as plain constants: one home for the operators, the sensor, the triggers
and the waits.

Kept free of imports: the operator and sensor modules read them at DAG-parse time, where every millisecond is
paid once per DAG file and parse.
"""

CONN_ID = "ltx2_default"  # the ``ltx2`` connection a task uses unless told otherwise
POLL_INTERVAL = 10.0  # seconds between status polls: the gateway advises 5-10
TIMEOUT = 30 * 60.0  # seconds from a task's start to its video
BATCH_TIMEOUT = 24 * 3600.0  # a whole table, not one video: hours at a gateway running 2 at a time
MAX_CONCURRENT_JOBS = 2  # a batch's jobs in flight: the gateway's limit per key by default
IMAGE_URL_EXPIRES_IN = 3600  # seconds a signed image URL stays valid: long enough for a job queued at the gateway
