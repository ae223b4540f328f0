"""The job summary figure: drawn from API-shaped trials, and not blank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cluster.plots import _spread, plot_job

EPOCHS = 6


def synthetic_job(
    n_trials: int = 8, regression: bool = False, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Trials and histories shaped as the gateway returns them, from a seeded RNG."""
    rng = np.random.default_rng(seed)
    trials: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    for i in range(n_trials):
        trial_id = f"a1b2c_{i:05d}"
        config = {
            "lr": float(10 ** rng.uniform(-4, -1)),
            "batch_size": int(rng.choice([32, 64, 128])),
            "dropout": float(rng.uniform(0.0, 0.5)),
            "hidden_units": 128,  # the same for all: not a tuned parameter
            "weight_decay": float(rng.choice([0.0, 1e-4])),
            "epochs": EPOCHS,
        }
        ceiling = rng.uniform(0.6, 0.97)
        history = []
        for epoch in range(1, EPOCHS + 1):
            quality = ceiling - (ceiling - 0.3) * np.exp(-epoch / 2) + rng.normal(0, 0.01)
            row: dict[str, Any] = {"training_iteration": epoch}
            if regression:
                rmse = 60.0 * (1.2 - quality)
                row |= {"val_rmse": rmse, "val_loss": rmse**2, "val_r2": quality}
            else:
                row |= {
                    "val_accuracy": quality,
                    "val_loss": 1.2 - quality,
                    "training_accuracy": quality + 0.02,
                    "training_loss": 1.1 - quality,
                }
            history.append(row)
        histories[trial_id] = history
        last = {k: v for k, v in history[-1].items() if k != "training_iteration"}
        best = {
            k: (max if k.endswith(("accuracy", "r2")) else min)(r[k] for r in history) for k in last
        }
        trials.append(
            {
                "trial_id": trial_id,
                "state": "TERMINATED",
                "config": config,
                "metrics": last,
                "best_metrics": best,
                "iterations": EPOCHS,
                "early_stopped": False,
            }
        )
    # A trial that failed before its first report.
    trials.append({"trial_id": "a1b2c_99999", "state": "ERROR", "config": {"lr": 0.5}})
    return trials, histories


def assert_is_a_drawing(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert width > 400 and height > 400
    assert pixels.std() > 20
    distinct = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(distinct) > 50


def test_classification_job(tmp_path: Path) -> None:
    trials, histories = synthetic_job()
    out = tmp_path / "plots" / "job.png"
    assert plot_job(trials, histories, "val_accuracy", "max", out) == out
    assert_is_a_drawing(out)


def test_regression_job(tmp_path: Path) -> None:
    trials, histories = synthetic_job(regression=True, seed=1)
    out = plot_job(trials, histories, "val_rmse", "min", tmp_path / "job.png", top=3)
    assert_is_a_drawing(out)


def test_missing_histories_and_a_single_trial_still_draw(tmp_path: Path) -> None:
    trials, _ = synthetic_job(n_trials=1)
    out = plot_job(trials, {}, "val_accuracy", "max", tmp_path / "job.png")
    with Image.open(out) as image:
        assert image.size[0] > 400


def test_no_trial_with_the_metric_names_it(tmp_path: Path) -> None:
    trials, histories = synthetic_job(n_trials=3)
    with pytest.raises(ValueError, match="val_rmse"):
        plot_job(trials, histories, "val_rmse", "min", tmp_path / "job.png")
    assert not (tmp_path / "job.png").exists()
    with pytest.raises(ValueError, match="mode"):
        plot_job(trials, histories, "val_accuracy", "best", tmp_path / "job.png")


def test_curve_labels_are_spread_apart_within_the_axis() -> None:
    positions = _spread([0.50, 0.51, 0.52, 0.95], gap=0.1, low=0.0, high=1.0)
    assert positions[0] == pytest.approx(0.50)
    assert min(np.diff(sorted(positions))) >= 0.1 - 1e-9
    assert max(positions) <= 1.0
    assert _spread([0.99, 1.0], gap=0.1, low=0.0, high=1.0) == pytest.approx([0.9, 1.0])
