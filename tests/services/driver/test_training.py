import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.driver.prepared import PreparedData
from services.driver.splits import prepare
from services.driver.training import TrialPlan, evaluate, train_trial
from shared.data import DatasetStore, load_frame
from shared.model import CHECKPOINT_FILE, ModelBundle
from shared.spec import DatasetSpec

CONFIG = {"lr": 0.01, "batch_size": 16, "dropout": 0.1, "hidden_units": 32, "weight_decay": 0.0}


@pytest.fixture(scope="module")
def iris() -> PreparedData:
    spec = DatasetSpec(builtin="iris")
    return prepare(load_frame(spec, DatasetStore(Path("/nonexistent"))), spec, "target")


def run(
    data: PreparedData,
    epochs: int,
    resume_from: dict | None = None,
    config: dict[str, Any] | None = None,
    **plan: Any,
) -> list[tuple[dict[str, float], dict | None]]:
    reports: list[tuple[dict[str, float], dict | None]] = []
    plan_args = {"metric": "val_accuracy", "mode": "max", "seed": 7, **plan}
    train_trial(
        {**CONFIG, **(config or {}), "epochs": epochs},
        TrialPlan(data=data, **plan_args),
        lambda metrics, payload: reports.append((metrics, payload)),
        resume_from=resume_from,
    )
    return reports


def test_trial_reports_the_seed_metrics_every_epoch_and_learns(iris: PreparedData) -> None:
    reports = run(iris, epochs=30)
    assert len(reports) == 30
    for metrics, _ in reports:
        assert set(metrics) == {
            "training_accuracy", "val_accuracy", "training_loss", "val_loss", "device",
        }  # fmt: skip
        assert metrics["device"] == "cpu"
        assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["training_accuracy"] <= 1.0
    assert max(m["val_accuracy"] for m, _ in reports) >= 0.9
    assert reports[-1][0]["val_loss"] < reports[0][0]["val_loss"]


def test_checkpoints_come_with_improvements_and_the_last_epoch(iris: PreparedData) -> None:
    reports = run(iris, epochs=12)
    best = -1.0
    for epoch, (metrics, payload) in enumerate(reports, start=1):
        improved = metrics["val_accuracy"] > best
        best = max(best, metrics["val_accuracy"])
        assert (payload is not None) == (improved or epoch == 12)


def test_checkpoint_predicts_on_its_own_after_a_safe_load(
    iris: PreparedData, tmp_path: Path
) -> None:
    metrics, payload = run(iris, epochs=20)[-1]
    assert payload is not None
    torch.save(payload, tmp_path / CHECKPOINT_FILE)
    bundle = ModelBundle.load(tmp_path)  # torch.load(weights_only=True) inside
    assert bundle.feature_names == list(iris.columns) and bundle.classes == [0, 1, 2]
    # The validation split as the plan encoded it: the same answers as in training.
    labels, probabilities = bundle.predict_encoded(iris.x_val)
    assert probabilities is not None
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(np.array(labels) == iris.y_val))
    assert accuracy == pytest.approx(metrics["val_accuracy"], abs=1e-6)
    direct = evaluate(
        bundle.model, torch.from_numpy(iris.x_val), torch.from_numpy(iris.y_val), iris
    )
    assert direct["accuracy"] == pytest.approx(accuracy)


def test_resume_continues_after_the_checkpointed_epoch(iris: PreparedData) -> None:
    first = run(iris, epochs=4)
    payload = first[-1][1]
    assert payload is not None and payload["epoch"] == 4
    rest = run(iris, epochs=6, resume_from=payload)
    assert len(rest) == 2  # epochs 5 and 6 only


def test_a_resumed_trial_reports_what_it_would_have_without_stopping(
    iris: PreparedData,
) -> None:
    config = {**CONFIG, "hidden_layers": 2, "epochs": 6}
    plan = TrialPlan(
        data=iris, metric="val_accuracy", mode="max", seed=7, checkpoint_every_epoch=True
    )
    straight: list[dict[str, Any]] = []
    saved: list[bytes] = []

    def report(metrics: dict[str, Any], payload: dict[str, Any] | None) -> None:
        # Saved the moment it comes, as the trainable saves it for Tune.
        straight.append(metrics)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        saved.append(buffer.getvalue())

    train_trial(config, plan, report)
    after_three = torch.load(io.BytesIO(saved[2]), weights_only=True)
    resumed = run(iris, epochs=6, resume_from=after_three, config={"hidden_layers": 2})
    # The same batches and dropout masks from epoch 4 on, so the same metrics.
    assert [metrics for metrics, _ in resumed] == straight[3:]


def test_same_seed_same_metrics(iris: PreparedData) -> None:
    a = [m for m, _ in run(iris, epochs=3)]
    b = [m for m, _ in run(iris, epochs=3)]
    assert a == b


def test_batch_larger_than_the_data_still_trains(iris: PreparedData) -> None:
    reports = run(iris, epochs=2, config={"batch_size": 4096}, balance=False)
    assert len(reports) == 2 and reports[-1][0]["training_loss"] > 0


def test_deeper_network_trains() -> None:
    spec = DatasetSpec(builtin="wine")
    wine = prepare(load_frame(spec, DatasetStore(Path("/nonexistent"))), spec, "target")
    reports = run(wine, epochs=15, config={"hidden_layers": 3})
    assert max(m["val_accuracy"] for m, _ in reports) >= 0.85
    payload = reports[-1][1]
    assert payload is not None and payload["architecture"]["hidden_layers"] == 3


def test_regression_reports_rmse_and_r2_and_predicts_in_target_units(tmp_path: Path) -> None:
    spec = DatasetSpec(builtin="diabetes")
    diabetes = prepare(load_frame(spec, DatasetStore(Path("/nonexistent"))), spec, "target")
    reports = run(
        diabetes,
        epochs=40,
        config={"lr": 0.01, "hidden_units": 32, "dropout": 0.0, "batch_size": 32},
        metric="val_r2",
    )
    last = reports[-1][0]
    assert {"training_loss", "training_rmse", "val_loss", "val_rmse", "val_r2"} <= set(last)
    assert max(m["val_r2"] for m, _ in reports) > 0.3
    assert last["val_rmse"] == pytest.approx(last["val_loss"] ** 0.5)

    payload = next(p for _, p in reversed(reports) if p is not None)
    torch.save(payload, tmp_path / CHECKPOINT_FILE)
    bundle = ModelBundle.load(tmp_path)
    values, probabilities = bundle.predict_encoded(diabetes.x_val)
    assert probabilities is None
    truth = diabetes.y_val * diabetes.target_std + diabetes.target_mean
    rmse = float(np.sqrt(np.mean((np.array(values) - truth) ** 2)))
    assert 25 < rmse < 80  # in the target's units (disease progression, ~25..346)


def test_checkpoints_from_before_regression_still_load(iris: PreparedData, tmp_path: Path) -> None:
    payload = run(iris, epochs=2)[-1][1]
    assert payload is not None
    old = {k: v for k, v in payload.items() if k not in ("task", "target_mean", "target_std")}
    old["architecture"] = dict(payload["architecture"])
    old["architecture"]["n_classes"] = old["architecture"].pop("n_outputs")
    torch.save(old, tmp_path / CHECKPOINT_FILE)
    bundle = ModelBundle.load(tmp_path)
    labels, probabilities = bundle.predict_encoded(iris.x_val)
    assert bundle.task == "classification" and probabilities is not None
    assert set(labels) <= {0, 1, 2}
