"""The simulator's clip specs (``airflow_provider_ltx2.simulator.render``) and its ``render`` setting, without
rendering: frame sizes from the contract's names, the defaults, the setting's validation (with or without PyAV).

The rendered clips themselves are in tests/integration/simulator/test_render.py.
"""

from __future__ import annotations

from itertools import product

import pytest

from airflow_provider_ltx2.contract import ASPECT_RATIOS, RESOLUTIONS
from airflow_provider_ltx2.simulator import render as clips
from airflow_provider_ltx2.simulator.__main__ import main as simulator_main
from airflow_provider_ltx2.simulator.server import SimConfig, apply_config


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "size"),
    [
        ("720p", "16:9", (1280, 720)),
        ("720p", "9:16", (720, 1280)),
        ("720p", "1:1", (720, 720)),
        ("1080p", "16:9", (1920, 1080)),
        ("1080p", "9:16", (1080, 1920)),
        ("1080p", "1:1", (1080, 1080)),
        ("2160p", "16:9", (3840, 2160)),
        ("2160p", "9:16", (2160, 3840)),
        ("2160p", "1:1", (2160, 2160)),
    ],
)
def test_frame_size_names_the_short_side(resolution: str, aspect_ratio: str, size: tuple[int, int]) -> None:
    assert clips.frame_size(resolution, aspect_ratio) == size


def test_every_size_the_request_contract_accepts_has_an_even_frame() -> None:
    """Frame sizes are read from the names in the contract's tables, so a name added there must still work."""
    for resolution, aspect_ratio in product(RESOLUTIONS, ASPECT_RATIOS):
        width, height = clips.frame_size(resolution, aspect_ratio)
        assert width % 2 == 0 and height % 2 == 0 and min(width, height) >= 720, (resolution, aspect_ratio)


def test_spec_defaults_are_6_seconds_24_fps_1080p_16_9() -> None:
    assert clips.RenderSpec.from_params({"image_url": "https://example.com/a.jpg", "prompt": "p"}) == (
        clips.RenderSpec(width=1920, height=1080, fps=24, duration=6)
    )
    spec = clips.RenderSpec.from_params({"duration": 2, "fps": 25, "resolution": "720p", "aspect_ratio": "1:1"})
    assert (spec.width, spec.height, spec.fps, spec.duration, spec.frames) == (720, 720, 25, 2, 50)


def test_render_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SimConfig().render == "sample", "the default serves the sample: rendering costs seconds a job"
    assert apply_config(SimConfig(), {"render": "auto"}).render == "auto"
    with pytest.raises(ValueError, match="render must be one of auto, sample, always"):
        apply_config(SimConfig(), {"render": "yes"})
    monkeypatch.setattr(clips, "available", lambda: False)
    assert apply_config(SimConfig(), {"render": "auto"}).render == "auto", "auto falls back to the sample"
    with pytest.raises(ValueError, match=r"pip install 'airflow-provider-ltx2\[render\]'"):
        apply_config(SimConfig(), {"render": "always"})
    with pytest.raises(SystemExit, match=r"--render 'always' needs PyAV and numpy"):
        simulator_main(["--render", "always", "--port", "0"])
