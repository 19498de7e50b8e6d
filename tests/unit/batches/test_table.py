"""A batch's table: read from a list, a .jsonl or a .csv, every row checked before anything is paid."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ltx2.batches.table import Table, check_table, read_table
from airflow_provider_ltx2.exceptions import Ltx2ValidationError

IMAGE = "https://img.example.com/boat.jpg"
PREFIX = "file:///data/videos/"


def table(rows: list[dict[str, Any]], **defaults: Any) -> Table:
    return check_table(read_table(rows, None), defaults, PREFIX)


def refusal(rows: Any, **defaults: Any) -> str:
    with pytest.raises(Ltx2ValidationError) as caught:
        check_table(read_table(rows, None), defaults, PREFIX)
    return str(caught.value)


def test_rows_become_requests_with_the_defaults_and_their_outputs() -> None:
    checked = table(
        [
            {"id": "sku-1", "image_url": IMAGE, "prompt": "spin", "duration": 8},
            {"id": "sku-2", "image_url": IMAGE, "prompt": "zoom"},
        ],
        duration=4,
        resolution="1080p",
    )
    assert [row.id for row in checked.rows] == ["sku-1", "sku-2"]
    assert checked.rows[0].request == {"image_url": IMAGE, "prompt": "spin", "duration": 8, "resolution": "1080p"}
    assert checked.rows[1].request["duration"] == 4
    assert checked.rows[1].output_uri == "file:///data/videos/sku-2.mp4"
    assert checked.manifest_uri == "file:///data/videos/manifest.jsonl"
    assert checked.row("sku-2") is checked.rows[1]


def test_a_row_without_id_is_named_by_its_request_wherever_it_stands() -> None:
    first = table([{"image_url": IMAGE, "prompt": "spin"}, {"image_url": IMAGE, "prompt": "zoom"}])
    moved = table(
        [
            {"image_url": IMAGE, "prompt": "pan"},
            {"image_url": IMAGE, "prompt": "zoom"},
            {"image_url": IMAGE, "prompt": "spin"},
        ]
    )
    assert first.rows[0].id == moved.rows[2].id and first.rows[1].id == moved.rows[1].id
    assert first.rows[0].id != first.rows[1].id and first.rows[0].id.startswith("r-")
    assert table([{"image_url": IMAGE, "prompt": "spin", "duration": 6}]).rows[0].id != first.rows[0].id


@pytest.mark.parametrize(
    ("row", "named"),
    [
        (
            {"id": "sku-9", "image_url": IMAGE, "prompt": "spin", "duration": 12},
            ["'sku-9'", "row 2", "duration=12", "2 to 10"],
        ),
        ({"image_url": IMAGE, "prompt": "spin", "resolution": "4k"}, ["Row 2", "resolution='4k'", "'1080p'"]),
        ({"id": "sku-9", "image_url": "ftp://x/y.jpg", "prompt": "spin"}, ["'sku-9'", "image_url='ftp://x/y.jpg'"]),
        ({"id": "sku-9", "image_url": IMAGE}, ["'sku-9'", "prompt=None"]),
        ({"id": "../etc", "image_url": IMAGE, "prompt": "spin"}, ["id='../etc'", "letters, digits"]),
        (
            {"id": "sku-9", "image_url": IMAGE, "promt": "spin"},
            ["unknown field 'promt'", "accepted fields are id, image_url"],
        ),
    ],
    ids=["duration", "resolution", "image_url", "prompt", "id", "unknown field"],
)
def test_a_bad_row_is_refused_naming_the_row_the_field_the_value_and_what_is_accepted(
    row: dict[str, Any], named: list[str]
) -> None:
    message = refusal([{"id": "ok", "image_url": IMAGE, "prompt": "fine"}, row])
    assert all(part in message for part in named), message


def test_duplicate_ids_are_refused() -> None:
    message = refusal([{"id": "a", "image_url": IMAGE, "prompt": "x"}, {"id": "a", "image_url": IMAGE, "prompt": "y"}])
    assert "'a' (row 2)" in message and "row 1" in message and "unique" in message
    same = refusal([{"image_url": IMAGE, "prompt": "x"}, {"image_url": IMAGE, "prompt": "x"}])
    assert "same video" in same or "one video" in same


@pytest.mark.parametrize(
    ("requests", "named"),
    [
        ({"image_url": IMAGE}, "list of dicts"),
        ([["not", "a", "dict"]], "Row 1"),
        ("s3://bucket/table.parquet", ".jsonl or .csv"),
        ([], "no rows"),
    ],
    ids=["a dict", "a row not a dict", "another format", "empty"],
)
def test_a_table_that_is_not_one_is_refused(requests: Any, named: str) -> None:
    assert named in refusal(requests)


@pytest.mark.parametrize("prefix", [None, "videos", "file://", 3])
def test_output_prefix_must_be_a_folder_uri(prefix: Any) -> None:
    with pytest.raises(Ltx2ValidationError, match="output_prefix"):
        check_table([{"image_url": IMAGE, "prompt": "x"}], {}, prefix)


def test_a_csv_with_text_values_and_empty_cells(tmp_path: Path) -> None:
    csv_file = tmp_path / "table.csv"
    csv_file.write_text(
        "id,image_url,prompt,duration,fps,generate_audio,resolution\n"
        f"a,{IMAGE},spin,8,24,true,\n"
        f'b,{IMAGE},"zoom, slowly",,30,false,720p\n',
        encoding="utf-8",
    )
    checked = check_table(read_table(f"file://{csv_file}", None), {"duration": 5, "resolution": "1080p"}, PREFIX)
    first, second = (row.request for row in checked.rows)
    assert first == {
        "image_url": IMAGE,
        "prompt": "spin",
        "duration": 8,
        "fps": 24,
        "generate_audio": True,
        "resolution": "1080p",
    }
    assert second["duration"] == 5 and second["prompt"] == "zoom, slowly" and second["generate_audio"] is False


def test_a_jsonl_file_and_its_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"id": 7, "image_url": IMAGE, "prompt": "x"})
        + "\n\n"
        + json.dumps({"image_url": IMAGE, "prompt": "y"})
        + "\n"
    )
    assert check_table(read_table(f"file://{good}", None), {}, PREFIX).rows[0].id == "7"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image_url": IMAGE, "prompt": "x"}) + "\n[1, 2]\n")
    assert "line 2" in refusal(f"file://{bad}")
    assert "does not exist" in refusal(f"file://{tmp_path}/missing.jsonl")


def test_a_table_past_the_mapping_limit_is_one_table() -> None:
    rows = [{"id": f"row-{number:04d}", "image_url": IMAGE, "prompt": f"take {number}"} for number in range(1100)]
    checked = table(rows)
    assert len(checked.rows) == 1100 and checked.rows[-1].output_uri.endswith("/row-1099.mp4")
    assert checked.digest == table(rows).digest != table(rows[:-1]).digest


def written(tmp_path: Path, name: str, text: str) -> str:
    """The URI of a table file holding ``text``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return f"file://{path}"


