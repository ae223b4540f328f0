"""Batch scoring against /predict: rows per second for one large table, on one stack.

usage: python -m bench.batch_scoring [rows] [predict_requests]
Trains one digits model on a `tunefleet up` stack, uploads ``rows`` digits rows
(1,000,000 by default) as a table to score, and measures side by side:
- the batch job (POST /models/{id}/batch) from submit to succeeded, once with CSV
  output and once with Parquet, and the upload before them;
- the floor: the same work alone in this process (read the upload's Parquet copy,
  score every row, write Parquet or CSV), after the stack has stopped;
- unless ``predict_requests`` is 0, the same rows through POST /models/{id}/predict in
  requests of 1,000 rows, from 1 and from 8 clients: ``predict_requests`` requests are
  timed (200 by default) and the rate extrapolated to every row (``extrapolated:
  true`` says so).
One JSON line per figure, and the ratios.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.csv
import pyarrow.parquet
from sklearn.datasets import load_digits

from bench.common import LocalStack, emit
from services.driver.batch import score_rows
from shared.batch import output_columns
from shared.data import ROW_COLUMN, parquet_copy
from shared.model import ModelBundle

SPEC = {
    "dataset": {"builtin": "digits"},
    "search_space": {"lr": 0.003, "hidden_units": 64, "epochs": 8},
}
REQUEST_ROWS = 1000
CLIENTS = (1, 8)
FORMATS = ("csv", "parquet")
POLL_S = 0.2


def table(rows: int) -> pd.DataFrame:
    """``rows`` digits rows (drawn again and again), their target column kept."""
    digits = load_digits(as_frame=True).frame
    picks = np.random.default_rng(0).integers(0, len(digits), rows)
    return digits.iloc[picks].reset_index(drop=True)


def train(client: httpx.Client) -> str:
    job_id = str(client.post("/jobs", json=SPEC).json()["id"])
    while (state := client.get(f"/jobs/{job_id}").json()["state"]) not in ("succeeded", "failed"):
        time.sleep(1)
    assert state == "succeeded", client.get(f"/jobs/{job_id}").json()["error"]
    return job_id


def upload(client: httpx.Client, frame: pd.DataFrame) -> tuple[str, float]:
    """The table uploaded for scoring: its dataset id and the upload's seconds."""
    content = frame.to_csv(index=False).encode()
    started = time.perf_counter()
    uploaded = client.post(
        "/datasets",
        params={"purpose": "scoring"},
        files={"file": ("rows.csv", content, "text/csv")},
    )
    assert uploaded.status_code == 201, uploaded.text
    seconds = time.perf_counter() - started
    emit({"bench": "batch_scoring", "target": "upload", "rows": len(frame),
          "csv_bytes": len(content), "seconds": round(seconds, 1)})  # fmt: skip
    return str(uploaded.json()["id"]), seconds


def batch(
    client: httpx.Client, model: str, dataset: str, rows: int, output_format: str, folder: Path
) -> float:
    """Seconds of the batch job, submit to succeeded; its output downloaded after."""
    submitted = time.perf_counter()
    accepted = client.post(
        f"/models/{model}/batch", json={"dataset": dataset, "format": output_format}
    )
    accepted.raise_for_status()
    view = wait(client, accepted.json()["id"])
    finished = time.perf_counter()
    out = folder / f"out.{output_format}"
    with client.stream("GET", f"/jobs/{view['id']}/output") as answer, out.open("wb") as file:
        for chunk in answer.iter_bytes():
            file.write(chunk)
    downloaded = time.perf_counter()
    job_s = finished - submitted
    emit({"bench": "batch_scoring", "target": "batch_job", "format": output_format,
          "rows": rows, "seconds": round(job_s, 2), "rows_per_s": round(rows / job_s),
          "download_s": round(downloaded - finished, 1)})  # fmt: skip
    return job_s


