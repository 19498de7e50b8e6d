"""The README's first command, ``scripts/demo.sh`` (``scripts/demo.py``), as a new user runs it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

DEMO = REPO / "scripts" / "demo.py"


def demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ltx2_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.dags
@pytest.mark.slow
def test_the_demo_shows_a_clip_of_the_requested_shape_and_leaves_no_airflow_home(tmp_path: Path) -> None:
    """A clip of the 6 s, 1080p, 16:9 the example DAG asks for, said to be the simulator's stand-in, and no
    temporary Airflow home left behind (the demo's temporary folders are the only ones under ``TMPDIR``)."""
    temporary, output = tmp_path / "tmp", tmp_path / "out"
    temporary.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LTX2_", "PYTEST"))}
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        env={**env, "TMPDIR": str(temporary), "LTX2_EXAMPLE_OUTPUT_DIR": str(output)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]

    *_, said, written = done.stdout.strip().splitlines()
    assert said.startswith("The DAG asked for 6 s of 1080p at 16:9. The simulator made a stand-in clip"), said
    [video] = output.rglob("*.mp4")
    assert written == f"MP4 written to: {video} ({video.stat().st_size} bytes, a valid MP4: 6.0 s, 1920x1080, 24 fps)"
    assert list(temporary.iterdir()) == [], "the demo left temporary files behind"


def test_the_demo_keeps_an_airflow_home_the_user_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_module()
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    with ExitStack() as stack:
        assert demo.airflow_home(stack) == str(tmp_path)
    assert tmp_path.is_dir()
    monkeypatch.delenv("AIRFLOW_HOME")
    with ExitStack() as stack:
        made = Path(demo.airflow_home(stack))
        assert made.is_dir() and made != tmp_path
    assert not made.exists()
