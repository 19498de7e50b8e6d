"""A batch's table: read from a list or a ``.jsonl``/``.csv`` file, every row checked before anything is paid.

Pure but for reading the file: each row becomes a ``Row`` (its id, its validated request, its output) or the
whole table is refused with an ``Ltx2ValidationError`` naming the row, the field, the value and what is
accepted. A row without ``id`` is named by a hash of its request, so an unchanged row maps to the same
file wherever it stands in the table.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_ltx2.api.request import build_request, shorten
from airflow_provider_ltx2.batches.manifest import MANIFEST_NAME, is_row_id, manifest_uri, video_uri
from airflow_provider_ltx2.contract import REQUEST_FIELDS
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.storage import SIDECAR_SUFFIX

ROW_FIELDS = ("id", *REQUEST_FIELDS)
TABLE_SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table: where it stands, its id, the request it makes and where its video goes."""

    number: int  # 1-based, in the table's order
    id: str
    request: dict[str, Any]
    output_uri: str


@dataclass
class Table:
    """The checked rows in the table's order, and a digest of them that a resumed task compares."""

    rows: list[Row]
    digest: str
    output_prefix: str

    @property
    def manifest_uri(self) -> str:
        return manifest_uri(self.output_prefix)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {row.id: position for position, row in enumerate(self.rows)}

    def row(self, row_id: str) -> Row:
        return self.rows[self._positions[row_id]]

    @property
    def file_names(self) -> set[str]:
        """The names of the files the batch writes in its folder: videos, sidecars and the manifest."""
        videos = {row.output_uri.rsplit("/", 1)[-1] for row in self.rows}
        return {MANIFEST_NAME, *videos, *(name + SIDECAR_SUFFIX for name in videos)}


def read_table(requests: Any, conn_id: str | None) -> Iterator[Mapping[str, Any]]:
    """The table's rows as mappings: a list of dicts as given, or a ``.jsonl``/``.csv`` file's rows."""
    if isinstance(requests, str):
        yield from _read_file(requests, conn_id)
        return
    if isinstance(requests, Mapping) or not isinstance(requests, Iterable):
        raise Ltx2ValidationError(
            f"requests={shorten(requests)}: accepted values are a list of dicts, or the URI of a .jsonl or .csv file."
        )
    for number, row in enumerate(requests, 1):
        if not isinstance(row, Mapping):
            raise Ltx2ValidationError(f"Row {number} of requests is {shorten(row)}: accepted values are dicts.")
        yield row


def _read_file(uri: str, conn_id: str | None) -> Iterator[Mapping[str, Any]]:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    source = f"requests={shorten(uri)}"
    suffix = next((suffix for suffix in TABLE_SUFFIXES if uri.lower().endswith(suffix)), None)
    if suffix is None:
        raise Ltx2ValidationError(
            f"{source}: accepted values are a list of dicts, or the URI of a .jsonl or .csv file."
        )
    try:
        with ObjectStoragePath(uri, conn_id=conn_id).open("rb") as binary:
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            if suffix == ".csv":
                yield from _csv_rows(source, text)
                return
            for number, line in enumerate(text, 1):
                if line.strip():
                    yield _json_row(source, number, line)
    except FileNotFoundError:
        raise Ltx2ValidationError(f"{source}: the file does not exist.") from None
    except UnicodeDecodeError as error:
        raise Ltx2ValidationError(f"{source}: not a UTF-8 {suffix} file ({error}).") from None


def _csv_rows(source: str, text: Iterable[str]) -> Iterator[Mapping[str, Any]]:
    """The CSV's rows by its header, refusing what ``csv.DictReader`` lets through.

    DictReader keeps a repeated column's last cell, files a row's extra cells under ``None`` and fills its
    missing ones with ``None``: an unquoted comma would cut a prompt short and the rest would still be paid.
    """
    reader = csv.reader(text)
    header: list[str] | None = None
    number = 0  # data rows read so far, numbered as check_table numbers them
    try:
        for cells in reader:
            if not cells:
                continue  # a blank line
            if header is None:
                header = _check_header(source, cells)
                continue
            number += 1
            if len(cells) != len(header):
                raise Ltx2ValidationError(
                    f"{source}, row {number} (line {reader.line_num}): {len(cells)} cells where the header has "
                    f"{len(header)}; accepted rows have one cell per column (an empty cell leaves a field unset, "
                    'and a value with a comma inside needs quoting, as in "zoom, slowly").'
                )
            if any(value for name, value in zip(header, cells, strict=True) if not name):
                raise Ltx2ValidationError(
                    f"{source}, row {number} (line {reader.line_num}): a cell under a column the header does not "
                    "name (a trailing comma in the header?) holds a value; accepted rows leave unnamed columns "
                    'empty (a value with a comma inside needs quoting, as in "zoom, slowly").'
                )
            # An empty cell means "not set": the operator's default applies.
            yield {name: value for name, value in zip(header, cells, strict=True) if name and value}
    except csv.Error as error:
        place = "the header" if header is None else f"row {number + 1}"
        raise Ltx2ValidationError(f"{source}, {place} (line {reader.line_num}): {_csv_problem(error)}.") from None


