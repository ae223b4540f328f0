"""Seconds per epoch: our trainable against the blog post's loop, same config.

usage: python -m bench.epoch_speed [rows] [epochs]
One JSON line per batch size: ours_s and reference_s per epoch (training and
validation), their ratio, and both validation accuracies after the last epoch.
Both sides train on one CPU thread, as one trial of the seed does.
"""

from __future__ import annotations

import sys
import time

import torch

from bench.common import emit, seed_like_csv, seed_split
from bench.reference.seed_loop import SeedLoop
from services.driver.training import TrialPlan, train_trial

CONFIG = {"lr": 1e-3, "dropout": 0.3, "hidden_units": 300, "weight_decay": 0.0}


def ours(plan: TrialPlan, config: dict, epochs: int) -> tuple[float, float]:
    stamps = [time.perf_counter()]
    accuracy = [0.0]

    def report(metrics: dict, payload: dict | None) -> None:
        stamps.append(time.perf_counter())
        accuracy[0] = metrics["val_accuracy"]

    train_trial({**config, "epochs": epochs}, plan, report)
    return (stamps[-1] - stamps[0]) / epochs, accuracy[0]


def reference(plan: TrialPlan, config: dict, epochs: int) -> tuple[float, float]:
    data = plan.data
    loop = SeedLoop(data.x_train, data.y_train, data.x_val, data.y_val, config)
    started = time.perf_counter()
    for _ in range(epochs):
        accuracy = loop.epoch()
    return (time.perf_counter() - started) / epochs, accuracy / 100


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(1)
    data = seed_split(seed_like_csv(rows))
    plan = TrialPlan(data=data, metric="val_accuracy", mode="max", seed=21)
    for batch_size in (8, 256):
        config = {**CONFIG, "batch_size": batch_size}
        ours_s, ours_acc = ours(plan, config, epochs)
        reference_s, reference_acc = reference(plan, config, epochs)
        emit(
            {
                "bench": "epoch_seconds",
                "rows": rows,
                "batch_size": batch_size,
                "epochs": epochs,
                "ours_s": round(ours_s, 3),
                "reference_s": round(reference_s, 3),
                "speedup": round(reference_s / ours_s, 2),
                "ours_val_accuracy": round(ours_acc, 4),
                "reference_val_accuracy": round(reference_acc, 4),
            }
        )


if __name__ == "__main__":
    main()
