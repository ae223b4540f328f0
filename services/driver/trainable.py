"""The Tune trainable: services.driver.training's loop, reporting to Tune with checkpoints.

A job's data reaches its trials as a file in the job's experiment folder (in the
storage every node reaches, a folder or a bucket), not through Ray's object store:
what ``tune.with_parameters`` puts there stays pinned for the driver's whole life, one
copy per job it ever ran.
"""

from __future__ import annotations

import functools
import io
import itertools
import pickle
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from services.driver.search import CONTINUES_KEY
from services.driver.training import TrialPlan, train_trial
from services.driver.workers import torch_for_this_worker
from shared.model import CHECKPOINT_FILE
from shared.storage import StoragePath

PLAN_FILE = "plan.pkl"


def write_plan(plan: TrialPlan, path: StoragePath) -> None:
    """Save what a job's trials share where they read it (written whole at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))


@functools.lru_cache(maxsize=1)
def read_plan(path: StoragePath) -> TrialPlan:
    """The plan a driver wrote; read once per process (a reused trial actor runs the
    job's next trial without reading it again)."""
    plan: TrialPlan = pickle.loads(path.read_bytes())  # written by this job's driver
    return plan


def tunefleet_trial(
    config: dict[str, Any],
    plan_file: StoragePath,
    continued: dict[str, StoragePath] | None = None,
) -> None:
    """Run one trial; resume from Tune's checkpoint when the trial is restored, or, for
    a trial that continues an earlier job's (its config's CONTINUES_KEY), from that
    trial's checkpoint folder in ``continued``."""
    plan = read_plan(plan_file)
    device = torch_for_this_worker()

    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume_from = torch.load(
                Path(folder) / CHECKPOINT_FILE, map_location=device, weights_only=True
            )
    # A continued trial counts its epochs on from the earlier trial's (Tune would count
    # from 1 again): its table row and history say which epochs these are.
    epochs_before = 0
    earlier = (continued or {}).get(config.get(CONTINUES_KEY, ""))
    if resume_from is None and earlier is not None:
        payload = (earlier / CHECKPOINT_FILE).read_bytes()
        resume_from = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
        epochs_before = int(resume_from["epoch"])
    epoch_numbers = itertools.count(epochs_before + 1)

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, float], payload: dict[str, Any] | None) -> None:
        result = {**metrics, "node_id": node_id}
        if epochs_before:
            result["training_iteration"] = next(epoch_numbers)
        if payload is None:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(payload, Path(folder) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    train_trial(config, plan, report, resume_from=resume_from, device=device)
