"""Warm starts: what a job's spec (``warm_start.jobs``) takes from earlier jobs.

On the same dataset and split (the same ``dataset`` in the spec and the same task), an
earlier trial that ran all its epochs and whose configuration this job would train is
carried over: its row and history become this job's (marked ``carried_from``), it is not
trained again, and it may be the job's best, so the best carried trial's checkpoint is
copied into this job's folder (retention later removes the earlier job's). Optuna is
told their results (``evaluated_rewards``) and suggests from there. On other data
nothing is carried: the earlier jobs' best configurations that this job's space admits
are trained first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, Literal

from services.driver import search
from services.driver.packed.tasks import checkpoint_folder
from services.driver.progress import TrialProgress
from services.driver.training import SEED_KEY
from shared.errors import NotFoundError
from shared.jobs import JobStore
from shared.model import CHECKPOINT_FILE
from shared.results import TrialRow, best_first
from shared.spec import JobSpec
from shared.storage import StoragePath

log = logging.getLogger(__name__)

# On other data: how many of each earlier job's best configurations go first.
FIRST_FROM_EACH_JOB = 3


@dataclasses.dataclass(frozen=True)
class Carried:
    """An earlier job's finished trial, carried over."""

    job_id: str  # the job it ran in (where its checkpoint is)
    row: TrialRow
    value: float  # its best value of this job's metric


@dataclasses.dataclass
class WarmPlan:
    """What a job takes from earlier ones, and what is left for it to train."""

    carried: list[Carried] = dataclasses.field(default_factory=list)
    # Grid and random searches: the configurations left to train, the earlier best
    # first; None: Optuna's own suggestions (a count of them in ``suggestions``).
    to_run: list[dict[str, Any]] | None = None
    suggestions: int = 0
    # Optuna: points it is told the value of (carried), or asked to try first (other data).
    told: list[tuple[dict[str, Any], float]] = dataclasses.field(default_factory=list)
    first: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def carried_ids(self) -> frozenset[str]:
        return frozenset(carried.row.trial_id for carried in self.carried)

    def trials_to_run(self) -> int:
        return len(self.to_run) if self.to_run is not None else self.suggestions

    def runs_nothing(self) -> bool:
        """Every configuration of the job was carried over."""
        return bool(self.carried) and self.trials_to_run() == 0


def plan(
    spec: JobSpec,
    jobs: JobStore,
    task: str,
    objective: tuple[str, Literal["max", "min"]],
    seed: int,
    experiment: StoragePath,
) -> WarmPlan:
    """The job's warm start: earlier trials carried over, and what is left to train.
    A spec without ``warm_start`` gets its whole search. ``experiment`` is the job's
    folder (its earlier jobs' are beside it)."""
    metric, mode = objective
    same_data: list[Carried] = []
    other_best: list[dict[str, Any]] = []
    for job_id in spec.warm_start.jobs if spec.warm_start is not None else []:
        try:
            earlier = jobs.get(job_id)
        except NotFoundError:  # removed since the job was submitted
            log.warning("warm start: job %s is gone; nothing taken from it", job_id)
            continue
        if not isinstance(earlier.spec, JobSpec):
            continue
        records = best_first(jobs.results.trial_records(job_id), metric, mode)
        rows = [TrialRow.model_validate(r) for r in records if metric in r["best_metrics"]]
        if earlier.spec.dataset == spec.dataset and earlier.task == task:
            same_data += [
                Carried(row.carried_from or job_id, row, row.best_metrics[metric])
                for row in rows
                if row.state == "TERMINATED" and not row.early_stopped
            ]
        else:
            other_best += [row.config for row in rows[:FIRST_FROM_EACH_JOB]]
    names = spec.search_space.domains()
    admitted = [
        {name: config[name] for name in names}
        for config in other_best
        if spec.search_space.admits(config)
    ]
    if spec.search.algorithm == "optuna":
        warm = _optuna_plan(spec, same_data, admitted, mode)
    else:
        warm = _drawn_plan(spec, seed, same_data, admitted)
    _keep_best_checkpoint(warm, mode, experiment)
    return warm


def carry(warm: WarmPlan, progress: TrialProgress, jobs: JobStore) -> None:
    """The carried trials' rows and histories recorded as the job's own."""
    progress.carry(
        [
            (
                carried.row.model_copy(update={"carried_from": carried.job_id}),
                jobs.results.history(carried.job_id, carried.row.trial_id),
            )
            for carried in warm.carried
        ]
    )
    if warm.carried:
        log.info("warm start: %d trials carried over", len(warm.carried))


def _optuna_plan(
    spec: JobSpec, same_data: list[Carried], admitted: list[dict[str, Any]], mode: str
) -> WarmPlan:
    """Optuna is told the carried trials' values (the best first, at most the job's
    num_samples of them) and suggests the rest; the earlier best on other data are
    enqueued to go first."""
    tuned = search.optuna_parameters(spec)
    carried = [c for c in same_data if spec.search_space.admits(c.row.config)]
    carried = _each_configuration_once(carried)[: spec.search.num_samples]
    suggestions = spec.search.num_samples - len(carried)
    return WarmPlan(
        carried=carried,
        suggestions=suggestions,
        told=[({k: c.row.config[k] for k in tuned}, c.value) for c in carried],
        first=[{k: config[k] for k in tuned} for config in admitted[:suggestions]],
    )


