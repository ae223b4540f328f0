"""A job spec's search space, searcher and scheduler, in Ray Tune's own terms."""

from __future__ import annotations

import itertools
import random
from collections import Counter
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

from services.driver.training import SEED_KEY, trial_seed
from shared.search_space import (
    SAMPLED,
    Choice,
    Grid,
    LogUniform,
    QUniform,
    RandInt,
    Uniform,
)
from shared.spec import JobSpec

EPOCH = "training_iteration"


def tune_config(spec: JobSpec) -> dict[str, Any]:
    """The param_space for tune.run: each parameter as a constant or a Tune domain."""
    config = _space(spec)
    if _hands_out_configurations(spec):
        # The configurations, seeds included, come from the searcher as preset points;
        # the space only has to admit them.
        for name in spec.search_space.named(Grid):
            config[name] = tune.choice(list(spec.search_space.domains()[name].grid))
        config[SEED_KEY] = tune.randint(0, 2**31)
    return config


def _space(spec: JobSpec) -> dict[str, Any]:
    return {name: _domain(value) for name, value in spec.search_space.domains().items()}


def _hands_out_configurations(spec: JobSpec) -> bool:
    """Grid and random searches run configurations() as Tune's preset points, so that
    unpacked trials get the seeds packed ones get; Optuna suggests its own."""
    return spec.search.algorithm != "optuna"


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
    if spec.continue_from is not None:
        return f"it continues trials of job {spec.continue_from.job} from their checkpoints"
    if spec.packing is False:
        return "packing is off in the job spec"
    if spec.search.algorithm == "optuna":
        return "optuna suggests each configuration from the results of those before it"
    if pauses_trials(spec):
        return "hyperband pauses trials and resumes them later"
    return None


def configurations(spec: JobSpec, seed: int) -> list[dict[str, Any]]:
    """Every configuration a grid or random search tries, drawn by Tune's variant
    generator (seeded), in the order tune.run hands them out, each with its trial's seed
    under SEED_KEY (see trial_seed)."""
    random_state = np.random.RandomState(seed)
    space = _space(spec)
    drawn = []
    if _shuffles_grid(spec):
        for point in _grid_points(spec, seed):
            variants = generate_variants({"config": {**space, **point}}, random_state=random_state)
            drawn.append(next(variants)[1]["config"])
    else:
        for _ in range(spec.search.num_samples):
            variants = generate_variants({"config": space}, random_state=random_state)
            drawn += [variant["config"] for _, variant in variants]
    return _with_seeds(drawn, seed)


def _with_seeds(drawn: list[dict[str, Any]], job_seed: int) -> list[dict[str, Any]]:
    """Each configuration with its seed, from the job's and how many times the same
    configuration came before: num_samples repeats of a grid point differ, while
    different configurations share a seed (and so can share a pack)."""
    seen: Counter[str] = Counter()
    seeded = []
    for config in drawn:
        key = repr(sorted(config.items()))
        seeded.append({**config, SEED_KEY: trial_seed(job_seed, seen[key])})
        seen[key] += 1
    return seeded


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


def search_algorithm(
    spec: JobSpec,
    seed: int,
    to_run: list[dict[str, Any]] | None = None,
    told: list[tuple[dict[str, Any], float]] | None = None,
    first: list[dict[str, Any]] | None = None,
) -> Searcher | SearchAlgorithm:
    """Tune's searcher for the spec, seeded so the same spec draws the same configs:
    for grid and random searches, ``to_run`` of them (default: every one); Optuna told
    the values of the points in ``told`` and asked to try ``first`` first."""
    if not _hands_out_configurations(spec):
        return WarmOptunaSearch(seed, told or [], first or [])
    points = configurations(spec, seed) if to_run is None else to_run
    return BasicVariantGenerator(points_to_evaluate=points, random_state=seed)


class WarmOptunaSearch(OptunaSearch):
    """Tune's OptunaSearch that starts from trials run before (a warm start): their
    points and values go into its study as finished trials once it knows its space,
    before it suggests anything (Tune's own ``evaluated_rewards`` cannot be given
    beside points that have no value yet)."""

    def __init__(
        self,
        seed: int,
        told: list[tuple[dict[str, Any], float]],
        first: list[dict[str, Any]],
    ) -> None:
        super().__init__(seed=seed, points_to_evaluate=first or None)
        self._told = told

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        for point, value in self._told:
            self.add_evaluated_point(point, value)


def optuna_parameters(spec: JobSpec) -> list[str]:
    """The parameters Optuna suggests for the spec (every sampled one)."""
    return spec.search_space.named(*SAMPLED)


# In a continued trial's config: the id of the trial (of the job in the spec's
# continue_from) it goes on from.
CONTINUES_KEY = "continues"


def continued_search(
    spec: JobSpec, configs: list[dict[str, Any]]
) -> tuple[dict[str, Any], SearchAlgorithm, TrialScheduler]:
    """Tune's param space, searcher and scheduler for a job that trains ``configs``
    (earlier trials' configurations, each with CONTINUES_KEY) on to the spec's epochs:
    each runs once, every epoch (no early stopping)."""
    assert spec.continue_from is not None
    points = [{**config, "epochs": spec.continue_from.epochs} for config in configs]
    names = sorted({name for point in points for name in point})
    # A space that admits every point (Tune fills a point's values into it).
    space = {
        name: tune.choice(sorted({repr(p.get(name)): p.get(name) for p in points}.values(),
                                 key=repr))
        for name in names
    }  # fmt: skip
    return space, BasicVariantGenerator(points_to_evaluate=points), FIFOScheduler()


# Tune's "no limit": 0 for its variant generator; its concurrency limiter needs a number.
UNLIMITED_TRIALS = 10_000


def concurrency(spec: JobSpec, search_alg: Any) -> int:
    """The ``max_concurrent`` to give the run's searcher for the spec's limit."""
    if spec.max_concurrent_trials is not None:
        return spec.max_concurrent_trials
    return 0 if isinstance(search_alg, BasicVariantGenerator) else UNLIMITED_TRIALS


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
        return FinishingHyperBand(
            time_attr=EPOCH, max_t=max_epochs, reduction_factor=chosen.reduction_factor
        )
    if chosen.type == "median":
        return MedianStoppingRule(time_attr=EPOCH, grace_period=chosen.grace_period)
    return FIFOScheduler()


class FinishingHyperBand(HyperBandScheduler):
    """Tune's HyperBand, whose finished brackets also stop the trials that were still
    pausing when the bracket finished.

    A bracket that finishes stops its PAUSED trials, but a trial told to pause a moment
    earlier is still saving (RUNNING) then: it becomes PAUSED after the bracket's
    clean-up, nothing ever resumes or stops it, and the run never ends (seen on a busy
    machine, where saves take longer). Before each choice of a trial to run, every
    finished bracket stops the paused trials it still holds.
    """

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        for band in self._hyperbands:
            for bracket in band:
                if bracket is not None and bracket.finished():
                    bracket.cleanup_full(tune_controller)
        return super().choose_trial_to_run(tune_controller)


def pauses_trials(spec: JobSpec) -> bool:
    """HyperBand pauses trials and resumes them from their latest checkpoint."""
    return spec.scheduler.type == "hyperband"
