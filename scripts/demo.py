"""Run ``example_ltx2_single_video`` with ``airflow dags test`` and print where the MP4 landed.

Against the simulator by default (started here, stopped by pid at the end); against the real gateway
when ``AIRFLOW_CONN_LTX2_DEFAULT`` is set (then set ``LTX2_EXAMPLE_IMAGE_URL`` to a public image).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from airflow_provider_ltx2.simulator.process import SimulatorProcess

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "example_ltx2_single_video"


def main() -> int:
    output_dir = Path(os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", ROOT / "out")).resolve()
    env = {
        **os.environ,
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME") or tempfile.mkdtemp(prefix="ltx2-demo-airflow-"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "LTX2_EXAMPLE_OUTPUT_DIR": str(output_dir),
        "LTX2_EXAMPLE_DEFERRABLE": "true",
    }
    with ExitStack() as stack:
        if "AIRFLOW_CONN_LTX2_DEFAULT" in os.environ:
            print("Using the LTX-2 connection from AIRFLOW_CONN_LTX2_DEFAULT (each video is a paid call).")
        else:
            sim = stack.enter_context(SimulatorProcess())
            print(f"Started the LTX-2 gateway simulator at {sim.base_url}")
            env.update(
                AIRFLOW_CONN_LTX2_DEFAULT=sim.connection(),
                LTX2_EXAMPLE_IMAGE_URL=f"{sim.base_url}/files/sample.jpg",
                LTX2_EXAMPLE_POLL_INTERVAL=env.get("LTX2_EXAMPLE_POLL_INTERVAL", "1"),
            )
        airflow = [sys.executable, "-m", "airflow"]
        print(f"Preparing the Airflow metadata DB in {env['AIRFLOW_HOME']}...")
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        started = time.time()
        print(f"Running `airflow dags test {DAG_ID}` (the wait happens in the trigger)...")
        run = subprocess.run([*airflow, "dags", "test", DAG_ID], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"The DAG run failed (exit code {run.returncode}).", file=sys.stderr)
            return 1
    videos = [path for path in output_dir.rglob("*.mp4") if path.stat().st_mtime >= started]
    if not videos:
        print(f"The DAG run succeeded but no new MP4 is under {output_dir}.", file=sys.stderr)
        return 1
    video = max(videos, key=lambda path: path.stat().st_mtime)
    kind = "a valid MP4" if video.read_bytes()[4:8] == b"ftyp" else "NOT an MP4"
    print(f"DAG run succeeded in {time.time() - started:.0f}s.")
    print(f"MP4 written to: {video} ({video.stat().st_size} bytes, {kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
