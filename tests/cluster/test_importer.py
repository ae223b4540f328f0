"""Reading an experiment folder that plain ``tune.run`` wrote, without tunefleet."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
from ray import tune

from cluster.importer import read_experiment, tunefleet_checkpoint
from shared.model import CHECKPOINT_FILE, MLP, ModelBundle

pytestmark = pytest.mark.ray

# Final val_accuracy per learning rate: 0.01 wins, 0.1 loses.
QUALITY = {0.001: 0.7, 0.01: 0.9, 0.1: 0.4}
EPOCHS = 3


def write_model_file(folder: Path) -> Path:
    """A small but real tunefleet checkpoint file."""
    architecture = {"n_features": 4, "n_outputs": 3, "hidden_units": 8}
    bundle = ModelBundle(
        model=MLP(**architecture),
        architecture=architecture,
        task="classification",
        feature_names=["a", "b", "c", "d"],
        classes=[0, 1, 2],
        scale=torch.ones(4),
        offset=torch.zeros(4),
    )
    path = folder / CHECKPOINT_FILE
    torch.save(bundle.payload(), path)
    return path


def make_trainable(model_file: str) -> Callable[[dict[str, Any]], None]:
    """A trainable as someone without tunefleet writes one. lr=0.01 checkpoints a
    tunefleet model at the end, lr=0.001 a checkpoint of its own format, lr=0.1 none."""

    def trainable(config: dict[str, Any]) -> None:
        lr = config["lr"]
        for epoch in range(1, EPOCHS + 1):
            accuracy = QUALITY[lr] * epoch / EPOCHS
            metrics = {"val_accuracy": accuracy, "val_loss": 1.0 - accuracy}
            if epoch < EPOCHS or lr == 0.1:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as folder:
                if lr == 0.01:
                    shutil.copy(model_file, Path(folder) / CHECKPOINT_FILE)
                else:
                    (Path(folder) / "weights.bin").write_bytes(b"someone else's format")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    return trainable


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """storage_path of a finished ``old-run``; Ray is stopped again before the tests
    read it, since reading must not need it."""
    root = tmp_path_factory.mktemp("experiments")
    model_file = write_model_file(tmp_path_factory.mktemp("model"))
    # address="local" starts a private Ray, never one that may be listening on 6379.
    ray.init(num_cpus=1, include_dashboard=False, address="local")
    try:
        tune.run(
            make_trainable(str(model_file)),
            config={"lr": tune.grid_search(sorted(QUALITY))},
            storage_path=str(root),
            name="old-run",
            reuse_actors=True,
            verbose=0,
        )
    finally:
        ray.shutdown()
    yield root


def test_reads_an_experiment_without_ray_running(storage: Path) -> None:
    assert not ray.is_initialized()
    experiment = read_experiment(storage / "old-run")

    assert experiment.path == (storage / "old-run").resolve()
    assert (experiment.metric, experiment.mode) == ("val_accuracy", "max")
    assert experiment.best_config == {"lr": 0.01}
    assert experiment.best_metrics["val_accuracy"] == pytest.approx(0.9)
    assert experiment.best_metrics["training_iteration"] == EPOCHS
    assert all(isinstance(v, int | float) for v in experiment.best_metrics.values())

    results = experiment.results
    assert len(results) == 3
    assert {"trial_id", "config/lr", "val_accuracy", "val_loss", "training_iteration"} <= set(
        results.columns
    )
    assert results["config/lr"].tolist() == [0.01, 0.001, 0.1]  # best first
    assert results["val_accuracy"].tolist() == pytest.approx([0.9, 0.7, 0.4])
    assert (results["training_iteration"] == EPOCHS).all()


def test_best_checkpoint_is_a_local_folder_with_a_tunefleet_model(storage: Path) -> None:
    experiment = read_experiment(storage / "old-run")
    assert experiment.best_checkpoint is not None and experiment.best_checkpoint.is_dir()
    assert experiment.best_checkpoint.is_relative_to(experiment.path)
    model_file = tunefleet_checkpoint(experiment.best_checkpoint)
    assert model_file == experiment.best_checkpoint / CHECKPOINT_FILE


def test_checkpoints_that_tunefleet_cannot_serve(storage: Path, tmp_path: Path) -> None:
    # lr=0.001 kept a checkpoint, of a format of its own.
    (foreign,) = (storage / "old-run").glob("*lr=0.0010*/checkpoint_*")
    assert tunefleet_checkpoint(foreign) is None
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a torch file")
    assert tunefleet_checkpoint(tmp_path) is None
    assert tunefleet_checkpoint(tmp_path / "missing") is None


def test_best_trial_without_a_checkpoint(storage: Path) -> None:
    # Judged the other way round, lr=0.1 wins, and it saved no checkpoint.
    experiment = read_experiment(storage / "old-run", metric="val_accuracy", mode="min")
    assert experiment.best_config == {"lr": 0.1}
    assert experiment.best_checkpoint is None


def test_metric_and_mode_can_be_chosen(storage: Path) -> None:
    experiment = read_experiment(storage / "old-run", metric="val_loss")
    assert (experiment.metric, experiment.mode) == ("val_loss", "min")
    assert experiment.best_config == {"lr": 0.01}
    with pytest.raises(ValueError, match="val_r2"):
        read_experiment(storage / "old-run", metric="val_r2")


def test_a_moved_experiment_still_finds_its_checkpoint(storage: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "renamed-run"
    shutil.copytree(storage / "old-run", moved)
    experiment = read_experiment(moved)
    assert experiment.best_checkpoint is not None
    assert experiment.best_checkpoint.is_relative_to(moved.resolve())
    assert tunefleet_checkpoint(experiment.best_checkpoint) is not None


def test_a_folder_that_is_not_an_experiment(storage: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an experiment")
    with pytest.raises(ValueError, match="experiment_state"):
        read_experiment(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        read_experiment(tmp_path / "missing")
    # The storage_path instead of storage_path/name: the message names the experiment.
    with pytest.raises(ValueError, match="old-run"):
        read_experiment(storage)
