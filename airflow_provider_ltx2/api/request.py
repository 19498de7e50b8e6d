"""The request: validated before anything is sent, because every accepted submit costs money.

Pure functions: ``build_request`` returns the JSON body to submit or raises ``Ltx2ValidationError`` naming
the field, the value and what is accepted.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_ltx2.contract import ASPECT_RATIOS, DURATION_RANGE, FPS_VALUES, RESOLUTIONS
from airflow_provider_ltx2.exceptions import Ltx2ValidationError


def build_request(
    image_url: Any,
    prompt: Any,
    duration: Any = None,
    resolution: Any = None,
    aspect_ratio: Any = None,
    fps: Any = None,
    generate_audio: Any = None,
) -> dict[str, Any]:
    """Return the JSON body to submit, or raise ``Ltx2ValidationError`` naming the first bad field.

    Optional fields left as ``None`` are not sent, so the service's own default applies. Values that
    come out of Jinja templates as strings ("6", "true") are converted to the type the API expects.
    """
    body: dict[str, Any] = {
        "image_url": _check_image_url(image_url),
        "prompt": _check_prompt(prompt),
    }
    optional = {
        "duration": (duration, _check_duration),
        "resolution": (resolution, _choice_check("resolution", RESOLUTIONS)),
        "aspect_ratio": (aspect_ratio, _choice_check("aspect_ratio", ASPECT_RATIOS)),
        "fps": (fps, _check_fps),
        "generate_audio": (generate_audio, _check_generate_audio),
    }
    for name, (value, check) in optional.items():
        if value is not None:
            body[name] = check(value)
    return body


SHOWN_CHARACTERS = 80
SHOWN_URI_CHARACTERS = 300  # a URI's end names its object: more of it is shown


def shorten(value: Any, width: int = SHOWN_CHARACTERS) -> str:
    """``value`` as an error message echoes it: its repr, cut to about ``width`` characters.

    A value from a table, XCom or ``dag_run.conf`` may be megabytes long or nested thousands deep: a long
    text shows its start and its length, a container its first items and levels (``reprlib``).
    """
    if isinstance(value, str) and len(value) > width:
        return f"{value[:width]!r}... ({len(value):,} characters)"
    shown = repr(value) if isinstance(value, str) else reprlib.repr(value)
    return shown if len(shown) <= width else shown[:width] + "..."


def _invalid(field: str, value: Any, accepted: str) -> Ltx2ValidationError:
    return Ltx2ValidationError(f"Invalid LTX-2 request field {field}={shorten(value)}: accepted values are {accepted}.")


# Object stores whose URIs ``image_url`` may name (the task signs a URL for the gateway; see storage.py).
IMAGE_STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "file")


def is_public_url(url: str) -> bool:
    """Whether the gateway can fetch ``url`` as it is; an object-storage URI is private and gets signed."""
    return urlsplit(url).scheme in ("http", "https")


def _check_image_url(value: Any) -> str:
    accepted = "a public http(s) URL of a JPEG or PNG image, or an object-storage URI (s3://, gs://, abfs://...)"
    url = value.strip() if isinstance(value, str) else ""
    if not url or any(char.isspace() or not char.isprintable() for char in url):
        raise _invalid("image_url", value, accepted)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise _invalid("image_url", value, accepted) from None
    if parts.scheme in IMAGE_STORE_SCHEMES and (parts.netloc or parts.path.strip("/")):
        return url
    if not is_public_url(url) or not parts.hostname:
        raise _invalid("image_url", value, accepted)
    return url


def _check_prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid("prompt", value, "a non-empty text describing motion, camera and scene")
    return value


def _as_int(value: Any) -> int | None:
    """Return ``value`` as an int if it is one (or a string of one, as templates render); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value.strip())
    return None


def _check_duration(value: Any) -> int:
    seconds = _as_int(value)
    low, high = DURATION_RANGE
    if seconds is None or not low <= seconds <= high:
        raise _invalid("duration", value, f"a whole number of seconds from {low} to {high}")
    return seconds


def _check_fps(value: Any) -> int:
    fps = _as_int(value)
    if fps not in FPS_VALUES:
        raise _invalid("fps", value, ", ".join(map(str, FPS_VALUES)))
    return fps


def _choice_check(field: str, choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip() not in choices:
            raise _invalid(field, value, ", ".join(repr(choice) for choice in choices))
        return value.strip()

    return check


def _check_generate_audio(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid("generate_audio", value, "true or false")
