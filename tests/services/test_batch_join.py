"""A batch job's output file from its part files: rows back in the input's order, as
Ray Data may hand blocks on out of order."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet
import pytest

from services.driver.batch import _join_parts
from shared.data import ROW_COLUMN
from shared.storage import storage_path

ROWS = 237


def scored_rows() -> pa.Table:
    return pa.table(
        {
            "row_id": [f"row-{i}" for i in range(ROWS)],
            "x": np.arange(ROWS, dtype=np.float64) / 7,
            ROW_COLUMN: np.arange(ROWS, dtype=np.int64),
            "prediction": np.arange(ROWS) % 3,
        }
    )


def write_parts(folder: Path, pieces: list[list[tuple[int, int]]]) -> None:
    """One part file per entry of ``pieces``, each the row slices listed, in that order."""
    table = scored_rows()
    folder.mkdir()
    for index, slices in enumerate(pieces):
        part = pa.concat_tables([table.slice(start, end - start) for start, end in slices])
        pyarrow.parquet.write_table(part, folder / f"part-{index:03}.parquet")


@pytest.mark.parametrize(
    "pieces",
    [
        [[(0, 60), (119, 237), (60, 119)]],  # one part, its blocks out of order (seen)
        [[(119, 237)], [(0, 60)], [(60, 119)]],  # whole runs, parts named out of order
        [[(0, 30), (119, 237)], [(30, 119)]],  # parts whose rows interleave
    ],
)
@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_the_output_has_the_input_rows_in_order_without_the_row_numbers(
    tmp_path: Path, pieces: list[list[tuple[int, int]]], output_format: str
) -> None:
    write_parts(tmp_path / "parts", pieces)
    output = tmp_path / f"predictions.{output_format}"
    _join_parts(storage_path(tmp_path / "parts"), storage_path(output), output_format)
    content = io.BytesIO(output.read_bytes())
    joined = pd.read_csv(content) if output_format == "csv" else pd.read_parquet(content)
    expected = scored_rows().drop_columns([ROW_COLUMN]).to_pandas()
    assert list(joined.columns) == ["row_id", "x", "prediction"]
    pd.testing.assert_frame_equal(joined, expected)