def _check_header(source: str, header: list[str]) -> list[str]:
    """The header, unless it names a column twice: which of the two cells would count is a guess."""
    repeated = [(name, count) for name, count in Counter(name for name in header if name).items() if count > 1]
    if repeated:
        name, count = repeated[0]
        raise Ltx2ValidationError(
            f"{source}: the header names the column {shorten(name)} {count} times; accepted headers name each "
            "column once."
        )
    return header


def _csv_problem(error: csv.Error) -> str:
    """What the csv module refused, in words. Its cell size limit is process-wide: reported here, never raised."""
    if "field limit" in str(error):
        limit = csv.field_size_limit()  # without an argument it is only read
        return f"a cell is larger than the limit: accepted CSV cells hold at most {limit:,} characters"
    return f"not CSV ({error})"


class _RepeatedKey(ValueError):
    """A JSON object naming a key twice: ``json`` keeps the last, a guess as a repeated CSV column would be."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(key)
        found[key] = value
    return found


def _json_row(source: str, number: int, line: str) -> Mapping[str, Any]:
    try:
        row = json.loads(line, object_pairs_hook=_unique_keys)
    except _RepeatedKey as repeated:
        raise Ltx2ValidationError(
            f"{source}, line {number}: the object names the field {shorten(repeated.args[0])} twice; accepted lines "
            "name each field once."
        ) from None
    except RecursionError:
        raise Ltx2ValidationError(
            f"{source}, line {number}: the JSON is nested too deeply; accepted lines are one JSON object of "
            "request fields each."
        ) from None
    except ValueError as error:
        raise Ltx2ValidationError(f"{source}, line {number}: not JSON ({error}).") from None
    if not isinstance(row, dict):
        raise Ltx2ValidationError(
            f"{source}, line {number}: {shorten(row)} is not a JSON object; accepted lines are one JSON object "
            "of request fields each."
        )
    return row


def check_table(rows: Iterable[Mapping[str, Any]], defaults: Mapping[str, Any], output_prefix: str) -> Table:
    """Every row validated, with defaults for the fields it leaves out; duplicate ids refused."""
    prefix = check_output_prefix(output_prefix)
    checked: list[Row] = []
    first_of: dict[str, int] = {}
    digest = hashlib.sha256()
    for number, raw in enumerate(rows, 1):
        row = _check_row(number, raw, defaults, prefix)
        if row.id in first_of:
            why = "" if "id" in raw else " (a row without an id is named by its request: both ask for one video)"
            raise Ltx2ValidationError(
                f"Row {row.id!r} (row {number}) has the same id as row {first_of[row.id]}{why}: accepted ids are "
                "unique in the table, as they name the rows' videos."
            )
        first_of[row.id] = number
        digest.update(json.dumps([row.id, row.request], sort_keys=True).encode())
        checked.append(row)
    if not checked:
        raise Ltx2ValidationError("requests: the table has no rows; accepted values are a table of one row or more.")
    return Table(checked, digest.hexdigest(), prefix)


def check_output_prefix(output_prefix: Any) -> str:
    parts = urlsplit(output_prefix) if isinstance(output_prefix, str) else None
    if parts is None or "://" not in output_prefix or not (parts.netloc or parts.path.strip("/")):
        raise Ltx2ValidationError(
            f"output_prefix={shorten(output_prefix)}: accepted values are a folder URI such as file:///data/videos or "
            "s3://bucket/videos."
        )
    return output_prefix.rstrip("/")


def _check_row(number: int, raw: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> Row:
    given = raw.get("id")
    label = f"Row {number}" if given in (None, "") else f"Row {shorten(given)} (row {number})"
    unknown = sorted(str(name) for name in raw if name not in ROW_FIELDS)
    if unknown:
        raise Ltx2ValidationError(
            f"{label}: unknown field {shorten(unknown[0])}; accepted fields are {', '.join(ROW_FIELDS)}."
        )
    fields = {name: raw[name] if raw.get(name) not in (None, "") else defaults.get(name) for name in REQUEST_FIELDS}
    try:
        request = build_request(**fields)
    except Ltx2ValidationError as error:
        raise Ltx2ValidationError(f"{label}: {error}") from None
    row_id = _row_id(label, given, request)
    return Row(number, row_id, request, video_uri(prefix, row_id))


def _row_id(label: str, given: Any, request: Mapping[str, Any]) -> str:
    if given in (None, ""):
        return "r-" + hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:20]
    if isinstance(given, int) and not isinstance(given, bool):
        given = str(given)
    if not is_row_id(given):
        raise Ltx2ValidationError(
            f"{label}: invalid id={shorten(given)}; accepted values are 1 to 128 letters, digits, '-', '_' or '.' "
            "(it names the row's video file)."
        )
    return given
