"""The simulator's rendered clips: the requested duration, fps and frame size, zooming into the input image.

Tests that render need the ``render`` extra (PyAV and numpy) and are skipped without it. The frame-size
table, the defaults and the ``render`` setting's validation are in tests/unit/simulator/test_render.py.
"""

from __future__ import annotations

import asyncio
import http.server
import struct
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_ltx2.simulator import render as clips
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.simulator.server import SimConfig, create_app

HAVE_AV = clips.available()
needs_av = pytest.mark.skipif(
    not HAVE_AV, reason="rendering needs the render extra (PyAV and numpy): pip install -e '.[render]'"
)

KEY = "render-test-key"
SUBMIT = "/ltx-2-video-api-581/v1/ltx-2-video-api-request"
RESULT = "/ltx-2-video-api-581/v1/ltx-2-video-api-request-result"
HEADERS = {"Ocp-Apim-Subscription-Key": KEY}
FAST = {"queue_seconds": 0.1, "processing_seconds": 0.1}
SAMPLE = (Path(clips.__file__).with_name("sample.mp4")).read_bytes()
RED = (200, 40, 40)
# Generous: the machine may be busy, and a 2 s 720p clip takes about a second of CPU.
RENDER_DEADLINE = 90.0


# --- without PyAV ------------------------------------------------------------------------------------


def test_auto_without_pyav_serves_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clips, "available", lambda: False)
    body = {"image_url": "https://example.com/a.jpg", "prompt": "p", "duration": 4}

    async def scenario() -> None:
        from aiohttp.test_utils import TestClient, TestServer

        app = create_app(SimConfig(render="auto", queue_seconds=0, processing_seconds=0), key=KEY)
        async with TestClient(TestServer(app)) as client:
            request_id = (await (await client.post(SUBMIT, json=body, headers=HEADERS)).json())["request_id"]
            video = await (await client.post(RESULT, json={"request_id": request_id}, headers=HEADERS)).json()
            assert video["video"]["file_size"] == len(SAMPLE)
            assert await (await client.get(f"/files/{request_id}.mp4")).read() == SAMPLE

    asyncio.run(scenario())


# --- helpers -----------------------------------------------------------------------------------------


def wait_for(fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + RENDER_DEADLINE
    while True:
        reply = fetch()
        if done(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def decode(data: bytes) -> dict[str, Any]:
    """What a player would see: size, rates, duration and every frame as an RGB array."""
    import io

    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.duration is not None and stream.time_base is not None
        return {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "average_rate": stream.average_rate,
            "duration": float(stream.duration * stream.time_base),
            "frames": frames,
        }


def encode_image(path: Path, width: int, height: int, colour: tuple[int, int, int]) -> None:
    """A solid-colour PNG, written with PyAV's encoder (no imaging library needed)."""
    import av
    import numpy as np

    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:] = colour
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))


def top_level_boxes(data: bytes) -> list[tuple[bytes, int]]:
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        assert size >= 8 and offset + size <= len(data), (kind, size)
        boxes.append((kind, size))
        offset += size
    return boxes


class RenderSim:
    """A simulator started with ``--render always``, plus the few calls these tests make."""

    def __init__(self, process: SimulatorProcess) -> None:
        self.process = process
        self.base = process.base_url

    def submit(self, **fields: Any) -> str:
        body = {"image_url": f"{self.base}/files/sample.jpg", "prompt": "a slow push in", **fields}
        reply = requests.post(f"{self.base}{SUBMIT}", json=body, headers=HEADERS, timeout=10)
        assert reply.status_code in (200, 202), reply.text
        return str(reply.json()["request_id"])

    def poll(self, request_id: str) -> dict[str, Any]:
        reply = requests.post(f"{self.base}{RESULT}", json={"request_id": request_id}, headers=HEADERS, timeout=10)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def finished_video(self, request_id: str) -> dict[str, Any]:
        done = wait_for(lambda: self.poll(request_id), lambda r: "video" in r)
        assert "video" in done, f"no video after {RENDER_DEADLINE} s: {done}"
        return dict(done["video"])

    def download(self, video: dict[str, Any]) -> bytes:
        reply = requests.get(video["url"], timeout=RENDER_DEADLINE)
        assert reply.status_code == 200 and reply.headers["Content-Type"] == "video/mp4"
        assert int(reply.headers["Content-Length"]) == len(reply.content) == video["file_size"]
        return reply.content


@pytest.fixture(scope="module")
def render_process() -> Iterator[SimulatorProcess]:
    if not HAVE_AV:
        pytest.skip("rendering needs the render extra (PyAV and numpy): pip install -e '.[render]'")
    with SimulatorProcess("--render", "always", key=KEY) as process:
        yield process
        assert process.errors() == "", "the simulator logged errors"


