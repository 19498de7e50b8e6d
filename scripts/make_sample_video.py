"""Generate the simulator's sample MP4 (and a small JPEG) once; the outputs are committed.

The simulator must stay free of heavy media dependencies, so this script is the only place that needs
PyAV and numpy. Run it in a scratch venv, not the project's:

    python3 -m venv /tmp/avenv && /tmp/avenv/bin/pip install av numpy
    /tmp/avenv/bin/python scripts/make_sample_video.py

It writes a 2 s, 320x180, 24 fps H.264 clip of a drifting colour gradient with a growing disc (small,
playable, and visibly "moving"), checks it decodes in full, and writes a 320x180 JPEG still that the
example DAGs can use as an ``image_url``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, SECONDS = 320, 180, 24, 2
OUT_DIR = Path(__file__).resolve().parent.parent / "airflow_provider_ltx2" / "simulator"


def frame_rgb(index: int, total: int) -> np.ndarray:
    """One RGB frame: a horizontally drifting gradient with a disc that grows over time."""
    t = index / max(total - 1, 1)
    x = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    phase = (x + t) % 1.0
    red = 255 * phase * np.ones_like(y)
    green = 255 * (1.0 - y) * np.ones_like(x)
    blue = 255 * (0.5 + 0.5 * np.sin(2 * np.pi * (y + t))) * np.ones_like(x)
    img = np.stack([red, green, blue], axis=-1)
    radius = 20 + 50 * t
    cx, cy = WIDTH / 2, HEIGHT / 2
    xx, yy = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = (250, 250, 240)
    return img.clip(0, 255).astype(np.uint8)


def write_video(path: Path) -> None:
    total = FPS * SECONDS
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "30", "preset": "slow", "profile": "baseline"}
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(frame_rgb(i, total), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_jpeg(path: Path) -> None:
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(frame_rgb(0, 2), format="rgb24").reformat(format="yuvj420p")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def verify_video(path: Path) -> int:
    """Fail loudly unless the file is an MP4 (``ftyp`` at offset 4) whose every frame decodes."""
    data = path.read_bytes()
    if data[4:8] != b"ftyp":
        raise SystemExit(f"{path}: no ftyp box at offset 4")
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    if frames != FPS * SECONDS:
        raise SystemExit(f"{path}: decoded {frames} frames, expected {FPS * SECONDS}")
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    video, image = args.out_dir / "sample.mp4", args.out_dir / "sample.jpg"
    write_video(video)
    write_jpeg(image)
    frames = verify_video(video)
    if image.read_bytes()[:2] != b"\xff\xd8":
        raise SystemExit(f"{image}: not a JPEG")
    print(f"{video}: {video.stat().st_size} bytes, {frames} frames decoded")
    print(f"{image}: {image.stat().st_size} bytes")


if __name__ == "__main__":
    main()
