"""Render a clip that shows a job's request was honoured: its duration, fps and frame size, moving.

The clip is a slow zoom (a Ken Burns effect) into the job's input image, fetched from its ``image_url``
(or the bundled ``sample.jpg`` when that cannot be fetched or decoded), encoded as cheap H.264 (libx264
``ultrafast``, a high CRF, yuv420p) straight to a file. It needs the optional ``render`` extra
(``pip install airflow-provider-ltx2[render]``: PyAV and numpy); :func:`available` says whether it is
installed. Nothing heavy is imported until a clip is rendered.
"""

from __future__ import annotations

import importlib.util
import io
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SAMPLE_JPG = Path(__file__).with_name("sample.jpg")

DEFAULT_DURATION = 6
DEFAULT_FPS = 24
DEFAULT_RESOLUTION = "1080p"
DEFAULT_ASPECT_RATIO = "16:9"

ZOOM = 1.2  # the last frame shows the middle 1/ZOOM of the first one
FETCH_TIMEOUT_SECONDS = 3.0
MAX_IMAGE_BYTES = 20 << 20
MAX_IMAGE_PIXELS = 40_000_000
CRF = "36"


class RenderCancelled(Exception):
    """Raised from :func:`render` when its ``cancelled`` callback turns true (the server is stopping)."""


def available() -> bool:
    """True when PyAV and numpy (the ``render`` extra) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("av", "numpy"))


@dataclass(frozen=True)
class RenderSpec:
    """What a clip must look like, from a submit body's optional fields (with the service's defaults)."""

    width: int
    height: int
    fps: int
    duration: int

    @property
    def frames(self) -> int:
        return self.fps * self.duration

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RenderSpec:
        width, height = frame_size(
            params.get("resolution", DEFAULT_RESOLUTION), params.get("aspect_ratio", DEFAULT_ASPECT_RATIO)
        )
        return cls(width, height, int(params.get("fps", DEFAULT_FPS)), int(params.get("duration", DEFAULT_DURATION)))


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height): the resolution names the short side, e.g. 1080p 9:16 is 1080x1920.

    Both are read from the names themselves, so every value the request contract accepts has a size.
    """
    short = int(resolution.removesuffix("p"))
    across, down = (int(part) for part in aspect_ratio.split(":"))
    if across >= down:
        return _even(short * across / down), short
    return short, _even(short * down / across)


def _even(value: float) -> int:
    """Round to an even number of pixels, as yuv420p needs."""
    return 2 * round(value / 2)


# ---------------------------------------------------------------------------------------------------------
# The input image


