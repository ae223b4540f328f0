"""Where a pack's epoch goes: seconds per phase of one epoch of the seed grid's packs.

usage: python -m bench.pack_profile [rows] [epochs]
One JSON line per (batch size, members): the seconds of each phase of an epoch, the
mean over ``epochs`` epochs after the first, as a Ray task of the packed engine spends
them (services.driver.packed.tasks.run_epoch), on one CPU thread:
  steps        the training steps (forward, backward, Adam; batches and masks drawn)
  validation   every member's metrics on the validation rows
  results      members' weights and moments taken out, checkpoints of improved members
  checkpoints  those checkpoints written
  state        the pack's state saved for resume
  transfer     the state pickled and unpickled, as Ray hands it to the next epoch
The driver's share (results recorded, the next epoch submitted) is in the driver's log
of a whole job: "N pack epochs, S s recording their results" (bench.seed_grid).
The seed-like table is split 60/20/20, as a job's is; packs are of 40 members, as the
seed grid's 80 configurations per batch size are packed on two CPUs.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from bench.common import emit, seed_like_csv
from bench.packed_speed import configs
from services.driver.packed.epoch import PackState, Phases
from services.driver.packed.tasks import run_epoch
from services.driver.splits import prepare
from services.driver.training import TrialPlan
from services.driver.workers import keep_freed_memory
from shared.spec import DatasetSpec
from shared.storage import StoragePath

PHASES = ("steps", "validation", "results", "checkpoints", "state", "transfer")


def profile(plan: TrialPlan, batch_size: int, members: int, epochs: int) -> dict[str, float]:
    """Mean seconds per phase over ``epochs`` epochs, after one epoch not counted."""
    with tempfile.TemporaryDirectory() as folder:
        experiment = StoragePath(Path(folder))
        state = PackState.new(configs(members, batch_size))
        state, _ = run_epoch(state, plan, experiment, 0, set())
        phases = Phases()
        for _ in range(epochs):
            state, _ = run_epoch(state, plan, experiment, 0, set(), phases=phases)
            with phases("transfer"):
                state = pickle.loads(pickle.dumps(state))
    return {name: phases.seconds.get(name, 0.0) / epochs for name in PHASES}


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    # Torch as a pack's Ray task sets it up (services.driver.workers.torch_for_this_worker).
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    keep_freed_memory()
    spec = DatasetSpec(upload="0" * 32, validation_fraction=0.2, test_fraction=0.2, seed=21)
    data = prepare(pd.read_csv(seed_like_csv(rows)), spec, "target")
    plan = TrialPlan(data=data, metric="val_accuracy", mode="max", seed=21)
    for batch_size in (8, 64, 512):
        for members in (1, 40):
            started = time.perf_counter()
            seconds = profile(plan, batch_size, members, epochs)
            total = sum(seconds.values())
            steps = len(data.y_train) // batch_size
            emit(
                {
                    "bench": "pack_profile",
                    "rows": rows,
                    "batch_size": batch_size,
                    "members": members,
                    "steps_per_epoch": steps,
                    "epoch_s": round(total, 3),
                    **{f"{name}_s": round(value, 3) for name, value in seconds.items()},
                    "step_ms": round(
                        1000 * seconds["steps"] / (len(data.y_train) // batch_size), 3
                    ),
                    "bench_s": round(time.perf_counter() - started, 1),
                }
            )


if __name__ == "__main__":
    main()
