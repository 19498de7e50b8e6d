"""Run ``example_ltx2_single_video`` with ``airflow dags test`` and print where the MP4 landed.

Against the simulator by default (started here, stopped by pid at the end); against the real gateway
when ``AIRFLOW_CONN_LTX2_DEFAULT`` is set (then set ``LTX2_EXAMPLE_IMAGE_URL`` to a public image).
The metadata DB lives in a temporary ``AIRFLOW_HOME``, removed at the end, unless ``AIRFLOW_HOME`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from airflow_provider_ltx2.simulator import render
from airflow_provider_ltx2.simulator.process import SimulatorProcess

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "example_ltx2_single_video"
ASKED = "6 s of 1080p at 16:9"  # what example_ltx2_single_video requests (24 fps by default)


def airflow_home(stack: ExitStack) -> str:
    """``$AIRFLOW_HOME`` when set (kept); otherwise a temporary folder, removed when ``stack`` closes."""
    return os.environ.get("AIRFLOW_HOME") or stack.enter_context(tempfile.TemporaryDirectory(prefix="ltx2-demo-"))


def describe(video: Path) -> str:
    """What a player shows of the MP4 (length, frame size, frame rate), when PyAV (the render extra) is here."""
    if not render.available():
        return "a valid MP4" if video.read_bytes()[4:8] == b"ftyp" else "NOT an MP4"
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        rate = float(stream.average_rate or 0)
        return f"a valid MP4: {seconds:.1f} s, {stream.width}x{stream.height}, {rate:.0f} fps"


def main() -> int:
    output_dir = Path(os.environ.get("LTX2_EXAMPLE_OUTPUT_DIR", ROOT / "out")).resolve()
    simulated = "AIRFLOW_CONN_LTX2_DEFAULT" not in os.environ
    with ExitStack() as stack:
        env = {
            **os.environ,
            "AIRFLOW_HOME": airflow_home(stack),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "LTX2_EXAMPLE_OUTPUT_DIR": str(output_dir),
            "LTX2_EXAMPLE_DEFERRABLE": "true",
        }
        if simulated:
            # `auto`: with the render extra (scripts/bootstrap.sh installs it), a clip of the requested shape.
            sim = stack.enter_context(SimulatorProcess("--render", "auto"))
            print(f"Started the LTX-2 gateway simulator at {sim.base_url}")
            env.update(
                AIRFLOW_CONN_LTX2_DEFAULT=sim.connection(),
                LTX2_EXAMPLE_IMAGE_URL=f"{sim.base_url}/files/sample.jpg",
                LTX2_EXAMPLE_POLL_INTERVAL=env.get("LTX2_EXAMPLE_POLL_INTERVAL", "1"),
            )
        else:
            print("Using the LTX-2 connection from AIRFLOW_CONN_LTX2_DEFAULT (each video is a paid call).")
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
    print(f"DAG run succeeded in {time.time() - started:.0f}s.")
    if simulated and render.available():
        print(
            f"The DAG asked for {ASKED}. The simulator made a stand-in clip of that shape (a slow zoom into the "
            "image), not an LTX-2 video."
        )
    elif simulated:
        print(
            f"The DAG asked for {ASKED}; the simulator returned its bundled 2 s, 320x180 sample clip "
            "(install the `render` extra for a clip of the requested shape)."
        )
    print(f"MP4 written to: {video} ({video.stat().st_size} bytes, {describe(video)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
