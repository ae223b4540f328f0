"""A job's code path run once on a tiny table, so that the first real job does not pay
for what runs only once in a process: imports, torch's first operations (its thread
pools, its kernels' set-up), the first preprocessing fit, the first checkpoint loaded.

Ray's workers run it when the driver starts (pack_task.warm_up); the driver runs the
parts that are its own (preparing a table, scoring a checkpoint) before it takes jobs.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import torch

from services.driver.pack_training import PackState, state_to_payload, train_pack_epoch
from services.driver.splits import prepare
from services.driver.training import TrialPlan, evaluate
from shared.model import ModelBundle
from shared.spec import DatasetSpec

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


def train_tiny(device: str = "cpu") -> dict[str, Any]:
    """Two epochs of a pack of two on the tiny table, its state saved as a task saves
    it; the checkpoint payload of one member."""
    plan = tiny_plan()
    config = {"batch_size": 16, "epochs": 2, "weight_decay": 0.0, "hidden_units": 8}
    state = PackState.new(
        {
            "warm-a": {**config, "lr": 0.01, "dropout": 0.2},
            "warm-b": {**config, "lr": 0.001, "dropout": 0.0, "hidden_units": 16},
        }
    )
    payload: dict[str, Any] | None = None
    for _ in range(2):
        state, results = train_pack_epoch(state, plan, device)
        torch.save(state_to_payload(state), io.BytesIO())
        payload = next((r.payload for r in results.values() if r.payload), payload)
    assert payload is not None  # the first epoch improves on nothing
    return payload


def warm_driver() -> None:
    """The driver's share of a job: a table prepared, a checkpoint loaded and scored."""
    data = tiny_plan().data
    model = ModelBundle.from_payload(train_tiny()).model
    evaluate(model, torch.from_numpy(data.x_val), torch.from_numpy(data.y_val), data)
