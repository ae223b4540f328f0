"""Configuration-epochs per second: K configurations trained as one pack against one
configuration at a time, as one trial per process trains them.

usage: python -m bench.packed_speed [rows] [unpacked configs]
One JSON line per batch size and K: both rates and their ratio. The configurations
cycle through the seed grid's values (widths 30-300, dropouts 0.3-0.85, four learning
rates); the unpacked side trains a sample of them (every width, one epoch each) with
the trainable's own loop. Both sides run on one CPU thread, in this process.
"""

from __future__ import annotations

import itertools
import sys
import time

import torch

from bench.common import emit, seed_like_csv, seed_split
from services.driver.packed.epoch import PackState, train_pack_epoch
from services.driver.training import TrialPlan, train_trial

WIDTHS = (30, 50, 100, 200, 300)
DROPOUTS = (0.3, 0.5, 0.7, 0.85)
LEARNING_RATES = (3e-5, 5e-4, 1e-3, 7e-4)


def configs(count: int, batch_size: int) -> dict[str, dict]:
    values = itertools.cycle(itertools.product(LEARNING_RATES, DROPOUTS, WIDTHS))
    found = {}
    for index in range(count):
        lr, dropout, width = next(values)
        # Widths vary fastest, so that any K holds every width.
        width = WIDTHS[index % len(WIDTHS)]
        found[f"c{index:03d}"] = {
            "lr": lr, "dropout": dropout, "hidden_units": width, "weight_decay": 0.0,
            "batch_size": batch_size, "epochs": 1,
        }  # fmt: skip
    return found


def unpacked_rate(plan: TrialPlan, batch_size: int, count: int) -> float:
    sample = configs(count, batch_size)
    started = time.perf_counter()
    for config in sample.values():
        train_trial(config, plan, lambda metrics, payload: None)
    return count / (time.perf_counter() - started)


def packed_rate(plan: TrialPlan, batch_size: int, k: int) -> float:
    state = PackState.new(configs(k, batch_size))
    started = time.perf_counter()
    train_pack_epoch(state, plan)
    return k / (time.perf_counter() - started)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    unpacked_count = int(sys.argv[2]) if len(sys.argv) > 2 else len(WIDTHS)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    data = seed_split(seed_like_csv(rows))
    plan = TrialPlan(data=data, metric="val_accuracy", mode="max", seed=21)
    for batch_size in (8, 32, 256):
        unpacked = unpacked_rate(plan, batch_size, unpacked_count)
        for k in (16, 64):
            packed = packed_rate(plan, batch_size, k)
            emit(
                {
                    "bench": "packed_speed",
                    "rows": rows,
                    "batch_size": batch_size,
                    "k": k,
                    "packed_config_epochs_per_s": round(packed, 3),
                    "unpacked_config_epochs_per_s": round(unpacked, 3),
                    "speedup": round(packed / unpacked, 2),
                }
            )


if __name__ == "__main__":
    main()
