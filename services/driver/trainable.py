"""The Tune trainable: shared.training's loop, reporting to Tune with checkpoints."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from shared.model import CHECKPOINT_FILE
from shared.training import TrialPlan, train_trial


def tunefleet_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """Run one trial; resume from Tune's checkpoint when the trial is restored."""
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    # Adam's second moments of parameters with no gradient (the bias before BatchNorm)
    # sink into subnormal floats, which the CPU handles many times slower.
    torch.set_flush_denormal(True)

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