def floor(frame: pd.DataFrame, checkpoint: str, folder: Path) -> dict[str, float]:
    """The work of a batch job alone, in this process: read the upload's Parquet copy,
    score every row with the model, write the output (Parquet or CSV). Seconds of each
    output format's whole floor."""
    source = folder / "floor-source.parquet"
    copy = parquet_copy(frame)
    assert copy is not None
    source.write_bytes(copy)
    started = time.perf_counter()
    table = pyarrow.parquet.read_table(source).drop_columns([ROW_COLUMN])
    read = time.perf_counter()
    bundle = ModelBundle.load(checkpoint)
    table = score_rows(bundle, output_columns(bundle.task, bundle.classes), table)
    scored = time.perf_counter()
    pyarrow.parquet.write_table(table, folder / "floor-out.parquet")
    parquet_written = time.perf_counter()
    pyarrow.csv.write_csv(table, folder / "floor-out.csv")
    csv_written = time.perf_counter()
    figures = {
        "read_s": read - started,
        "score_s": scored - read,
        "write_parquet_s": parquet_written - scored,
        "write_csv_s": csv_written - parquet_written,
    }
    floors = {
        "parquet": figures["read_s"] + figures["score_s"] + figures["write_parquet_s"],
        "csv": figures["read_s"] + figures["score_s"] + figures["write_csv_s"],
    }
    emit({"bench": "batch_scoring", "target": "floor", "rows": len(frame),
          **{k: round(v, 2) for k, v in figures.items()},
          **{f"floor_{k}_s": round(v, 2) for k, v in floors.items()}})  # fmt: skip
    return floors


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        view: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if view["state"] in ("succeeded", "failed", "cancelled"):
            assert view["state"] == "succeeded", view.get("error")
            return view
        time.sleep(POLL_S)


def predict(url: str, model: str, frame: pd.DataFrame, requests: int, clients: int) -> float:
    """Rows per second through /predict, ``requests`` requests of REQUEST_ROWS rows
    shared by ``clients`` clients."""
    features = frame.drop(columns=["target"])
    bodies = [
        {"instances": features.iloc[i * REQUEST_ROWS : (i + 1) * REQUEST_ROWS].values.tolist()}
        for i in range(requests)
    ]
    errors: list[int] = []

    def run(mine: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for body in mine:
                answer = client.post(f"/models/{model}/predict", json=body)
                if answer.status_code != 200:
                    errors.append(answer.status_code)

    threads = [threading.Thread(target=run, args=(bodies[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    assert not errors, f"/predict answered {errors[:5]}"
    rate = requests * REQUEST_ROWS / seconds
    emit({"bench": "batch_scoring", "target": "predict_requests", "clients": clients,
          "rows_per_request": REQUEST_ROWS, "requests": requests, "seconds": round(seconds, 1),
          "rows_per_s": round(rate), "extrapolated": requests * REQUEST_ROWS < len(frame),
          "seconds_for_all_rows": round(len(frame) / rate, 1)})  # fmt: skip
    return rate


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    frame = table(rows)
    requests = min(requests, rows // REQUEST_ROWS)
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "TUNEFLEET_MAX_UPLOAD_BYTES": str(1024**3),
            "TUNEFLEET_MAX_DATASET_ROWS": str(max(rows, 1_000_000)),
            "TUNEFLEET_MAX_INSTANCES": str(REQUEST_ROWS),
        }
        stack = LocalStack(Path(folder), **env)
        with stack, httpx.Client(base_url=stack.url, timeout=600) as client:
            model = train(client)
            checkpoint = client.get(f"/models/{model}").json()["checkpoint_uri"]
            client.post(f"/models/{model}/predict", json={"instances": [[0] * 64]})
            predict_rates = {
                n: predict(stack.url, model, frame, requests, n) for n in CLIENTS if requests
            }
            dataset, upload_s = upload(client, frame)
            jobs = {f: batch(client, model, dataset, rows, f, Path(folder)) for f in FORMATS}
        floors = floor(frame, checkpoint, Path(folder))
    for output_format, seconds in jobs.items():
        emit({"bench": "batch_scoring", "target": "ratio", "format": output_format,
              "batch_job_vs_floor": round(seconds / floors[output_format], 2)})  # fmt: skip
    for clients, rate in predict_rates.items():
        job_rate = rows / jobs["csv"]
        whole_rate = rows / (upload_s + jobs["csv"])
        emit({"bench": "batch_scoring", "target": "ratio", "clients": clients,
              "batch_job_vs_predict": round(job_rate / rate, 1),
              "upload_batch_vs_predict": round(whole_rate / rate, 1)})  # fmt: skip


if __name__ == "__main__":
    main()
