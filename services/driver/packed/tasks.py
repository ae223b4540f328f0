"""The Ray tasks of the packed engine (one epoch of a pack), and where they keep a
pack's files.

Tasks, not actors: Ray keeps its idle worker processes (torch imported, this module
loaded) between tasks and between jobs, so the next epoch or the next job starts in a
warm process, while an idle worker holds no CPU that the autoscaler or Tune's trials
might want.
"""

from __future__ import annotations

import io
import time
from typing import Any

import ray
import torch

from services.driver.packed.epoch import (
    PackState,
    Phases,
    state_to_payload,
    train_pack_epoch,
)
from services.driver.training import TrialPlan
from services.driver.workers import torch_for_this_worker
from shared.model import CHECKPOINT_FILE
from shared.storage import StoragePath

BEST_CHECKPOINT = "checkpoint_best"
PACKS_FOLDER = "packs"


def state_file(experiment_dir: StoragePath, index: int, epoch: int) -> StoragePath:
    """Where pack ``index``'s state after ``epoch`` is saved: one of two files, in turn,
    so that writing the next epoch's never touches the last committed one."""
    return experiment_dir / PACKS_FOLDER / f"{index:04d}" / f"state-{epoch % 2}.pt"


def committed_file(experiment_dir: StoragePath, index: int) -> StoragePath:
    """The epoch of pack ``index`` whose results the driver has recorded: the state a
    resumed job goes on from (state_file of that epoch)."""
    return experiment_dir / PACKS_FOLDER / f"{index:04d}" / "committed"


def merged_file(experiment_dir: StoragePath, index: int) -> StoragePath:
    """Names the pack that pack ``index`` merged into, once it has: its members train
    there from then on (a resumed job finds them in that pack's state, or in this one's
    last committed state if that pack has not committed an epoch since)."""
    return experiment_dir / PACKS_FOLDER / f"{index:04d}" / "merged_into"


def checkpoint_folder(experiment_dir: StoragePath, trial_id: str) -> StoragePath:
    """Where a packed trial keeps its best checkpoint."""
    return experiment_dir / trial_id / BEST_CHECKPOINT


@ray.remote(num_returns=2)
def train_epoch(
    state: PackState,
    plan: TrialPlan,
    experiment_dir: StoragePath,
    index: int,
    ended: set[str],
    *absorbed: PackState,
) -> tuple[PackState, dict[str, dict[str, Any]]]:
    """Train the pack one epoch, with the members of the packs it ``absorbed`` (of its
    kind, after the same epoch) and without the members that ``ended`` after the last;
    write improved members' checkpoints and the pack's new state (where it was
    trained: the driver reads only the results, and commits the epoch once it has
    recorded them); return the new state and each member's result (metrics, device,
    node, seconds)."""
    device = torch_for_this_worker()
    node_id = ray.get_runtime_context().get_node_id()
    state = state.merged(*absorbed) if absorbed else state
    return run_epoch(state, plan, experiment_dir, index, ended, device, node_id)


def run_epoch(
    state: PackState,
    plan: TrialPlan,
    experiment_dir: StoragePath,
    index: int,
    ended: set[str],
    device: str = "cpu",
    node_id: str | None = None,
    phases: Phases | None = None,
) -> tuple[PackState, dict[str, dict[str, Any]]]:
    """train_epoch's work, in this process; ``phases`` adds up where its time went."""
    phase = phases or Phases()
    started = time.perf_counter()
    new_state, results = train_pack_epoch(state.without(ended), plan, device, phase)
    with phase("checkpoints"):
        for trial_id, result in results.items():
            if result.payload is not None:
                _save(result.payload, checkpoint_folder(experiment_dir, trial_id))
    with phase("state"):
        saved = io.BytesIO()
        torch.save(state_to_payload(new_state), saved)
        path = state_file(experiment_dir, index, new_state.epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(saved.getvalue())
    seconds = time.perf_counter() - started
    return new_state, {
        trial_id: {
            **result.metrics,
            "device": device,
            "node_id": node_id,
            "epoch": new_state.epoch,
            "epoch_s": seconds,
        }
        for trial_id, result in results.items()
    }


def _save(payload: dict[str, Any], folder: StoragePath) -> None:
    """Replace the checkpoint at once: a reader never sees half of one."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    (folder / CHECKPOINT_FILE).write_bytes(buffer.getvalue())
