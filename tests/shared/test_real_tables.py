"""Tables as people export them: read, given roles, prepared with a plan fitted on the
training rows, and raw rows encoded by the plan as /predict and batch scoring do."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.driver.splits import prepare
from shared.data import DatasetStore
from shared.errors import DatasetError
from shared.preprocessing import MISSING, OTHER, ValueReadError, output_names, transform
from shared.spec import DatasetSpec
from tests.helpers.tables import messy_frame, semicolon_csv

SPEC = DatasetSpec(upload="0" * 32)


def test_a_semicolon_file_with_a_bom_and_question_mark_gaps_is_read_and_summarised(
    tmp_path: Path,
) -> None:
    frame = messy_frame()
    summary = DatasetStore(tmp_path).save(semicolon_csv(frame), target="churned")
    assert summary.rows == 400 and summary.task == "classification"
    assert summary.classes == ["no", "yes"]
    assert summary.roles == {
        "customer_id": "ignore",
        "region": "categorical",
        "plan": "categorical",
        "age": "numeric",
        "signup": "datetime",
        "country": "ignore",
        "spend": "numeric",
    }
    assert summary.ignored == {
        "customer_id": "an identifier: a different value in every row",
        "country": "one value only ('NL')",
    }
    # '?' read as a gap: the counts are the table's own.
    assert summary.missing == {
        "region": int(frame["region"].isna().sum()),
        "age": int(frame["age"].isna().sum()),
        "churned": 6,
    }
    assert summary.rows_without_target == 6
    region_counts = frame["region"].value_counts()
    assert summary.categories["region"] == {str(k): int(v) for k, v in region_counts.items()}
    assert summary.categories["plan"].keys() == {"yes", "no"}


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_each_separator_is_sniffed_and_quoted_fields_keep_theirs(
    tmp_path: Path, separator: str
) -> None:
    frame = pd.DataFrame(
        {
            "note": [f"a{separator}b" if i % 3 == 0 else f"n{i % 4}" for i in range(30)],
            "x": range(30),
            "target": [i % 2 for i in range(30)],
        }
    )
    content = frame.to_csv(index=False, sep=separator).encode()
    summary = DatasetStore(tmp_path).save(content)
    assert summary.columns == ["note", "x"]
    assert f"a{separator}b" in summary.categories["note"]


def test_a_parquet_upload_reads_as_the_same_table(tmp_path: Path) -> None:
    frame = messy_frame()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store = DatasetStore(tmp_path)
    from_parquet = store.save(buffer.getvalue(), target="churned")
    from_csv = store.save(semicolon_csv(frame), target="churned")
    assert from_parquet.id != from_csv.id
    assert from_parquet.roles == from_csv.roles and from_parquet.missing == from_csv.missing
    loaded = store.load(from_parquet.id)
    pd.testing.assert_frame_equal(loaded, frame)
    # Kept as it came, and counted against the quota.
    assert store.used_bytes() >= len(buffer.getvalue())


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"a;b;a;target\n1;2;3;0\n", r"more than once: 'a' \(2 times\)"),
        (b"a\tb\ttarget\n1\t2\t0\n3\t4\t5\t1\n", r"Expected 3 fields in line 3, saw 4"),
        (b"PAR1 not really", "starts as a Parquet file but cannot be read"),
    ],
)
def test_what_stays_an_error_says_where(tmp_path: Path, content: bytes, words: str) -> None:
    with pytest.raises(DatasetError, match=words):
        DatasetStore(tmp_path).save(content)


def test_the_plan_is_fitted_on_training_rows_and_encodes_every_role() -> None:
    frame = messy_frame()
    data = prepare(frame, SPEC, "churned")
    assert data.rows_without_target == 6
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 394
    names = data.feature_names
    assert f"region={OTHER}" in names and f"region={MISSING}" in names
    assert {"age", "age:missing", "signup:year", "signup:days"} <= set(names)
    assert not any(n.startswith(("customer_id", "country")) for n in names)
    # MinMax, fitted on training rows: they span [0, 1]; other rows may fall outside.
    age = names.index("age")
    assert data.x_train[:, age].min() == 0.0 and data.x_train[:, age].max() == 1.0
    # A gap takes the training median, and says so in its indicator column.
    column = next(c for c in data.plan["columns"] if c["name"] == "age")
    encoded = transform(data.plan, {name: [None] for name in data.columns})
    assert encoded[0, names.index("age:missing")] == 1.0
    fill = column["parts"][0]["fill"]
    assert encoded[0, age] == pytest.approx(
        fill * column["parts"][0]["scale"] + column["parts"][0]["offset"]
    )


def test_unseen_categories_gaps_and_dates_encode_as_documented() -> None:
    data = prepare(messy_frame(), SPEC, "churned")
    names = data.feature_names
    row = {
        "region": "atlantis",
        "plan": None,
        "age": 50,
        "signup": "2024-02-29T23:00:00+00:00",
        "spend": "12.5",
        "customer_id": "ignored",
        "country": "ignored",
    }
    encoded = transform(data.plan, {name: [value] for name, value in row.items()})[0]
    assert encoded[names.index(f"region={OTHER}")] == 1.0
    assert encoded[[i for i, n in enumerate(names) if n.startswith("region=")]].sum() == 1.0
    assert encoded[names.index(f"plan={MISSING}")] == 1.0
    # Date parts before scaling: read back through the scaler of each part.
    signup = next(c for c in data.plan["columns"] if c["name"] == "signup")
    parts = [
        (encoded[names.index(f"signup:{part}")] - p["offset"]) / p["scale"]
        for part, p in zip(
            ["year", "month", "day_of_week", "day_of_year"], signup["parts"][:4], strict=True
        )
    ]
    assert parts == pytest.approx([2024, 2, 3, 60])  # a Thursday, the 60th day


def test_a_cell_that_cannot_be_read_names_row_column_and_value() -> None:
    data = prepare(messy_frame(), SPEC, "churned")
    good = {name: ["north"] * 2 for name in data.columns}
    good["age"], good["spend"], good["signup"] = [40, 41], [10, 11], ["2022-01-01"] * 2
    transform(data.plan, good)
    with pytest.raises(ValueReadError, match=r"row 1, column 'age': 'old' is not a finite"):
        transform(data.plan, {**good, "age": [40, "old"]})
    with pytest.raises(ValueReadError, match=r"row 0, column 'signup': '01/02/2022' is not an"):
        transform(data.plan, {**good, "signup": ["01/02/2022", None]})


def test_an_all_text_table_trains_on_one_hot_columns() -> None:
    rng = np.random.default_rng(3)
    colour = rng.choice(["red", "green", "blue"], 200)
    size = rng.choice(["S", "M", "L"], 200)
    target = np.where((colour == "red") | (size == "L"), "keep", "drop")
    frame = pd.DataFrame({"colour": colour, "size": size, "verdict": target})
    data = prepare(frame, SPEC, "verdict")
    assert data.columns == {"colour": "categorical", "size": "categorical"}
    assert data.x_train.shape[1] == 3 + 2 + 3 + 2
    assert set(np.unique(data.x_train)) == {0.0, 1.0}


def test_roles_can_be_overridden_and_a_wrong_override_names_the_column() -> None:
    frame = messy_frame()
    spec = SPEC.model_copy(update={"columns": {"age": "ignore", "customer_id": "categorical"}})
    data = prepare(frame, spec, "churned")
    assert data.columns["age"] == "ignore" and "age" not in data.feature_names
    assert data.columns["customer_id"] == "categorical"
    for columns, words in (
        ({"agee": "numeric"}, r"'agee', which is not a feature column"),
        ({"region": "numeric"}, r"makes 'region' numeric, but it holds text \(e\.g\. '\w+'\)"),
        ({"plan": "datetime"}, r"makes 'plan' a datetime, but 'yes' is not an ISO 8601 date"),
    ):
        with pytest.raises(DatasetError, match=words):
            prepare(frame, SPEC.model_copy(update={"columns": columns}), "churned")


def test_a_skewed_positive_target_is_learned_on_a_log_scale_unless_told_not_to() -> None:
    frame = messy_frame().drop(columns=["churned"])
    auto = prepare(frame, SPEC, "spend")
    assert auto.task == "regression" and auto.target_transform == "log"
    training_spend = np.expm1(auto.y_train * auto.target_std + auto.target_mean)
    assert training_spend.min() > 0 and float(np.median(training_spend)) > 5
    plain = prepare(frame, SPEC.model_copy(update={"target_transform": "none"}), "spend")
    assert plain.target_transform == "none"
    # A target that goes below zero is never logged by auto.
    shifted = frame.assign(spend=frame["spend"] - 30)
    assert prepare(shifted, SPEC, "spend").target_transform == "none"


def test_the_quantile_scaler_maps_training_values_onto_a_normal() -> None:
    frame = messy_frame().drop(columns=["churned"])
    data = prepare(frame, SPEC.model_copy(update={"scaler": "quantile"}), "age")
    spend = data.x_train[:, data.feature_names.index("spend")]
    # spend is skewed; through the quantiles it is centred and about unit spread.
    assert abs(float(np.median(spend))) < 0.1 and 0.8 < float(spend.std()) < 1.2
    assert math.isfinite(float(spend.max()))


def test_every_column_ignored_is_a_clear_error() -> None:
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(30)], "target": [i % 2 for i in range(30)]})
    with pytest.raises(
        DatasetError, match=r"every feature column is ignored: 'id' \(an identifier"
    ):
        prepare(frame, SPEC, "target")


def test_output_names_match_the_matrix() -> None:
    data = prepare(messy_frame(), SPEC, "churned")
    assert len(output_names(data.plan)) == data.x_train.shape[1] == len(data.feature_names)


def test_a_category_sent_as_an_object_or_a_list_is_named() -> None:
    data = prepare(messy_frame(), SPEC, "churned")
    row = {name: [None] for name in data.columns}
    for value in ({"a": 1}, [1]):
        with pytest.raises(ValueReadError, match=r"row 0, column 'region': .* is not a category"):
            transform(data.plan, {**row, "region": [value]})
    # Numbers and booleans are categories as their text: 5 is "5", true is "True".
    transform(data.plan, {**row, "region": [5], "plan": [True]})


ODD_VALUES: list[object] = [
    None, 0, -1, 10**400, -(10**400), 1e308, float("nan"), float("inf"), True, "",
    "?", "nan", "inf", "-inf", "1e400", "3.5", "north", "\x00", "é" * 300, "2024-02-29",
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2024-13-01", "T", [], {},
    [1, 2], {"a": 1},
]  # fmt: skip


@pytest.mark.parametrize("seed", range(30))
def test_any_cell_is_read_or_named_never_a_crash(seed: int) -> None:
    """Whatever a JSON row holds, the plan encodes it to finite numbers or raises the
    one error that names the cell (a 422), never another exception (a 500)."""
    data = prepare(messy_frame(), SPEC, "churned")
    rng = np.random.default_rng(seed)
    rows = 5
    columns = {
        name: [ODD_VALUES[i] for i in rng.integers(0, len(ODD_VALUES), rows)]
        for name in data.columns
    }
    try:
        encoded = transform(data.plan, columns)
    except ValueReadError as exc:
        assert exc.column in data.columns and 0 <= exc.row < rows
        return
    assert encoded.shape == (rows, len(data.feature_names))
    assert np.isfinite(encoded).all()


@pytest.mark.parametrize("value", ODD_VALUES)
def test_each_odd_value_in_each_role(value: object) -> None:
    data = prepare(messy_frame(), SPEC, "churned")
    for name in ("region", "age", "signup"):
        columns: dict[str, list[object]] = {n: [None] for n in data.columns}
        columns[name] = [value]
        try:
            encoded = transform(data.plan, columns)
        except ValueReadError as exc:
            assert exc.column == name
            continue
        assert np.isfinite(encoded).all(), (name, value)


def test_a_few_cells_of_a_date_column_that_are_not_dates_train_as_gaps() -> None:
    frame = messy_frame()
    frame.loc[:9, "signup"] = "unknown"  # 10 of 400: the column is still a date
    data = prepare(frame, SPEC, "churned")
    assert data.columns["signup"] == "datetime" and "signup:missing" in data.feature_names
    with pytest.raises(ValueReadError, match=r"'unknown' is not an ISO 8601 date"):
        transform(data.plan, {**{n: [None] for n in data.columns}, "signup": ["unknown"]})


def test_a_parquet_column_of_lists_is_named(tmp_path: Path) -> None:
    frame = pd.DataFrame({"tags": [[1, 2], [3]] * 20, "x": range(40), "target": [0, 1] * 20})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    with pytest.raises(DatasetError, match=r"columns 'tags' \(list<element: int64>\) hold lists"):
        DatasetStore(tmp_path).save(buffer.getvalue())