@pytest.fixture
def sim(render_process: SimulatorProcess) -> RenderSim:
    render_process.reset()
    render_process.configure(**FAST)
    return RenderSim(render_process)


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tiny web server with a solid red 101x57 PNG (odd sizes on purpose) at ``/red.png``."""
    if not HAVE_AV:
        pytest.skip("rendering needs the render extra (PyAV and numpy)")
    root = tmp_path_factory.mktemp("images")
    encode_image(root / "red.png", 101, 57, RED)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2 s 24 fps 1280x720 clip of the bundled sample.jpg, rendered in process, decoded."""
    if not HAVE_AV:
        pytest.skip("rendering needs the render extra (PyAV and numpy)")
    path = tmp_path_factory.mktemp("reference") / "sample.mp4"
    assert clips.render(clips.RenderSpec(width=1280, height=720, fps=24, duration=2), None, path) == "sample"
    return decode(path.read_bytes())


def mean_colour(frame: Any) -> tuple[float, ...]:
    middle = frame[frame.shape[0] // 4 : -frame.shape[0] // 4, frame.shape[1] // 4 : -frame.shape[1] // 4]
    return tuple(float(v) for v in middle.reshape(-1, 3).mean(axis=0))


# --- rendering through the simulator ----------------------------------------------------------------


@pytest.mark.slow
@needs_av
@pytest.mark.parametrize(("aspect_ratio", "size"), [("9:16", (720, 1280)), ("1:1", (720, 720)), ("16:9", (1280, 720))])
def test_clip_has_the_requested_duration_fps_and_size_and_moves(
    sim: RenderSim, aspect_ratio: str, size: tuple[int, int]
) -> None:
    import numpy as np

    request_id = sim.submit(duration=2, fps=25, resolution="720p", aspect_ratio=aspect_ratio)
    video = sim.finished_video(request_id)
    data = sim.download(video)
    assert data[4:8] == b"ftyp" and data != SAMPLE

    clip = decode(data)
    assert (clip["width"], clip["height"]) == size
    assert (clip["codec"], clip["pix_fmt"]) == ("h264", "yuv420p")
    assert clip["average_rate"] == Fraction(25)
    assert abs(clip["duration"] - 2) <= 1 / 25
    assert abs(len(clip["frames"]) - 2 * 25) <= 1
    frames = clip["frames"]
    assert frames[0].shape == (size[1], size[0], 3)
    still = [i for i in range(1, len(frames)) if np.array_equal(frames[i - 1], frames[i])]
    assert still == [], "every frame differs from the one before: the clip moves"
    # It zooms in: the middle of the last frame is the whole of the first, enlarged, so they differ a lot
    # while the colours stay those of the same picture.
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1
    assert np.allclose(mean_colour(frames[0]), mean_colour(frames[-1]), atol=40)


@needs_av
def test_clip_zooms_into_the_image_at_image_url(sim: RenderSim, image_server: str) -> None:
    request_id = sim.submit(image_url=f"{image_server}/red.png", duration=2, fps=24, resolution="720p")
    clip = decode(sim.download(sim.finished_video(request_id)))
    assert (clip["width"], clip["height"], clip["average_rate"]) == (1280, 720, Fraction(24))
    for frame in (clip["frames"][0], clip["frames"][-1]):
        assert all(abs(got - want) <= 20 for got, want in zip(mean_colour(frame), RED, strict=True))


@needs_av
@pytest.mark.parametrize(
    "image_url",
    [
        "https://example.com/cat.jpg",  # no such host here (or not an image there)
        "http://127.0.0.1:9/nothing.jpg",  # connection refused
        "{base}/_sim/config",  # reachable, but JSON, not an image
        "{base}/files/missing.jpg",  # 404
    ],
)
def test_unusable_image_url_falls_back_to_the_sample_image(
    sim: RenderSim, sample_clip: dict[str, Any], image_url: str
) -> None:
    request_id = sim.submit(image_url=image_url.format(base=sim.base), duration=2, fps=24, resolution="720p")
    clip = decode(sim.download(sim.finished_video(request_id)))
    assert (clip["width"], clip["height"], len(clip["frames"])) == (1280, 720, 48)
    # The same picture as a clip made from the bundled sample.jpg.
    for ours, theirs in zip(clip["frames"][::12], sample_clip["frames"][::12], strict=True):
        assert abs(ours.astype(int) - theirs).mean() < 2


@needs_av
def test_job_is_done_only_once_its_clip_is_ready_and_sizes_agree(sim: RenderSim) -> None:
    """The universal protocol too; file_size, HEAD and GET all give the rendered size."""
    sim.process.configure(protocol="universal")
    request_id = sim.submit(duration=3, fps=30, resolution="720p", aspect_ratio="1:1")
    url = f"{sim.base}/v2/requests/status/{request_id}"

    def status() -> dict[str, Any]:
        return dict(requests.get(url, headers=HEADERS, timeout=10).json())

    time.sleep(0.4)  # past the nominal 0.2 s: a 90-frame clip takes longer than that to render
    assert status()["status"] == "PROCESSING"
    done = wait_for(status, lambda r: r["status"] != "PROCESSING")
    assert done["status"] == "COMPLETED"
    media = done["output"]["media_url"][0]
    head = requests.head(media, timeout=10)
    data = requests.get(media, timeout=10).content
    assert int(head.headers["Content-Length"]) == len(data)
    clip = decode(data)
    assert (clip["width"], clip["height"], clip["average_rate"], len(clip["frames"])) == (720, 720, 30, 90)


@needs_av
def test_download_before_any_poll_waits_for_the_clip(sim: RenderSim) -> None:
    request_id = sim.submit(duration=2, fps=24, resolution="720p", aspect_ratio="9:16")
    time.sleep(0.3)  # finished by the clock, but nobody has polled: nothing rendered yet
    reply = requests.get(f"{sim.base}/files/{request_id}.mp4", timeout=RENDER_DEADLINE)
    assert reply.status_code == 200
    assert sim.poll(request_id)["video"]["file_size"] == len(reply.content)
    assert (decode(reply.content)["width"], decode(reply.content)["height"]) == (720, 1280)


@needs_av
def test_padding_follows_the_rendered_clip(sim: RenderSim) -> None:
    padding = (1 << 20) + 77
    sim.process.configure(video_padding_bytes=padding)
    video = sim.finished_video(sim.submit(duration=2, fps=24, resolution="720p"))
    data = sim.download(video)
    boxes = top_level_boxes(data)
    assert boxes[0][0] == b"ftyp" and boxes[-1] == (b"free", padding)
    assert data[len(data) - padding + 8 :].count(0) == padding - 8
    clip = decode(data)
    assert (clip["width"], clip["height"], len(clip["frames"])) == (1280, 720, 48)


@needs_av
def test_render_setting_applies_to_jobs_submitted_next(sim: RenderSim) -> None:
    assert sim.process.configure()["render"] == "always", "--render always is the start-up setting"
    rendered = sim.submit(duration=2, fps=24, resolution="720p", aspect_ratio="1:1")
    sim.process.configure(render="sample")
    sampled = sim.submit(duration=2, fps=24, resolution="720p", aspect_ratio="1:1")
    assert sim.download(sim.finished_video(sampled)) == SAMPLE
    clip = decode(sim.download(sim.finished_video(rendered)))
    assert (clip["width"], clip["height"]) == (720, 720)
    bad = requests.post(f"{sim.base}/_sim/config", json={"render": "never"}, timeout=10)
    assert bad.status_code == 400 and "render must be one of" in bad.json()["error"]
    assert sim.process.reset()["render"] == "always"


# --- in process: the clips live on disk until reset or shutdown -------------------------------------


@needs_av
def test_clips_are_files_removed_on_reset_and_shutdown() -> None:
    body = {"image_url": "http://127.0.0.1:9/x.png", "prompt": "p", "duration": 2, "resolution": "720p"}

    async def scenario() -> None:
        from aiohttp.test_utils import TestClient, TestServer

        from airflow_provider_ltx2.simulator.server import SIM

        app = create_app(SimConfig(render="always", queue_seconds=0, processing_seconds=0), key=KEY)
        sim = app[SIM]
        async with TestClient(TestServer(app)) as client:
            request_id = (await (await client.post(SUBMIT, json=body, headers=HEADERS)).json())["request_id"]
            deadline = time.monotonic() + RENDER_DEADLINE
            while True:
                reply = await (await client.post(RESULT, json={"request_id": request_id}, headers=HEADERS)).json()
                if "video" in reply or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert sim.render_dir is not None
            clip = sim.render_dir / f"{request_id}.mp4"
            assert reply["video"]["file_size"] == clip.stat().st_size
            assert [p.name for p in sim.render_dir.iterdir()] == [clip.name], "no partial files left behind"
            await client.post("/_sim/reset")
            await asyncio.sleep(0.05)
            assert not clip.exists()
            render_dir = sim.render_dir
        assert not render_dir.exists(), "the clips' directory goes when the app stops"

    asyncio.run(scenario())


# --- the renderer itself ----------------------------------------------------------------------------


@needs_av
def test_render_reports_its_source_and_can_be_cancelled(tmp_path: Path, image_server: str) -> None:
    spec = clips.RenderSpec(width=64, height=36, fps=24, duration=1)
    assert clips.render(spec, f"{image_server}/red.png", tmp_path / "a.mp4") == "image_url"
    assert clips.render(spec, f"{image_server}/none.png", tmp_path / "b.mp4") == "sample"
    assert clips.render(spec, None, tmp_path / "c.mp4") == "sample"
    assert len(decode((tmp_path / "a.mp4").read_bytes())["frames"]) == 24
    with pytest.raises(clips.RenderCancelled):
        clips.render(spec, None, tmp_path / "d.mp4", cancelled=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