def fetch_image(url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> bytes | None:
    """The bytes at ``url``, or None when it cannot be had quickly (or is too big to be an input image)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            data: bytes = reply.read(MAX_IMAGE_BYTES + 1)
    except (OSError, ValueError):  # URLError, HTTPError, timeouts and resets are all OSErrors
        return None
    return data if 0 < len(data) <= MAX_IMAGE_BYTES else None


def decode_image(data: bytes) -> np.ndarray | None:
    """The first picture in ``data`` (JPEG, PNG, anything FFmpeg reads) as an RGB array, or None."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                return None
            for frame in container.decode(video=0):
                if frame.width * frame.height > MAX_IMAGE_PIXELS:
                    return None
                array: np.ndarray = frame.to_ndarray(format="rgb24")
                return array
    except (av.FFmpegError, ValueError, OSError):
        return None
    return None


def load_image(url: str | None) -> tuple[np.ndarray, str]:
    """The job's image, or the bundled sample; also which one it is (``"image_url"`` or ``"sample"``)."""
    if url:
        data = fetch_image(url)
        image = decode_image(data) if data else None
        if image is not None and min(image.shape[:2]) >= 2:
            return image, "image_url"
    image = decode_image(SAMPLE_JPG.read_bytes())
    if image is None:  # pragma: no cover - the sample is committed and decodes
        raise RuntimeError(f"cannot decode {SAMPLE_JPG}")
    return image, "sample"


# ---------------------------------------------------------------------------------------------------------
# The clip


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The largest centred part of ``image`` with the aspect ratio ``width:height``."""
    rows, cols = image.shape[:2]
    if cols * height > rows * width:  # too wide: trim the sides
        keep = max(1, round(rows * width / height))
        left = (cols - keep) // 2
        return image[:, left : left + keep]
    keep = max(1, round(cols * height / width))
    top = (rows - keep) // 2
    return image[top : top + keep]


def _resize(image: np.ndarray, width: int, height: int) -> Any:
    """``image`` (RGB) scaled to width x height by FFmpeg's scaler, as a yuv420p VideoFrame."""
    import av
    import numpy as np

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")


def _planes(frame: Any) -> list[np.ndarray]:
    """The Y, U and V planes of a yuv420p VideoFrame as writable 2-D arrays (without the row padding)."""
    import numpy as np

    arrays = []
    for index, plane in enumerate(frame.planes):
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        shift = 1 if index else 0
        arrays.append(rows[: frame.height >> shift, : frame.width >> shift])
    return arrays


def _window(canvas: list[np.ndarray], left: int, top: int, width: int, height: int) -> Any:
    """A new yuv420p VideoFrame holding the ``width`` x ``height`` part of ``canvas`` at (left, top).

    All four numbers are even, so the half-size chroma planes crop at whole samples.
    """
    import av

    frame = av.VideoFrame(width, height, "yuv420p")
    for index, (target, source) in enumerate(zip(_planes(frame), canvas, strict=True)):
        shift = 1 if index else 0
        x, y = left >> shift, top >> shift
        target[:] = source[y : y + (height >> shift), x : x + (width >> shift)]
    return frame


def _progress_bar(frame: Any, done: float) -> None:
    """Paint a thin white bar along the bottom of a yuv420p frame, ``done`` (0..1) of its width long.

    It grows by at least two pixels a frame (a clip has at most 300 frames, at least 720 pixels across),
    so consecutive frames differ even where the zoom moves by less than the chroma grid of two pixels.
    """
    luma, u, v = _planes(frame)
    bar_h = max(4, _even(frame.height / 120))
    length = _even(frame.width * done)
    luma[-bar_h:, :length] = 235
    u[-bar_h // 2 :, : length // 2] = 128
    v[-bar_h // 2 :, : length // 2] = 128


def render(spec: RenderSpec, image_url: str | None, path: Path, cancelled: Callable[[], bool] = lambda: False) -> str:
    """Write the clip for ``spec`` to ``path`` (atomically); return which image it zooms into.

    The image is cropped to the clip's aspect ratio and scaled once to ZOOM times the frame size (in
    yuv420p, the encoder's format); each frame is then a centred window of it, shrinking from the whole
    to 1/ZOOM at a steady pace and scaled back to the frame size, with a progress bar along the bottom.
    """
    import av

    image, source = load_image(image_url)
    width, height = spec.width, spec.height
    big_w, big_h = _even(width * ZOOM), _even(height * ZOOM)
    canvas = _planes(_resize(_cover(image, width, height), big_w, big_h))
    partial = path.with_name(path.name + ".part")
    try:
        with av.open(str(partial), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=spec.fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": CRF}
            total = spec.frames
            for index in range(total):
                if cancelled():
                    raise RenderCancelled
                scale = 1 + (ZOOM - 1) * index / max(total - 1, 1)
                crop_w = min(big_w, max(width, _even(big_w / scale)))
                crop_h = min(big_h, max(height, _even(big_h / scale)))
                left, top = (big_w - crop_w) // 4 * 2, (big_h - crop_h) // 4 * 2
                frame = _window(canvas, left, top, crop_w, crop_h)
                if (crop_w, crop_h) != (width, height):
                    frame = frame.reformat(width=width, height=height, interpolation="BILINEAR")
                _progress_bar(frame, (index + 1) / total)
                frame.pts, frame.time_base = index, Fraction(1, spec.fps)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return source
