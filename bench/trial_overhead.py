"""Per-trial overhead: 40 trivial trials through our driver against plain tune.run.

usage: python -m bench.trial_overhead [trials]
Ours: a job of N one-epoch trials on iris (a grid of N learning rates), run by the
driver exactly as a queued job is (Redis progress, checkpoints, best-model scoring),
packed (the default) and unpacked (one Tune trial per configuration).
Plain: tune.run over N trials of a function that reports once, default settings.
One JSON line: seconds per trial of each, and their ratio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import ray
import redis
from ray import tune

from bench.common import emit
from cluster.redis_server import RedisServer
from services.driver import warm
from services.driver.driver import Driver
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.spec import JobSpec


def trivial(config: dict) -> None:
    tune.report({"val_accuracy": config["lr"]})


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    learning_rates = [0.001 * (i + 1) for i in range(trials)]
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder) / "redis") as server:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        jobs = JobStore(client)
        settings = Settings(redis_url=server.url, home=Path(folder))
        driver = Driver(settings, jobs, ModelRegistry(client))
        ray.get(warm.warm_up.remote())  # as the driver does when it starts

        def ours(packing: bool) -> float:
            spec = JobSpec.model_validate(
                {
                    "dataset": {"builtin": "iris"},
                    "search_space": {
                        "lr": {"grid": learning_rates},
                        "hidden_units": 4,
                        "batch_size": 64,
                        "epochs": 1,
                    },
                    "packing": packing,
                }
            )
            job_id, _ = jobs.enqueue(spec)
            lease = jobs.claim(driver.driver_id)
            assert lease is not None
            started = time.perf_counter()
            driver.run_one(lease)
            assert jobs.get(job_id).state == "succeeded", jobs.get(job_id).error
            return (time.perf_counter() - started) / trials

        ours_s, unpacked_s = ours(True), ours(False)

        started = time.perf_counter()
        tune.run(
            trivial,
            config={"lr": tune.grid_search(learning_rates)},
            storage_path=str(Path(folder) / "plain"),
            verbose=0,
        )
        plain_s = (time.perf_counter() - started) / trials
        ray.shutdown()
    emit(
        {
            "bench": "trial_overhead",
            "trials": trials,
            "ours_s_per_trial": round(ours_s, 4),
            "ours_unpacked_s_per_trial": round(unpacked_s, 3),
            "plain_tune_run_s_per_trial": round(plain_s, 3),
            "ratio": round(plain_s / ours_s, 2),
        }
    )


if __name__ == "__main__":
    main()
