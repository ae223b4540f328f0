"""A job's code path run once on a tiny table, so that the first real job does not pay
for what runs only once in a process: imports, torch's first operations (its thread
pools, its kernels' set-up), the first preprocessing fit, the first checkpoint loaded.

Ray's workers run a pack's epochs when the driver starts (warm_up); the
driver runs them too, and its own parts (preparing a table, scoring a checkpoint),
before it takes jobs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch

from services.driver.packed.epoch import PackState
from services.driver.packed.tasks import checkpoint_folder, run_epoch
from services.driver.splits import prepare
from services.driver.training import TrialPlan, evaluate
from services.driver.workers import torch_for_this_worker
from shared.model import ModelBundle
from shared.spec import DatasetSpec
from shared.storage import StoragePath

ROWS = 96


def tiny_plan() -> TrialPlan:
    """A plan over a small mixed table (numbers, a category, gaps), as a job's is made."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=ROWS),
            "b": np.where(rng.random(ROWS) < 0.1, np.nan, rng.normal(size=ROWS)),
            "colour": rng.choice(["red", "green", "blue"], size=ROWS),
            "target": rng.integers(0, 3, size=ROWS),
        }
    )
    data = prepare(frame, DatasetSpec(upload="0" * 32, seed=0), "target")
    return TrialPlan(data=data, metric="val_accuracy", mode="max", seed=0)


def train_tiny(plan: TrialPlan, folder: StoragePath, device: str = "cpu") -> StoragePath:
    """Two epochs of a pack of two on the tiny plan, as a pack's Ray task runs them
    (checkpoints and state written under ``folder``); a member's checkpoint folder."""
    config = {"batch_size": 16, "epochs": 2, "weight_decay": 0.0, "hidden_units": 8}
    state = PackState.new(
        {
            "warm-a": {**config, "lr": 0.01, "dropout": 0.2},
            "warm-b": {**config, "lr": 0.001, "dropout": 0.0, "hidden_units": 16},
        }
    )
    for _ in range(2):
        state, _ = run_epoch(state, plan, folder, 0, set(), device)
    return checkpoint_folder(folder, "warm-a")  # the first epoch improves on nothing


def warm_worker(device: str) -> None:
    """A pack's epochs, in a Ray worker."""
    with tempfile.TemporaryDirectory() as folder:
        train_tiny(tiny_plan(), StoragePath(Path(folder)), device)


@ray.remote(num_cpus=1)
def warm_up() -> int:
    """Start a worker and run a tiny job's epochs in it, so that the first job's epochs
    find it as warm as the next job's do; the worker's process id."""
    warm_worker(torch_for_this_worker())
    return os.getpid()


def warm_driver() -> None:
    """The driver's share of a job besides: a table prepared, the best checkpoint loaded
    and scored (tuning._score_on_test)."""
    plan = tiny_plan()
    with tempfile.TemporaryDirectory() as folder:
        model = ModelBundle.load(train_tiny(plan, StoragePath(Path(folder)))).model
    data = plan.data
    evaluate(model, torch.from_numpy(data.x_val), torch.from_numpy(data.y_val), data)