def _drawn_plan(
    spec: JobSpec, seed: int, same_data: list[Carried], admitted: list[dict[str, Any]]
) -> WarmPlan:
    """The search's configurations less those an earlier trial ran (each earlier trial
    stands in for one configuration: a grid point repeated num_samples times takes as
    many), with the earlier best on other data moved first."""
    pool: dict[str, list[Carried]] = {}
    for carried in same_data:
        pool.setdefault(_key(carried.row.config), []).append(carried)
    warm = WarmPlan(to_run=[])
    assert warm.to_run is not None
    for config in search.configurations(spec, seed):
        match = pool.get(_key(config))
        if match:
            warm.carried.append(match.pop(0))
        else:
            warm.to_run.append(config)
    warm.to_run = _best_first(warm.to_run, admitted)
    return warm


def _best_first(
    to_run: list[dict[str, Any]], admitted: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``to_run`` with the configurations equal to an earlier best first; an earlier best
    the search did not draw (a sampled range) takes the place of a drawn configuration
    (its seed kept), so that the job trains as many as it asked for."""
    first: list[dict[str, Any]] = []
    rest = list(to_run)
    for config in admitted:
        key = _key(config)
        found = next((c for c in rest if _key(c) == key), None)
        if found is not None:
            rest.remove(found)
            first.append(found)
        elif rest and all(_key(c) != key for c in first):
            replaced = rest.pop()
            first.append({**_tuned(config), SEED_KEY: replaced[SEED_KEY]})
    return first + rest


def _keep_best_checkpoint(warm: WarmPlan, mode: str, experiment: StoragePath) -> None:
    """Copy the best carried trial's checkpoint into this job's folder, where the
    engines look for their best trial's (see checkpoint_folder). A carried trial whose
    checkpoint is gone is trained again instead, so the job's best always has one."""
    ranked = sorted(warm.carried, key=lambda c: c.value, reverse=mode == "max")
    for carried in ranked:
        source = _checkpoint(experiment.parent / carried.job_id, carried.row.trial_id)
        if source is not None:
            copy_folder(source, checkpoint_folder(experiment, carried.row.trial_id))
            return
        log.warning(
            "warm start: trial %s of job %s has no checkpoint left; it trains again",
            carried.row.trial_id,
            carried.job_id,
        )
        warm.carried.remove(carried)
        if warm.to_run is not None:
            warm.to_run.append(carried.row.config)
        else:
            warm.suggestions += 1
            warm.told = [t for t in warm.told if t[0] != _tuned(carried.row.config)]


def _checkpoint(experiment: StoragePath, trial_id: str) -> StoragePath | None:
    """A trial's best checkpoint folder: a packed trial's own folder, or the one Tune
    kept in an unpacked trial's folder (named with its trial id)."""
    packed = checkpoint_folder(experiment, trial_id)
    if (packed / CHECKPOINT_FILE).exists():
        return packed
    if not experiment.is_dir():
        return None
    for entry in experiment.entries():
        if entry.is_dir and f"_{trial_id}_" in entry.name:
            kept = sorted(e.name for e in entry.path.entries() if e.name.startswith("checkpoint_"))
            if kept:
                return entry.path / kept[-1]
    return None


def trial_checkpoint(experiments: StoragePath, job_id: str, row: TrialRow) -> StoragePath | None:
    """Where a trial of a job keeps its best checkpoint: in the job's folder, or (carried
    over) in the folder of the job it ran in."""
    found = _checkpoint(experiments / job_id, row.trial_id)
    if found is None and row.carried_from is not None:
        found = _checkpoint(experiments / row.carried_from, row.trial_id)
    return found


def copy_folder(source: StoragePath, target: StoragePath) -> None:
    """Every file below ``source`` written below ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.entries():
        if entry.is_dir:
            copy_folder(entry.path, target / entry.name)
        else:
            (target / entry.name).write_bytes(entry.path.read_bytes())


def _each_configuration_once(carried: Iterable[Carried]) -> list[Carried]:
    """The best trial of each configuration (Optuna is told each point once)."""
    seen: set[str] = set()
    kept = []
    for candidate in carried:
        key = _key(candidate.row.config)
        if key not in seen:
            seen.add(key)
            kept.append(candidate)
    return kept


def _tuned(config: dict[str, Any]) -> dict[str, Any]:
    """A configuration without what is not a parameter (its seed, what it continues)."""
    return {k: v for k, v in config.items() if k not in (SEED_KEY, search.CONTINUES_KEY)}


def _key(config: dict[str, Any]) -> str:
    return repr(sorted(_tuned(config).items()))
