"""Uploads that cannot be trained on are refused with a message saying what to fix, and
the same checks run again when a job loads the dataset."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.driver.splits import prepare
from shared.csv_files import read_table_bytes
from shared.data import DatasetStore, load_frame
from shared.errors import DatasetError
from shared.spec import DatasetSpec


def csv_bytes(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def table(header: str, count: int, row: str = "{i},{j},{c}") -> bytes:
    """A CSV with ``count`` rows; ``row`` is formatted with the row number i, i % 7 as j
    and i % 3 as the class c."""
    rows = [row.format(i=i, j=i % 7, c=i % 3) for i in range(count)]
    return csv_bytes(header, *rows)


GOOD = table("a,b,target", 30)


def test_missing_target_names_the_columns_there_are(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"target column 'label' is not in the dataset \(columns: a, b, target\).*\?target=",
    ):
        DatasetStore(tmp_path).save(GOOD, target="label")


def test_missing_target_suggests_a_column_differing_in_case(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="did you mean 'Target'"):
        DatasetStore(tmp_path).save(table("a,b,Target", 30), target="target")


def test_infinite_amounts_name_columns_and_rows_and_gaps_pass(tmp_path: Path) -> None:
    content = csv_bytes("a,b,c,target", "1,,1,0", "2,,inf,1", "3,3,-inf,1", "4,4,4,0")
    with pytest.raises(
        DatasetError,
        match=r"infinite values: c \(2 rows\) \(2 rows in all\); replace them with numbers",
    ):
        DatasetStore(tmp_path).save(content)


def test_one_class_only_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"one class only \('yes' in all 30 rows\)"):
        DatasetStore(tmp_path).save(table("a,b,target", 30, "{i},{j},yes"))


def test_duplicate_column_names_are_named(tmp_path: Path) -> None:
    content = table("a,b,a,target", 30, "{i},{j},{i},{c}")
    with pytest.raises(DatasetError, match=r"more than once: 'a' \(2 times\)"):
        DatasetStore(tmp_path).save(content)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "the file is empty"),
        (b" \n\n", "the file is empty"),
        (b"\xef\xbb\xbf\n", "the file is empty"),
        (b"a,b,target\n", "header but no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (b"PK\x03\x04\x14\x00", "ZIP archive"),
        (b'{"a": [1, 2], "target": [0, 1]}', "JSON, not CSV"),
        (b'{"a": 1, "target": 0}\n{"a": 2, "target": 1}\n', "JSON, not CSV"),
        ("a,b,target\n1,é,0\n".encode("latin-1"), "not UTF-8 text"),
        (b'"a,b,target\n1,2,0\n', "not a readable CSV file"),
        (csv_bytes("a,b,target", "1,2,0", "1,2,0,4"), "not a readable CSV file"),
        (csv_bytes("a,target", "1,2,0", "3,4,1"), "the first row has 3 values"),
        (csv_bytes("a b target", "1 2 0", "2 3 1"), "separated by spaces"),
        (csv_bytes("1,2,0", "3,4,1"), "add a header row"),
    ],
)
def test_files_that_are_not_csv_tables_say_what_they_are(
    tmp_path: Path, content: bytes, words: str
) -> None:
    with pytest.raises(DatasetError, match=words):
        DatasetStore(tmp_path).save(content)


@pytest.mark.parametrize("seed", range(40))
def test_any_bytes_give_a_dataset_error_or_a_table(seed: int) -> None:
    rng = np.random.default_rng(seed)
    content = bytes(rng.choice(list(b'a,;"\n\r\t 0123456789.e-+\xc3\xa9\xff'), size=200).tolist())
    try:
        frame = read_table_bytes(content)
    except DatasetError:
        return
    # Or a table a user would recognise: rows under named, distinct columns.
    assert len(frame) >= 1 and len(frame.columns) >= 1
    assert frame.columns.is_unique and all(isinstance(name, str) for name in frame.columns)


def test_row_limit_names_the_limit_and_reading_stops_there(tmp_path: Path) -> None:
    limit = r"more than 1,000 rows; at most 1,000 are allowed \(TUNEFLEET_MAX_DATASET_ROWS\)"
    with pytest.raises(DatasetError, match=limit):
        DatasetStore(tmp_path).save(table("a,b,target", 1200), max_rows=1000)
    # A row past the limit is never parsed: a ragged one there does not change the answer.
    ragged = table("a,b,target", 1200) + b"1,2,3,4,5\n"
    with pytest.raises(DatasetError, match=limit):
        DatasetStore(tmp_path).save(ragged, max_rows=1000)
    # Parquet: the row count is read from the file's footer.
    frame = pd.read_csv(io.BytesIO(table("a,b,target", 1200)))
    with pytest.raises(DatasetError, match=r"has 1,200 rows; at most 1,000"):
        DatasetStore(tmp_path).save(frame.to_parquet(index=False), max_rows=1000)


def test_a_target_with_more_classes_than_the_cap_is_refused_at_upload(tmp_path: Path) -> None:
    ids = b"x,target\n" + b"".join(b"%d,id-%d\n" % (i % 7, i) for i in range(40))
    with pytest.raises(
        DatasetError, match=r"has 40 classes; .* at most 30 \(TUNEFLEET_MAX_CLASSES\)"
    ):
        DatasetStore(tmp_path).save(ids, max_classes=30)


def test_column_limit_names_the_limit_and_the_count(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"has 3 columns; at most 2 are allowed \(TUNEFLEET_MAX_DATASET_COLUMNS\)",
    ):
        DatasetStore(tmp_path).save(GOOD, max_columns=2)


def test_limits_apply_again_when_a_job_loads_the_upload(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    summary = store.save(GOOD, max_rows=30, max_columns=3)
    spec = DatasetSpec(upload=summary.id)
    assert len(load_frame(spec, store, max_rows=30, max_columns=3)) == 30
    with pytest.raises(DatasetError, match="more than 20 rows; at most 20"):
        load_frame(spec, store, max_rows=20)


def test_a_class_too_small_for_the_job_s_split_fails_at_job_start(tmp_path: Path) -> None:
    # 4 rows of class 'z' do for the default split (20 % test) but not when 60 % of the
    # rows are held out for testing: 2 of them must be left to split again.
    rows = [f"{i},{'xy'[i % 2]}" for i in range(40)] + [f"{i},z" for i in range(4)]
    store = DatasetStore(tmp_path)
    summary = store.save(csv_bytes("a,target", *rows))
    assert summary.class_counts["z"] == 4
    prepare(store.load(summary.id), DatasetSpec(upload=summary.id), "target")
    spec = DatasetSpec(upload=summary.id, test_fraction=0.6)
    with pytest.raises(
        DatasetError, match=r"too few rows in class 'z' \(4 rows\).*test_fraction 0\.6.*at least 6"
    ):
        prepare(load_frame(spec, store), spec, "target")


def test_a_split_smaller_than_the_number_of_classes_is_named(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    summary = store.save(table("a,b,target", 12))
    spec = DatasetSpec(upload=summary.id, validation_fraction=0.1)
    with pytest.raises(
        DatasetError, match="the validation split would hold 2 rows, fewer than the 3"
    ):
        prepare(load_frame(spec, store), spec, "target")


def test_too_few_rows_to_split_at_all_says_how_many_are_needed() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "price": [1.5, 2.5]})
    spec = DatasetSpec(upload="0" * 32)
    with pytest.raises(DatasetError, match=r"has 2 rows, too few .*\(at least 3\)"):
        prepare(frame, spec, "price")


@pytest.mark.parametrize("test_fraction", [0.05, 0.2, 0.5, 0.7])
def test_classes_at_the_stated_minimum_always_split(test_fraction: float) -> None:
    """The minimum a message states is enough, whatever the seed."""
    labels = ["a"] * 30 + ["b"] * 30 + ["c"] * 2
    frame = pd.DataFrame({"x": range(len(labels)), "target": labels})
    spec = DatasetSpec(upload="0" * 32, test_fraction=test_fraction, validation_fraction=0.2)
    with pytest.raises(DatasetError, match=r"at least (\d+)") as caught:
        prepare(frame, spec, "target")
    least = int(caught.value.args[0].split("at least ")[1].split(";")[0])
    # As many rows as before, so that the minimum stays the same.
    enough_labels = ["a"] * (32 - least) + ["b"] * 30 + ["c"] * least
    enough = pd.DataFrame({"x": range(len(enough_labels)), "target": enough_labels})
    for seed in range(20):
        data = prepare(enough, spec.model_copy(update={"seed": seed}), "target")
        assert data.classes == ["a", "b", "c"]
