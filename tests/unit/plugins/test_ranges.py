"""The plugin's ``Range`` header parsing (``airflow_provider_ltx2.plugins.ranges``): one pure function.

The routes that serve those ranges over real runs are in tests/integration/plugins/test_plugin.py.
"""

from __future__ import annotations

import pytest

from airflow_provider_ltx2.plugins.ranges import ByteRange, RangeNotSatisfiable, byte_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-", ByteRange(0, 999, 1000)),
        ("bytes=0-0", ByteRange(0, 0, 1000)),
        ("bytes=100-199", ByteRange(100, 199, 1000)),
        ("bytes=900-5000", ByteRange(900, 999, 1000)),
        ("bytes=-100", ByteRange(900, 999, 1000)),
        ("bytes=-5000", ByteRange(0, 999, 1000)),
        ("items=0-1", None),  # another unit: ignored
        ("bytes=0-1,5-6", None),  # several ranges: the whole file instead
        ("bytes=abc", None),
        ("bytes=-", None),
        ("bytes=0-1, 5-6", None),
        ("bytes=-5-10", None),  # a negative position
        ("bytes=\u0663-", None),  # an Arabic-Indic 3: not a DIGIT
        (f"bytes=0-{'9' * 4301}", ByteRange(0, 999, 1000)),  # past any file's end: to this one's
        (f"bytes=-{'9' * 4301}", ByteRange(0, 999, 1000)),  # longer than the file: all of it
        (f"bytes={'0' * 40}100-{'0' * 40}199", ByteRange(100, 199, 1000)),
    ],
)
def test_byte_range(header: str | None, expected: ByteRange | None) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=5-4", 1000), ("bytes=-0", 1000), ("bytes=0-", 0), (f"bytes={'9' * 4301}-", 1000)],
)
def test_unsatisfiable_byte_range(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, size)


def test_suffix_of_an_empty_file_is_ignored() -> None:
    """It is satisfiable (RFC 9110) but selects no byte, which no Content-Range can say: the file is sent."""
    assert byte_range("bytes=-5", 0) is None
