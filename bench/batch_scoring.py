"""Batch scoring against /predict: rows per second for one large table, on one stack.

usage: python -m bench.batch_scoring [rows] [predict_requests]
Trains one digits model on a `tunefleet up` stack, uploads ``rows`` digits rows
(1,000,000 by default) as a table to score, and measures side by side:
- the batch job (POST /models/{id}/batch) from submit to succeeded, and with the
  upload and the output's download around it (what `tunefleet predict -o` costs);
- the same rows through POST /models/{id}/predict in requests of 1,000 rows, from 1 and
  from 8 clients: ``predict_requests`` requests are timed (200 by default) and the
  rate extrapolated to every row (``extrapolated: true`` says so).
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
from sklearn.datasets import load_digits

from bench.common import LocalStack, emit

SPEC = {
    "dataset": {"builtin": "digits"},
    "search_space": {"lr": 0.003, "hidden_units": 64, "epochs": 8},
}
REQUEST_ROWS = 1000
CLIENTS = (1, 8)
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


def batch(
    client: httpx.Client, model: str, frame: pd.DataFrame, folder: Path
) -> tuple[float, float]:
    """Rows per second of the batch job alone, and with its upload and download."""
    content = frame.to_csv(index=False).encode()
    started = time.perf_counter()
    uploaded = client.post(
        "/datasets",
        params={"purpose": "scoring"},
        files={"file": ("rows.csv", content, "text/csv")},
    )
    assert uploaded.status_code == 201, uploaded.text
    submitted = time.perf_counter()
    accepted = client.post(f"/models/{model}/batch", json={"dataset": uploaded.json()["id"]})
    accepted.raise_for_status()
    view = wait(client, accepted.json()["id"])
    finished = time.perf_counter()
    out = folder / "out.csv"
    with client.stream("GET", f"/jobs/{view['id']}/output") as answer, out.open("wb") as file:
        for chunk in answer.iter_bytes():
            file.write(chunk)
    downloaded = time.perf_counter()
    rows = len(frame)
    job_s, whole_s = finished - submitted, downloaded - started
    emit({"bench": "batch_scoring", "target": "batch_job", "rows": rows,
          "seconds": round(job_s, 1), "rows_per_s": round(rows / job_s)})  # fmt: skip
    emit({"bench": "batch_scoring", "target": "upload_batch_download", "rows": rows,
          "upload_s": round(submitted - started, 1), "download_s": round(downloaded - finished, 1),
          "csv_bytes": len(content), "seconds": round(whole_s, 1),
          "rows_per_s": round(rows / whole_s)})  # fmt: skip
    return rows / job_s, rows / whole_s


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
            client.post(f"/models/{model}/predict", json={"instances": [[0] * 64]})
            predict_rates = {n: predict(stack.url, model, frame, requests, n) for n in CLIENTS}
            job_rate, whole_rate = batch(client, model, frame, Path(folder))
    for clients, rate in predict_rates.items():
        emit({"bench": "batch_scoring", "target": "ratio", "clients": clients,
              "batch_job_vs_predict": round(job_rate / rate, 1),
              "upload_batch_download_vs_predict": round(whole_rate / rate, 1)})  # fmt: skip


if __name__ == "__main__":
    main()
