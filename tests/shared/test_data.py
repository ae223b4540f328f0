import io
from pathlib import Path

import pytest

from services.driver.splits import prepare
from shared.data import DatasetStore
from shared.errors import DatasetError, NotFoundError
from shared.spec import DatasetSpec


def csv_bytes(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


GOOD_CSV = csv_bytes(["a,b,species"] + [f"{i},{i % 7},{['x', 'y', 'z'][i % 3]}" for i in range(60)])


def test_upload_is_kept_and_summarised(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    summary = store.save(GOOD_CSV, target="species")
    assert summary.rows == 60 and summary.columns == ["a", "b"]
    assert summary.task == "classification"
    assert summary.classes == ["x", "y", "z"] and summary.class_counts == {
        "x": 20,
        "y": 20,
        "z": 20,
    }
    frame = store.load(summary.id)
    data = prepare(frame, DatasetSpec(upload=summary.id), "species")
    assert data.classes == ["x", "y", "z"]
    assert store.save(GOOD_CSV, target="species").id == summary.id  # content-addressed
    assert summary.column_types == {"a": "integer", "b": "integer", "species": "text"}
    assert summary.problems == []


@pytest.mark.parametrize(
    ("content", "target", "words"),
    [
        (b"", "target", "empty"),
        (b"a,b,target\n", "target", "no rows"),
        (GOOD_CSV, "label", "target column 'label' is not in the dataset"),
        (csv_bytes(["a,b,target", "1,inf,0", "2,3,1"]), "target", "infinite"),
        (csv_bytes(["a,target", "1,0", "2,0"]), "target", "one class only"),
    ],
)
def test_unusable_uploads_say_what_to_fix(
    tmp_path: Path, content: bytes, target: str, words: str
) -> None:
    with pytest.raises(DatasetError) as caught:
        DatasetStore(tmp_path).save(content, target=target)
    assert words in str(caught.value)


def test_a_class_too_small_to_split_is_explained(tmp_path: Path) -> None:
    rows = ["a,target"] + [f"{i},{i % 2}" for i in range(40)] + ["99,2"]
    store = DatasetStore(tmp_path)
    summary = store.save(csv_bytes(rows))
    with pytest.raises(DatasetError, match="every class needs enough rows") as caught:
        prepare(store.load(summary.id), DatasetSpec(upload=summary.id), "target")
    # The upload is kept, and its summary says so before any job fails on it.
    assert summary.problems == [str(caught.value)]
    assert "class 2 (1 row)" in summary.problems[0]
    assert store.summary(summary.id).problems == summary.problems


def test_unknown_upload_is_not_found(tmp_path: Path) -> None:
    # The domain names the dataset; the HTTP edge adds the route that makes one.
    with pytest.raises(NotFoundError) as raised:
        DatasetStore(tmp_path).load("ab" * 16)
    assert str(raised.value) == f"no dataset with id {'ab' * 16!r}"
    assert raised.value.subject == "dataset"


def test_upload_summary_says_regression(tmp_path: Path) -> None:
    rows = ["x,price"] + [f"{i},{i * 1.5 + 0.25}" for i in range(50)]
    summary = DatasetStore(tmp_path).save(csv_bytes(rows), target="price")
    assert summary.task == "regression" and summary.classes == [] and summary.class_counts == {}
    assert summary.column_types == {"x": "integer", "price": "float"}
    assert summary.problems == []


def test_an_upload_gets_a_parquet_copy_that_reads_as_its_csv_with_row_numbers(
    tmp_path: Path,
) -> None:
    import pandas as pd

    from shared.data import ROW_COLUMN

    # An integer column, a float column with an empty cell, text, and booleans.
    content = csv_bytes(
        ["id,x,y,flag"] + [f"r{i},{i},{'' if i == 3 else i / 7},{i % 2 == 0}" for i in range(50)]
    )
    store = DatasetStore(tmp_path)
    summary = store.save(content, purpose="scoring")
    where, kind = store.table(summary.id)
    assert kind == "parquet" and where.name == f"{summary.id}.parquet"
    copy = pd.read_parquet(io.BytesIO(where.read_bytes()))
    assert copy[ROW_COLUMN].tolist() == list(range(50))
    pd.testing.assert_frame_equal(copy.drop(columns=[ROW_COLUMN]), pd.read_csv(io.BytesIO(content)))
    assert ROW_COLUMN not in summary.columns
    # A table to tune on gets one too; deleting a dataset removes its copy.
    assert store.table(store.save(GOOD_CSV, target="species").id)[1] == "parquet"
    store.delete(summary.id)
    assert not where.is_file()


def test_a_table_with_a_column_named_as_the_row_numbers_is_read_from_its_csv(
    tmp_path: Path,
) -> None:
    from shared.data import ROW_COLUMN

    store = DatasetStore(tmp_path)
    summary = store.save(f"a,{ROW_COLUMN}\n1,2\n3,4\n".encode(), purpose="scoring")
    assert store.table(summary.id)[1] == "csv"