@pytest.mark.parametrize(
    ("header", "row", "cells", "width"),
    [
        ("id,image_url,prompt", f"b,{IMAGE},zoom, slowly", 4, 3),
        ("id,image_url,prompt,duration", f"b,{IMAGE},zoom", 3, 4),
    ],
    ids=["an unquoted comma cuts the prompt", "a missing cell"],
)
def test_a_csv_row_wider_or_narrower_than_its_header_is_refused(
    tmp_path: Path, header: str, row: str, cells: int, width: int
) -> None:
    message = refusal(written(tmp_path, "table.csv", f"{header}\na,{IMAGE},spin{',' * (width - 3)}\n\n{row}\n"))
    assert "row 2 (line 4)" in message and f"{cells} cells where the header has {width}" in message, message
    assert "comma inside needs quoting" in message


def test_a_jsonl_object_naming_a_field_twice_is_refused(tmp_path: Path) -> None:
    line = json.dumps({"id": "a", "image_url": IMAGE, "prompt": "spin"})[:-1] + ', "prompt": "zoom"}'

    message = refusal(written(tmp_path, "table.jsonl", line + "\n"))

    assert "line 1" in message and "names the field 'prompt' twice" in message, message


def test_a_value_under_an_unnamed_column_is_refused(tmp_path: Path) -> None:
    """A trailing comma in the header makes the row as wide as a prompt cut at its unquoted comma."""
    table = f"id,image_url,prompt,\na,{IMAGE},spin,\nb,{IMAGE},zoom, slowly\n"

    message = refusal(written(tmp_path, "table.csv", table))

    assert "row 2 (line 3)" in message and "a column the header does not name" in message, message


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_of_a_csv_are_skipped(tmp_path: Path, newline: str) -> None:
    lines = ["", "id,image_url,prompt", "", f"a,{IMAGE},spin", "", "", f"b,{IMAGE},zoom", "", ""]
    checked = check_table(read_table(written(tmp_path, "table.csv", newline.join(lines)), None), {}, PREFIX)
    assert [(row.number, row.id) for row in checked.rows] == [(1, "a"), (2, "b")]


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    message = refusal(written(tmp_path, "table.csv", f"prompt,image_url,prompt\nspin,{IMAGE},zoom\n"))
    assert "the header names the column 'prompt' 2 times" in message and "once" in message, message


