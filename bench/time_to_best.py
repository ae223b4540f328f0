"""Time to best: our engine with ASHA against the blog post's approach with FIFO.

usage: python -m bench.time_to_best [rows] [epochs]
A 48-configuration grid over the seed's parameters (4 learning rates x 3 batch sizes
x 2 dropouts x 2 widths), `epochs` epochs each, on the seed-like table. The reference
is bench/reference/seed_baseline.py, unchanged; ours is a queued job run by the
driver. One JSON line: wall seconds of each, their ratio, and both best validation
accuracies (percent) with the gap in percentage points.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
import redis

from bench.common import REFERENCE, emit, seed_like_csv
from cluster.redis_server import RedisServer
from services.driver.driver import Driver
from shared.data import DatasetStore
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.spec import JobSpec

LEARNING_RATES = [3e-5, 5e-4, 1e-3, 7e-4]
BATCH_SIZES = [64, 128, 256]
DROPOUTS = [0.3, 0.5]
WIDTHS = [100, 300]


def reference(csv: Path, epochs: int) -> dict:
    def joined(values: list) -> str:
        return ",".join(str(v) for v in values)

    done = subprocess.run(
        [
            sys.executable,
            str(REFERENCE / "seed_baseline.py"),
            str(csv),
            str(epochs),
            joined(LEARNING_RATES),
            joined(BATCH_SIZES),
            joined(DROPOUTS),
            joined(WIDTHS),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(csv: Path, epochs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder) / "redis") as server:
        settings = Settings(redis_url=server.url, home=Path(folder))
        upload = DatasetStore(settings.datasets_dir).save(csv.read_bytes())
        spec = JobSpec.model_validate(
            {
                "dataset": {"upload": upload.id, "validation_fraction": 0.2, "test_fraction": 0.01},
                "search_space": {
                    "lr": {"grid": LEARNING_RATES},
                    "batch_size": {"grid": BATCH_SIZES},
                    "dropout": {"grid": DROPOUTS},
                    "hidden_units": {"grid": WIDTHS},
                    "epochs": epochs,
                },
                "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
            }
        )
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        jobs = JobStore(client)
        driver = Driver(settings, jobs, ModelRegistry(client))
        job_id, _ = jobs.enqueue(spec)
        lease = jobs.claim(driver.driver_id)
        assert lease is not None
        started = time.perf_counter()
        driver.run_one(lease)
        wall_s = time.perf_counter() - started
        ray.shutdown()
        job = jobs.get(job_id)
        assert job.state == "succeeded" and job.best is not None, job.error
        return wall_s, job.best.value * 100


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    csv = seed_like_csv(rows)
    ours_s, ours_best = ours(csv, epochs)
    seed = reference(csv, epochs)
    emit(
        {
            "bench": "time_to_best",
            "rows": rows,
            "configs": len(LEARNING_RATES) * len(BATCH_SIZES) * len(DROPOUTS) * len(WIDTHS),
            "epochs": epochs,
            "ours_asha_s": round(ours_s, 1),
            "reference_fifo_s": seed["wall_s"],
            "speedup": round(seed["wall_s"] / ours_s, 2),
            "ours_best_val_accuracy": round(ours_best, 2),
            "reference_best_val_accuracy": round(seed["best_val_accuracy"], 2),
            "gap_pp": round(seed["best_val_accuracy"] - ours_best, 2),
        }
    )


if __name__ == "__main__":
    main()
