"""Results table speed: GET /jobs/{id}/trials for a job of 10,000 trials.

usage: python -m bench.results_speed [trials]
Writes the trials into our own redis-server as the driver does, then times the
gateway's route in process (FastAPI's TestClient: the route's own cost, without Serve's
proxy) for CSV, Parquet and JSON, best first and in trial order. Beside it, the same
table built the straightforward way (each row through pydantic, pandas.json_normalize).
One JSON line per figure: median of 5 requests, in seconds.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import redis
from fastapi.testclient import TestClient

from bench.common import emit
from cluster.redis_server import RedisServer
from services.gateway.app import create_app
from shared.jobs import JobStore
from shared.results import TrialRow
from shared.settings import Settings
from shared.spec import JobSpec

REPEATS = 5


def fill(store: JobStore, trials: int) -> str:
    spec = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "search_space": {"epochs": 10}})
    job_id, _ = store.enqueue(spec)
    rng = np.random.default_rng(0)
    for start in range(0, trials, 500):
        for index in range(start, min(trials, start + 500)):
            accuracy = float(rng.uniform(0.5, 1.0))
            store.results.record_trial(
                job_id,
                TrialRow(
                    trial_id=f"bench_{index:05d}",
                    state="TERMINATED",
                    config={"lr": float(rng.choice([1e-4, 1e-3, 1e-2])), "batch_size": 64,
                            "dropout": 0.2, "hidden_units": 128, "weight_decay": 0.0,
                            "epochs": 10},
                    metrics={"val_accuracy": accuracy, "val_loss": 1 - accuracy,
                             "training_accuracy": accuracy, "training_loss": 1 - accuracy},
                    best_metrics={"val_accuracy": accuracy, "val_loss": 1 - accuracy},
                    iterations=10, time_total_s=3.2, node_id="n" * 56, device="cpu",
                ),
            )  # fmt: skip
    return job_id


def timed(call: object) -> float:
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 3)


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder) / "redis") as server:
        store = JobStore(redis.Redis.from_url(server.url, decode_responses=True))
        job_id = fill(store, trials)
        settings = Settings(redis_url=server.url, home=Path(folder))
        client = TestClient(create_app(settings), base_url="http://127.0.0.1")
        url = f"/jobs/{job_id}/trials"
        for label, params in (
            ("csv", {"format": "csv"}),
            ("csv_best_first", {"format": "csv", "sort": "metric"}),
            ("parquet", {"format": "parquet"}),
            ("json", {}),
        ):
            answer = client.get(url, params=params)
            assert answer.status_code == 200, answer.text
            emit({"bench": "results", "trials": trials, "format": label,
                  "seconds": timed(lambda p=params: client.get(url, params=p)),
                  "bytes": len(answer.content)})  # fmt: skip

        def naive() -> str:
            rows = store.results.trials(job_id)  # each row through pydantic
            frame = pd.json_normalize([row.model_dump() for row in rows], sep="/")
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False)
            return buffer.getvalue()

        emit({"bench": "results", "trials": trials, "format": "csv_pydantic_json_normalize",
              "seconds": timed(naive)})  # fmt: skip


if __name__ == "__main__":
    main()
