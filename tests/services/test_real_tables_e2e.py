"""A table as people export it, through the stack as a user goes: uploaded as it is, its
roles read, tuned by both engines, and raw rows (text, gaps, unseen categories, dates)
predicted over HTTP, by a batch job and by the CLI."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.helpers.cli import tunefleet
from tests.helpers.stack import Stack
from tests.helpers.tables import messy_frame, semicolon_csv

pytestmark = pytest.mark.e2e

# Enough rows that the test split (a fifth) tells models apart: with 400, one row was
# 1.3 points of accuracy, and a model 5 points behind differed by 4 rows.
ROWS = 1000
SPACE = {"lr": {"grid": [0.003, 0.03]}, "hidden_units": 32, "batch_size": 32, "epochs": 30}
RAW_ROWS: list[dict[str, Any]] = [
    {"region": "north", "plan": "yes", "age": 61, "signup": "2022-08-14"},
    {"region": None, "plan": "no", "age": None, "signup": "2021-02-01T09:30:00"},
    {"region": "atlantis", "plan": "yes", "age": "38.5", "signup": None},
]


@pytest.fixture(scope="module")
def messy_upload(stack: Stack) -> dict[str, Any]:
    answer = stack.http.post(
        "/datasets",
        params={"target": "churned"},
        files={"file": ("churn.csv", semicolon_csv(messy_frame(ROWS)), "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    summary: dict[str, Any] = answer.json()
    return summary


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_a_raw_table_tunes_and_its_model_predicts_raw_rows(
    stack: Stack, messy_upload: dict[str, Any], packing: bool
) -> None:
    assert messy_upload["roles"]["signup"] == "datetime"
    assert messy_upload["rows_without_target"] == 6
    spec = {
        "dataset": {"upload": messy_upload["id"], "columns": {"spend": "ignore"}},
        "search_space": SPACE,
        "packing": packing,
    }
    accepted = stack.http.post("/jobs", json=spec)
    assert accepted.status_code == 202, accepted.text
    job = stack.wait_for(accepted.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["rows_without_target"] == 6 and job["rows_used"] == ROWS - 6
    assert job["engine"].startswith("packed" if packing else "unpacked")
    # About as good as a careful scikit-learn pipeline, scored on the same held-out rows.
    assert job["test_metrics"]["test_accuracy"] >= sklearn_accuracy() - 0.05

    model = stack.http.get(f"/models/{job['id']}").json()
    assert model["columns"]["customer_id"] == "ignore" and model["columns"]["spend"] == "ignore"
    answer = stack.http.post(f"/models/{job['id']}/predict", json={"instances": RAW_ROWS})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["predictions"]) <= {"yes", "no"}
    assert np.allclose(np.sum(answer.json()["probabilities"], axis=1), 1.0, atol=1e-5)

    bad = stack.http.post(
        f"/models/{job['id']}/predict", json={"instances": [{**RAW_ROWS[0], "age": "old"}]}
    )
    assert bad.status_code == 422
    assert "instance 0, column 'age': 'old' is not a finite number" in bad.json()["detail"]


def test_batch_scoring_and_the_cli_read_raw_rows_as_predict_does(
    stack: Stack, messy_upload: dict[str, Any], tmp_path: Path
) -> None:
    spec = {"dataset": {"upload": messy_upload["id"]}, "search_space": SPACE}
    job = stack.wait_for(stack.http.post("/jobs", json=spec).json()["id"])
    assert job["state"] == "succeeded", job["error"]
    model = job["id"]
    rows = messy_frame(rows=60, seed=9).drop(columns=["churned"])
    rows.loc[0, "region"] = "atlantis"  # never seen in training
    upload = stack.http.post(
        "/datasets",
        params={"purpose": "scoring"},
        files={"file": ("rows.csv", semicolon_csv(rows), "text/csv")},
    )
    assert upload.status_code == 201, upload.text
    batch = stack.http.post(f"/models/{model}/batch", json={"dataset": upload.json()["id"]})
    assert batch.status_code == 202, batch.text
    assert stack.wait_for(batch.json()["id"])["state"] == "succeeded"
    output = pd.read_csv(io.BytesIO(stack.http.get(f"/jobs/{batch.json()['id']}/output").content))

    instances = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    served = stack.http.post(f"/models/{model}/predict", json={"instances": instances}).json()
    assert output["prediction"].tolist() == served["predictions"]

    path = tmp_path / "rows.csv"
    path.write_bytes(semicolon_csv(rows))
    done = tunefleet(stack, "predict", model, "--csv", str(path), "--as-csv", columns=80)
    assert done.returncode == 0, done.stderr
    printed = pd.read_csv(io.StringIO(done.stdout))
    assert printed["prediction"].tolist() == served["predictions"]


def sklearn_accuracy() -> float:
    """One-hot + impute + logistic regression, trained on the rows a job trains and
    validates on and scored on the rows it holds out: a job's test split is the
    stratified 20% of its rows with a target, drawn with dataset.seed (21)."""
    frame = messy_frame(ROWS).dropna(subset=["churned"]).reset_index(drop=True)
    frame = frame.assign(month=pd.to_datetime(frame["signup"]).dt.month)
    features = frame[["region", "plan", "age", "month"]]
    train, test = train_test_split(
        np.arange(len(frame)), test_size=0.2, stratify=frame["churned"], random_state=21
    )
    model = make_pipeline(
        ColumnTransformer(
            [
                ("text", OneHotEncoder(handle_unknown="ignore"), ["region", "plan"]),
                ("number", SimpleImputer(strategy="median"), ["age", "month"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(features.iloc[train], frame["churned"].iloc[train])
    return float(model.score(features.iloc[test], frame["churned"].iloc[test]))


def test_the_cli_uploads_a_table_and_shows_its_roles_in_80_columns(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "churn.csv"
    path.write_bytes(semicolon_csv(messy_frame(seed=4)))
    done = tunefleet(stack, "upload", str(path), "--target", "churned", columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, done.stdout
    role_of = {line.split()[1]: line for line in lines if line.startswith("│ ")}
    assert "datetime" in role_of["signup"] and "categorical" in role_of["region"]
    assert "ignore: an identifier" in role_of["customer_id"]
    assert "rows have no target and are left out of training" in done.stdout
    dataset_id = done.stdout.split('"upload": "')[1].split('"')[0]
    listed = tunefleet(stack, "datasets", dataset_id[:10], "--json")
    assert listed.returncode == 0 and f'"id": "{dataset_id}"' in listed.stdout
    unknown = tunefleet(stack, "datasets", "ffffffffff")
    assert unknown.returncode == 1 and "no dataset with an id starting" in unknown.stderr