def test_a_csv_cell_over_the_limit_is_refused_as_such(tmp_path: Path) -> None:
    limit = csv.field_size_limit()
    uri = written(tmp_path, "table.csv", f"id,image_url,prompt\na,{IMAGE},spin\nb,{IMAGE},{'x' * (limit + 1)}\n")
    message = refusal(uri)
    assert "row 2 (line 3)" in message and f"at most {limit:,} characters" in message, message
    assert "UTF-8" not in message and len(message) < 400
    assert csv.field_size_limit() == limit


HUGE = 1_000_000


@pytest.mark.parametrize(
    ("requests", "prefix"),
    [
        ([{"id": "x" * HUGE, "image_url": IMAGE, "prompt": "spin"}], PREFIX),
        ([{"id": "ok", "f" * HUGE: 1, "image_url": IMAGE, "prompt": "spin"}], PREFIX),
        ([{"id": "ok", "image_url": "ftp://" + "x" * HUGE, "prompt": "spin"}], PREFIX),
        ([{"id": "ok", "image_url": IMAGE, "prompt": " " * HUGE}], PREFIX),
        ("s3://bucket/" + "x" * HUGE + ".parquet", PREFIX),
        ([{"id": "ok", "image_url": IMAGE, "prompt": "spin"}], "x" * HUGE),
    ],
    ids=["id", "field name", "image_url", "prompt", "requests", "output_prefix"],
)
def test_a_huge_bad_value_is_echoed_shortened_with_its_length(requests: Any, prefix: str) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        check_table(read_table(requests, None), {}, prefix)
    message = str(caught.value)
    assert len(message) < 500 and " characters)" in message, message[:1000]


@pytest.mark.parametrize(
    "line",
    ["[" * 100_000 + "]" * 100_000, '{"image_url": "x", "prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"],
    ids=["a list", "a field"],
)
def test_a_jsonl_line_nested_too_deeply_is_refused_naming_it(tmp_path: Path, line: str) -> None:
    uri = written(tmp_path, "table.jsonl", json.dumps({"image_url": IMAGE, "prompt": "x"}) + f"\n{line}\n")
    message = refusal(uri)
    assert "line 2: the JSON is nested too deeply" in message and len(message) < 400, message[:1000]


@pytest.mark.parametrize("line", ["[1, 2]", "42", '"spin"', "null", "true"])
def test_a_jsonl_line_that_is_not_an_object_is_refused_naming_it(tmp_path: Path, line: str) -> None:
    uri = written(tmp_path, "table.jsonl", json.dumps({"image_url": IMAGE, "prompt": "x"}) + f"\n{line}\n")
    message = refusal(uri)
    assert f"line 2: {json.loads(line)!r} is not a JSON object" in message, message
