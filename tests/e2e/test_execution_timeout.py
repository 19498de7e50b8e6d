"""``execution_timeout`` honoured while deferred, in the real deployment, across a triggerer restart."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.deployment import TRIGGERER_HEALTH_THRESHOLD, Deployment, wait_for

pytestmark = pytest.mark.timeout(400)

DAG_ID = "e2e_ltx2_execution_timeout"
EXECUTION_TIMEOUT = 60.0


def test_execution_timeout_ends_a_deferred_task_and_survives_a_triggerer_restart(e2e: Deployment) -> None:
    assert e2e.sim is not None
    e2e.sim.configure(outcome="never_finish")
    triggered = time.time()
    run_id = e2e.trigger(DAG_ID)
    [trigger] = wait_for("the generation's trigger", lambda: (found := e2e.triggers()) and found, 120)
    deadline = trigger["kwargs"]["deadline"]
    assert trigger["kwargs"]["deadline_limit"] == "execution_timeout=0:01:00"
    assert deadline < triggered + EXECUTION_TIMEOUT + 30, "the deadline is the execution_timeout's, not timeout's"

    assert not e2e.kill("triggerer", signal.SIGKILL), "the killed triggerer left processes behind"
    restarted = e2e.start_triggerer("triggerer")
    [again] = wait_for(
        "the trigger taken by the restarted triggerer",
        lambda: [t for t in e2e.triggers() if t["triggerer_id"] == restarted.job_id] or None,
        TRIGGERER_HEALTH_THRESHOLD + 90,
    )
    assert again["kwargs"]["deadline"] == deadline, "a restarted triggerer keeps the original deadline"

    states = e2e.wait_for_runs([(DAG_ID, run_id)], timeout=240)
    ended = time.time()
    assert states[(DAG_ID, run_id)] == "failed"
    assert ended < deadline + 30, f"failed {ended - deadline:.0f}s after the deadline"
    log = e2e.task_log(DAG_ID, run_id, "generate_video", 1)
    assert "Ltx2Timeout" in log and "set by execution_timeout=0:01:00" in log, log[-3000:]
    assert e2e.sim.stats()["jobs"] == 1, "one paid submit"
