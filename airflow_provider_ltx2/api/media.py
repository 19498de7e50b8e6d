"""File formats by their first bytes: the input image's and the result video's."""

from __future__ import annotations


def image_kind(head: bytes) -> str | None:
    """``"jpeg"`` or ``"png"`` by the file's first bytes (its signature); None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def is_mp4(head: bytes) -> bool:
    """An MP4 (ISO base media file) starts with a box whose type, at offset 4, is ``ftyp``."""
    return len(head) >= 8 and head[4:8] == b"ftyp"
