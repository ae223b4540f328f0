"""`tunefleet predict MODEL --csv IN -o OUT`: one request when the rows fit, else a batch job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_digits

from tests.helpers.cli import tunefleet
from tests.helpers.stack import MAX_INSTANCES, Stack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("rows", [MAX_INSTANCES // 2, 3 * MAX_INSTANCES + 11])
def test_predict_a_file_into_another_whatever_its_size(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path, rows: int
) -> None:
    model = quick_job["id"]
    frame = load_digits(as_frame=True).frame.sample(rows, random_state=rows)
    frame.insert(0, "name", [f"scan {i}" for i in range(rows)])
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(source, index=False)

    done = tunefleet(stack, "predict", model, "--csv", str(source), "-o", str(output))
    assert done.returncode == 0, done.stderr
    as_batch = rows > MAX_INSTANCES
    assert ("batch job" in done.stdout) == as_batch, done.stdout

    scored = pd.read_csv(output)
    classes = stack.http.get(f"/models/{model}").json()["classes"]
    added = ["prediction", *(f"probability_{label}" for label in classes)]
    assert list(scored.columns) == [*frame.columns, *added]
    assert scored["name"].tolist() == frame["name"].tolist()  # rows in the file's order
    assert scored["target"].tolist() == frame["target"].tolist()
    features = frame.drop(columns=["name", "target"])
    served: list[Any] = []
    for start in range(0, rows, MAX_INSTANCES):
        instances = features.iloc[start : start + MAX_INSTANCES].to_dict(orient="records")
        answer = stack.http.post(f"/models/{model}/predict", json={"instances": instances})
        served += answer.json()["predictions"]
    assert scored["prediction"].tolist() == served


def test_output_needs_a_csv_to_read(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    done = tunefleet(stack, "predict", quick_job["id"], "-o", str(tmp_path / "out.csv"), stdin="[]")
    assert done.returncode == 1 and "--csv" in done.stderr and "Traceback" not in done.stderr


def test_a_file_or_alias_that_does_not_work_is_an_error_not_a_traceback(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    output = tmp_path / "out.csv"
    output.write_text("kept\n")  # a file from before: a failed run leaves it as it was
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5\n")
    done = tunefleet(stack, "predict", quick_job["id"], "--csv", str(ragged), "-o", str(output))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Expected 2 fields in line 3, saw 3" in done.stderr
    source = tmp_path / "in.csv"
    source.write_text("a,b\n1,2\n")
    done = tunefleet(stack, "predict", "no-such-alias", "--csv", str(source), "-o", str(output))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no-such-alias" in done.stderr
    assert output.read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
