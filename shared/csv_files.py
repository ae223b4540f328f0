"""An uploaded file's bytes as a table: a CSV file with a header row (comma, semicolon,
tab or pipe separated, sniffed; the usual gap markers read as gaps) or a Parquet file, or
a DatasetError that says what the file is instead (a workbook, JSON, UTF-16) and how to
fix it."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pandas as pd

from shared.errors import DatasetError
from shared.preprocessing import GAP_MARKERS
from shared.wording import listed

PARQUET_MAGIC = b"PAR1"
# The separators a CSV export uses, in the order a tie is broken.
SEPARATORS = (",", ";", "\t", "|")
# Lines of the file that the separator is sniffed from.
_SNIFFED_LINES = 50

# Formats people upload by mistake, known by their first bytes: (magic, what it is, fix).
_NOT_CSV_SIGNATURES = (
    (
        b"PK\x03\x04",
        "a ZIP archive (an Excel .xlsx workbook is one)",
        "unzip it, or export the sheet as CSV",
    ),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook", "export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it (gunzip) and upload the CSV inside"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8 CSV"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8 CSV"),
)


def is_parquet(content: bytes) -> bool:
    return content.startswith(PARQUET_MAGIC)


def read_table_bytes(
    content: bytes, *, max_rows: int | None = None, max_columns: int | None = None
) -> pd.DataFrame:
    """Parse an upload: a Parquet file, else a CSV file with a header row; or say why it
    is not one or is too large. Every parser failure becomes a DatasetError: the bytes
    come from users."""
    if is_parquet(content):
        frame = _read_parquet(content, max_rows)
        _check_limit(frame.shape[1], max_columns, "columns", "TUNEFLEET_MAX_DATASET_COLUMNS")
    else:
        frame = _read_csv(content, max_columns, max_rows)
    if frame.empty:
        raise DatasetError("the CSV file has a header but no rows; add data rows below it")
    return frame


def _read_parquet(content: bytes, max_rows: int | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # The row count is in the file's footer: a file past the limit is not read.
        parquet = pq.ParquetFile(io.BytesIO(content))
        _check_limit(parquet.metadata.num_rows, max_rows, "rows", "TUNEFLEET_MAX_DATASET_ROWS")
        table = parquet.read()
    except DatasetError:
        raise
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise DatasetError(
            f"the file starts as a Parquet file but cannot be read ({str(exc).strip()[:200]}); "
            "write it again, e.g. with pandas.DataFrame.to_parquet(path, index=False)"
        ) from exc
    # A cell is one value: lists, structs and maps (and raw bytes) are not table cells.
    unfit = [
        f"{field.name!r} ({field.type})"
        for field in table.schema
        if pa.types.is_nested(field.type)
        or pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
    ]
    if unfit:
        raise DatasetError(
            f"the file's columns {listed(unfit)} hold lists, records or bytes, not one "
            "number, text or date per cell; flatten them or drop them"
        )
    frame = table.to_pandas()
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(
            f"the file names columns more than once: {listed([repr(n) for n in repeated])}; "
            "give every column its own name"
        )
    frame.columns = names
    return frame.reset_index(drop=True)


def _read_csv(content: bytes, max_columns: int | None, max_rows: int | None) -> pd.DataFrame:
    text = _csv_text(content)
    separator = sniff_separator(text)
    buffer = io.StringIO(text)
    header = _header(buffer, separator)
    _check_limit(len(header), max_columns, "columns", "TUNEFLEET_MAX_DATASET_COLUMNS")
    buffer.seek(0)
    try:
        # pandas' own gap markers (empty, NA, N/A, null, NaN, ...) and the rest of ours.
        # Reading stops one row past the limit: a file of millions of rows more is
        # refused for its size, not parsed first.
        frame = pd.read_csv(
            buffer,
            sep=separator,
            na_values=sorted(GAP_MARKERS),
            nrows=None if max_rows is None else max_rows + 1,
        )
    except (ValueError, OverflowError, csv.Error) as exc:  # pandas' parser errors are ValueErrors
        named = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[separator]
        raise DatasetError(
            f"the file is not a readable CSV file ({str(exc).strip()}); check that every row "
            f"has one {named}-separated value per header column, and quote values holding "
            f"{named}s"
        ) from exc
    # Read up to one row past the limit.
    _check_limit(len(frame), max_rows, "rows", "TUNEFLEET_MAX_DATASET_ROWS", stopped=True)
    return frame


def sniff_separator(text: str) -> str:
    """The separator that splits the first lines into the same number of columns, the
    most of them; a comma if none splits them."""
    head = "\n".join(text.lstrip("\n").splitlines()[:_SNIFFED_LINES])
    best, best_width = ",", 1
    for separator in SEPARATORS:
        try:
            rows = [r for r in csv.reader(io.StringIO(head), delimiter=separator) if r]
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        # The last line may be cut short by the sniff; the others must agree.
        consistent = all(len(r) == width for r in rows[:-1]) if len(rows) > 1 else True
        if consistent and width > best_width:
            best, best_width = separator, width
    return best


def _csv_text(content: bytes) -> str:
    """The file as text, or DatasetError saying what else it is."""
    if not content.strip():
        raise DatasetError("the file is empty; send a CSV file with a header row")
    for magic, what, fix in _NOT_CSV_SIGNATURES:
        if content.startswith(magic):
            raise DatasetError(f"the file is {what}, not a CSV file; {fix}")
    if b"\0" in content:
        raise DatasetError(
            "the file holds binary data (NUL bytes), not CSV text; send a CSV file: "
            "comma-separated values with a header row"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"the file is not UTF-8 text (byte 0x{content[exc.start]:02x} at offset "
            f"{exc.start:,}); save it as a UTF-8 CSV file"
        ) from exc
    if not text.strip():  # a byte order mark alone
        raise DatasetError("the file is empty; send a CSV file with a header row")
    if _is_json(text):
        raise DatasetError(
            "the file is JSON, not CSV; send a CSV file with a header row "
            "(e.g. written with pandas.DataFrame(records).to_csv(path, index=False))"
        )
    return text


def _is_json(text: str) -> bool:
    """Whether the text is a JSON document, or JSON Lines (its first line is one)."""
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return False
    for candidate in (stripped, stripped.split("\n", 1)[0]):
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return True
    return False


def _header(buffer: io.StringIO, separator: str) -> list[str]:
    """The column names as the first non-blank line spells them, checked for what pandas
    would let pass: it renames a second ``a`` to ``a.1``, and takes the first values of
    each row as row labels, not a column, when the first row is longer than the header."""
    try:
        rows = (
            row
            for row in csv.reader(buffer, delimiter=separator)
            if any(cell.strip() for cell in row)
        )
        header = next(rows, [])
        first = next(rows, [])
    except csv.Error as exc:
        raise DatasetError(
            f"the header row is not readable CSV ({exc}); check its quotes and commas"
        ) from exc
    repeated = [(name, n) for name, n in Counter(header).items() if n > 1 and name.strip()]
    # A first line of numbers is data, not a header; the missing target will say so.
    if repeated and not all(is_number(name) for name in header):
        described = [f"{name!r} ({n} times)" for name, n in repeated]
        raise DatasetError(
            f"the header names columns more than once: {listed(described)}; give every "
            "column its own name"
        )
    if len(first) > len(header):
        raise DatasetError(
            f"the first row has {len(first)} values but the header names {len(header)} "
            "columns; name every column in the header"
        )
    return header


def _check_limit(
    count: int, limit: int | None, what: str, setting: str, stopped: bool = False
) -> None:
    """DatasetError past the limit; ``stopped``: reading stopped just past it, so the
    count says only that there are more."""
    if limit is not None and count > limit:
        shown = f"more than {limit:,}" if stopped else f"{count:,}"
        raise DatasetError(
            f"the dataset has {shown} {what}; at most {limit:,} are allowed ({setting}); "
            f"upload fewer {what}"
        )


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
