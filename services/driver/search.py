"""A job spec's search space, searcher and scheduler, in Ray Tune's own terms."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.search_algorithm import SearchAlgorithm
from ray.tune.search.variant_generator import generate_variants

from shared.search_space import Choice, Grid, LogUniform, QUniform, RandInt, Uniform
from shared.spec import JobSpec

EPOCH = "training_iteration"


def tune_config(spec: JobSpec) -> dict[str, Any]:
    """The param_space for tune.run: each parameter as a constant or a Tune domain."""
    config = {name: _domain(value) for name, value in spec.search_space.domains().items()}
    if _shuffles_grid(spec):
        # The grid's points come from the searcher; the space only has to admit them.
        for name in spec.search_space.named(Grid):
            config[name] = tune.choice(list(spec.search_space.domains()[name].grid))
    return config


def num_samples(spec: JobSpec) -> int:
    """tune.run's num_samples for the spec."""
    return spec.trial_count() if _shuffles_grid(spec) else spec.search.num_samples


def _shuffles_grid(spec: JobSpec) -> bool:
    """Asynchronous early stopping (ASHA, median) can only stop a trial that reaches a
    rung after better ones did; Tune hands a grid out in order, so its first points
    would all be promoted for lack of rivals. Such grids are handed out shuffled."""
    return (
        spec.search.algorithm == "grid"
        and spec.scheduler.type in ("asha", "median")
        and bool(spec.search_space.named(Grid))
    )


def unpacked_reason(spec: JobSpec) -> str | None:
    """Why the job's trials cannot be packed, or None if they can."""
    if spec.packing is False:
        return "packing is off in the job spec"
    if spec.search.algorithm == "optuna":
        return "optuna suggests each configuration from the results of those before it"
    if pauses_trials(spec):
        return "hyperband pauses trials and resumes them later"
    return None


def configurations(spec: JobSpec, seed: int) -> list[dict[str, Any]]:
    """Every configuration the job tries, drawn by Tune's variant generator (seeded):
    the same configurations tune.run would run, in the order it would hand them out."""
    random_state = np.random.RandomState(seed)
    space = tune_config(spec)
    if _shuffles_grid(spec):
        drawn = []
        for point in _grid_points(spec, seed):
            variants = generate_variants({"config": {**space, **point}}, random_state=random_state)
            drawn.append(next(variants)[1]["config"])
        return drawn
    drawn = []
    for _ in range(spec.search.num_samples):
        variants = generate_variants({"config": space}, random_state=random_state)
        drawn += [variant["config"] for _, variant in variants]
    return drawn


def _grid_points(spec: JobSpec, seed: int) -> list[dict[str, Any]]:
    names = spec.search_space.named(Grid)
    grids = [spec.search_space.domains()[name].grid for name in names]
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*grids)]
    points *= spec.search.num_samples
    random.Random(seed).shuffle(points)
    return points


def _domain(value: Any) -> Any:
    if isinstance(value, Grid):
        return tune.grid_search(list(value.grid))
    if isinstance(value, Choice):
        return tune.choice(list(value.choice))
    if isinstance(value, Uniform):
        return tune.uniform(*value.uniform)
    if isinstance(value, QUniform):
        return tune.quniform(*value.quniform)
    if isinstance(value, LogUniform):
        return tune.loguniform(*value.loguniform)
    if isinstance(value, RandInt):
        return tune.randint(*value.randint)
    return value


def search_algorithm(spec: JobSpec, seed: int) -> Searcher | SearchAlgorithm:
    """Tune's searcher for the spec, seeded so the same spec draws the same configs."""
    if spec.search.algorithm == "optuna":
        return OptunaSearch(seed=seed)
    if _shuffles_grid(spec):
        return BasicVariantGenerator(points_to_evaluate=_grid_points(spec, seed), random_state=seed)
    return BasicVariantGenerator(random_state=seed)


def scheduler(spec: JobSpec) -> TrialScheduler:
    """Tune's trial scheduler for the spec; epochs are its unit of time."""
    chosen = spec.scheduler
    max_epochs = chosen.max_epochs or spec.search_space.most_epochs()
    if chosen.type == "asha":
        return ASHAScheduler(
            time_attr=EPOCH,
            max_t=max_epochs,
            grace_period=chosen.grace_period,
            reduction_factor=chosen.reduction_factor,
        )
    if chosen.type == "hyperband":
        return HyperBandScheduler(
            time_attr=EPOCH, max_t=max_epochs, reduction_factor=chosen.reduction_factor
        )
    if chosen.type == "median":
        return MedianStoppingRule(time_attr=EPOCH, grace_period=chosen.grace_period)
    return FIFOScheduler()


def pauses_trials(spec: JobSpec) -> bool:
    """HyperBand pauses trials and resumes them from their latest checkpoint."""
    return spec.scheduler.type == "hyperband"
