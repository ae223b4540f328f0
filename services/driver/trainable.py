"""The Tune trainable: shared.training's loop, reporting to Tune with checkpoints."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from services.driver.pack_task import torch_for_this_worker
from shared.model import CHECKPOINT_FILE
from shared.training import TrialPlan, train_trial


def tunefleet_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """Run one trial; resume from Tune's checkpoint when the trial is restored."""
    device = torch_for_this_worker()

    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume_from = torch.load(
                Path(folder) / CHECKPOINT_FILE, map_location=device, weights_only=True
            )

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, float], payload: dict[str, Any] | None) -> None:
        result = {**metrics, "node_id": node_id}
        if payload is None:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(payload, Path(folder) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    train_trial(config, plan, report, resume_from=resume_from, device=device)
