"""A job's trials as the driver draws them: configurations and their seeds, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ray.tune.experiment import Experiment
from ray.tune.search.basic_variant import BasicVariantGenerator

from services.driver import search
from services.driver.packed.epoch import pack_key
from services.driver.packed.network import initial_state_dict
from services.driver.splits import prepare
from services.driver.training import TrialPlan, train_trial
from shared.data import DatasetStore, load_frame
from shared.spec import DatasetSpec, JobSpec

TINY = {"hidden_units": 16, "batch_size": 16, "epochs": 1}


@pytest.fixture(scope="module")
def plan() -> TrialPlan:
    spec = DatasetSpec(builtin="iris")
    data = prepare(load_frame(spec, DatasetStore(Path("/nonexistent"))), spec, "target")
    return TrialPlan(data=data, metric="val_accuracy", mode="max", seed=7)


def job(space: dict[str, Any], **search_settings: Any) -> JobSpec:
    return JobSpec.model_validate(
        {"dataset": {"builtin": "iris"}, "search_space": {**TINY, **space}, **search_settings}
    )


def first_epoch(config: dict[str, Any], plan: TrialPlan) -> dict[str, Any]:
    reports: list[dict[str, Any]] = []
    train_trial(config, plan, lambda metrics, _payload: reports.append(metrics))
    return reports[0]


def test_repeats_of_a_grid_point_are_trials_of_their_own(plan: TrialPlan) -> None:
    spec = job({"lr": {"grid": [0.01]}}, search={"num_samples": 2})
    first, second = search.configurations(spec, plan.seed)
    assert plan.seed_of(first) != plan.seed_of(second)
    n_features, n_outputs = len(plan.data.feature_names), len(plan.data.classes)
    weights = [
        initial_state_dict(n_features, n_outputs, 16, 1, plan.seed_of(config))
        for config in (first, second)
    ]
    assert not torch.equal(weights[0]["layers.0.weight"], weights[1]["layers.0.weight"])
    assert first_epoch(first, plan) != first_epoch(second, plan)
    # Packs train on one seed: the repeats go to packs of their own.
    assert pack_key(first) != pack_key(second)


def test_a_rerun_draws_the_same_trials_and_another_job_seed_other_ones() -> None:
    spec = job({"lr": {"grid": [0.01, 0.1]}}, search={"num_samples": 3})
    assert search.configurations(spec, 5) == search.configurations(spec, 5)
    seeds = {config["seed"] for config in search.configurations(spec, 5)}
    assert len(seeds) == 3
    assert seeds.isdisjoint(config["seed"] for config in search.configurations(spec, 6))


def test_different_configurations_still_share_a_pack() -> None:
    spec = job({"lr": {"loguniform": [0.001, 0.1]}}, search={"num_samples": 4})
    configs = search.configurations(spec, 5)
    assert len({config["lr"] for config in configs}) == 4
    assert len({pack_key(config) for config in configs}) == 1


def test_a_configuration_drawn_twice_gets_two_seeds() -> None:
    spec = job({"lr": {"choice": [0.01, 0.1]}}, search={"num_samples": 6})
    configs = search.configurations(spec, 5)
    assert len({(config["lr"], config["seed"]) for config in configs}) == 6


def handed_out_by_tune(spec: JobSpec, seed: int) -> list[dict[str, Any]]:
    """The configurations Tune's searcher gives the trials of an unpacked run."""
    searcher = search.search_algorithm(spec, seed)
    assert isinstance(searcher, BasicVariantGenerator)
    experiment = Experiment(
        "job",
        run=lambda config: None,
        config=search.tune_config(spec),
        num_samples=spec.trial_count(),
    )
    searcher.add_configurations([experiment])
    configs = []
    while (trial := searcher.next_trial()) is not None:
        configs.append(trial.config)
    return configs


GRID = {"lr": {"grid": [0.01, 0.1]}, "hidden_units": {"grid": [8, 16]}, "epochs": 3}


@pytest.mark.parametrize(
    ("space", "settings"),
    [
        (GRID, {"search": {"num_samples": 2}}),
        (GRID, {"search": {"num_samples": 3}, "scheduler": "asha"}),  # a shuffled grid
        (
            {"lr": {"loguniform": [0.001, 0.1]}, "dropout": {"quniform": [0.0, 0.5, 0.1]}},
            {"search": {"num_samples": 5}},
        ),
    ],
)
def test_unpacked_trials_get_the_configurations_and_seeds_of_packed_ones(
    space: dict[str, Any], settings: dict[str, Any]
) -> None:
    spec = job(space, **settings)
    handed_out = handed_out_by_tune(spec, 5)
    assert handed_out == search.configurations(spec, 5)
    assert len(handed_out) == spec.trial_count()
