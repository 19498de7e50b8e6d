"""HTTP Range requests (RFC 9110, section 14) on one file: what a ``<video>`` element sends to seek."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # DIGIT is ASCII; \d takes other scripts' digits too
# A position of more significant digits is past the end of any file (10**18 bytes is an exabyte): it is taken as
# _BEYOND rather than converted, as int() of a long string is slow and raises past 4,300 digits.
_MAX_DIGITS = 18
_BEYOND = 10**_MAX_DIGITS


class RangeNotSatisfiable(ValueError):
    """The Range asks for bytes the file does not have: answer 416 with ``Content-Range: bytes */<size>``."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``first`` to ``last`` (inclusive) of a file of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


def position(digits: str) -> int:
    """The position ``digits`` writes; ``_BEYOND``, past any file's end, for more than 18 significant digits."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else _BEYOND


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a ``Range`` header asks for, or None to send the whole file (200).

    A header that is absent, not in bytes, malformed, or asks for several ranges is ignored, as RFC 9110
    allows; a range that starts past the end, is empty, or is reversed raises ``RangeNotSatisfiable``. A suffix
    of an empty file is satisfiable but selects no byte, which no ``Content-Range`` can say: it is ignored too.
    """
    if not header:
        return None
    match = _SINGLE_RANGE.fullmatch(header.replace(" ", ""))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # "bytes=-N": the last N bytes
        suffix = position(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(0, size - suffix), size - 1, size) if size else None
    first = position(first_text)
    last = position(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(header)
    return ByteRange(first, min(last, size - 1), size)
