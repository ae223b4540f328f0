"""Reading a Ray Tune experiment folder that ``tune.run`` wrote, tunefleet's or anyone's:
one row per trial, the best configuration, and the best trial's best checkpoint.

It reads files only (Ray's ``ExperimentAnalysis``), with no Ray cluster and no
``ray.init``, so that results of an old run can be looked at, or brought into tunefleet,
on any machine that has the folder.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import ExperimentAnalysis
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from shared.model import CHECKPOINT_FILE, ModelBundle
from shared.vocabulary import DEFAULT_METRIC_OF_TASK, mode_of

log = logging.getLogger(__name__)

EXPERIMENT_STATE_GLOB = "experiment_state-*.json"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
# A job folder of the packed engine: its plan of packs, and each trial's best checkpoint.
PACK_PLAN_FILE = "packs.json"
PACKED_CHECKPOINT = "checkpoint_best"
# What a job is judged on when the caller does not say: tunefleet's defaults.
# A classifier's default metric if the trials reported it, else a regressor's.
DEFAULT_METRICS = (DEFAULT_METRIC_OF_TASK["classification"], DEFAULT_METRIC_OF_TASK["regression"])
# Numbers Tune adds to every result that say nothing about the model. Kept out of the
# metrics; training_iteration stays, since it tells how far a trial got.
BOOKKEEPING_KEYS = (
    frozenset(AUTO_RESULT_KEYS) | {"done", "should_checkpoint", "experiment_tag", "trial_id"}
) - {"training_iteration"}


@dataclass
class ImportedExperiment:
    """What an experiment folder holds, judged by one metric and mode."""

    path: Path
    metric: str
    mode: str
    # One row per trial, best first: trial_id, status, config/<name> columns, the last
    # reported metrics, best_<metric> (its best value over the trial) and
    # training_iteration.
    results: pd.DataFrame
    best_config: dict[str, Any]
    # The best trial's last result, numbers only.
    best_metrics: dict[str, Any]
    # Local folder of the best trial's best checkpoint by the metric, if it kept one.
    best_checkpoint: Path | None


def read_experiment(
    path: Path, metric: str | None = None, mode: str | None = None
) -> ImportedExperiment:
    """Read the experiment folder ``path`` (``storage_path/name`` of the run).

    Without ``metric``: val_accuracy (max) if the trials reported it, else val_loss
    (min). Without ``mode``: max for accuracy and R² metrics, else min, as job specs
    do. The best trial is the one with the best value of the metric at any epoch, as
    in tunefleet's driver. ValueError when ``path`` is not an experiment folder or the
    metric is missing.
    """
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    if (Path(path).expanduser() / PACK_PLAN_FILE).is_file():
        return _read_packed(Path(path).expanduser().resolve(), metric, mode)
    folder = _experiment_folder(Path(path))
    try:
        analysis = ExperimentAnalysis(str(folder))
    except Exception as error:
        # The state file is cloudpickled: one from another Ray version, or a truncated
        # one, fails in many ways, none of which say "this folder cannot be read".
        raise ValueError(f"cannot read the Tune experiment in {folder}: {error}") from error

    reported = _reported_metrics(analysis.trials)
    metric, mode = _objective(folder, reported, metric, mode)
    best_trial = analysis.get_best_trial(metric, mode, scope="all")
    if best_trial is None or metric not in best_trial.metric_analysis:
        raise ValueError(
            f"no trial in {folder} has a finite {metric!r}; "
            f"pass --metric with one of: {', '.join(sorted(reported)) or 'none reported'}"
        )
    return ImportedExperiment(
        path=folder,
        metric=metric,
        mode=mode,
        results=_results_frame(analysis.trials, metric, mode),
        best_config=dict(best_trial.config),
        best_metrics=_numbers(best_trial.last_result or {}),
        best_checkpoint=_best_checkpoint(analysis, best_trial, metric, mode),
    )


def _read_packed(folder: Path, metric: str | None, mode: str | None) -> ImportedExperiment:
    """A job folder of tunefleet's packed engine: one folder per trial with its
    params.json, result.json (a line per epoch, as Tune writes) and best checkpoint."""
    trials = []
    for trial_folder in sorted(p for p in folder.iterdir() if (p / RESULT_FILE).is_file()):
        lines = (trial_folder / RESULT_FILE).read_text().splitlines()
        results = [json.loads(line) for line in lines if line.strip()]
        config = json.loads((trial_folder / PARAMS_FILE).read_text())
        trials.append((trial_folder, config, results))
    if not trials:
        raise ValueError(f"{folder} has no trial folder with a {RESULT_FILE} yet")
    reported = set().union(*(set(_numbers(r[-1])) for _, _, r in trials if r))
    metric, mode = _objective(folder, reported - {"training_iteration"}, metric, mode)
    pick = max if mode == "max" else min
    rows, best_of = [], {}
    for trial_folder, config, results in trials:
        values = [r[metric] for r in results if metric in _numbers(r)]
        best_of[trial_folder] = pick(values) if values else math.nan
        status = "TERMINATED" if results and results[-1].get("done") else "RUNNING"
        last = results[-1] if results else {}
        rows.append(_row(trial_folder.name, status, config, last, best_of[trial_folder]))
    ranked = [t for t in trials if not math.isnan(best_of[t[0]])]
    if not ranked:
        raise ValueError(f"no trial in {folder} has a finite {metric!r}")
    best_folder, best_config, best_results = pick(ranked, key=lambda t: best_of[t[0]])
    checkpoint = best_folder / PACKED_CHECKPOINT
    return ImportedExperiment(
        path=folder,
        metric=metric,
        mode=mode,
        results=_frame(rows, metric, mode),
        best_config=dict(best_config),
        best_metrics=_numbers(best_results[-1]),
        best_checkpoint=checkpoint if tunefleet_checkpoint(checkpoint) else None,
    )


def tunefleet_checkpoint(folder: Path) -> Path | None:
    """The model file in a checkpoint folder if tunefleet can serve it, else None.

    It has to be there and load the way the predictor loads it (``ModelBundle.load``,
    tensors only): a checkpoint of some other trainable, or a pickled whole model,
    does not count.
    """
    model_file = Path(folder) / CHECKPOINT_FILE
    if not model_file.is_file():
        return None
    try:
        ModelBundle.load(folder)
    except Exception as error:
        # weights_only refusing a global, a zip that is not torch's, missing keys, a
        # state dict that does not fit the architecture: all mean "not ours".
        log.debug("%s is not a tunefleet checkpoint: %s", model_file, error)
        return None
    return model_file


def _experiment_folder(path: Path) -> Path:
    """``path`` resolved, if it looks like a Tune experiment folder; ValueError saying
    what was expected otherwise."""
    folder = path.expanduser().resolve()
    if folder.is_file() and folder.match(EXPERIMENT_STATE_GLOB):
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{path} is not a folder; expected a Tune experiment folder")
    expected = (
        f"expected a Tune experiment folder (storage_path/name of a tune.run): an "
        f"{EXPERIMENT_STATE_GLOB} file and one folder per trial with a {RESULT_FILE}"
    )
    if not any(folder.glob(EXPERIMENT_STATE_GLOB)):
        inner = sorted(p.name for p in folder.iterdir() if any(p.glob(EXPERIMENT_STATE_GLOB)))
        hint = f"; experiments inside it: {', '.join(inner)}" if inner else ""
        raise ValueError(f"{folder} has no {EXPERIMENT_STATE_GLOB}: {expected}{hint}")
    if not any(folder.glob(f"*/{RESULT_FILE}")):
        raise ValueError(f"{folder} has no trial folder with a {RESULT_FILE}: {expected}")
    return folder


def _reported_metrics(trials: list[Trial]) -> set[str]:
    """Names of the numeric metrics any trial reported last."""
    names: set[str] = set()
    for trial in trials:
        names |= set(_numbers(trial.last_result or {}))
    # A count of reports, never an objective.
    return names - {"training_iteration"}


def _objective(
    folder: Path, reported: set[str], metric: str | None, mode: str | None
) -> tuple[str, str]:
    if metric is None:
        for name in DEFAULT_METRICS:
            if name in reported:
                return name, mode or mode_of(name)
        raise ValueError(
            f"the trials in {folder} reported neither val_accuracy nor val_loss; pass "
            f"--metric (and --mode) with one of: {', '.join(sorted(reported)) or 'none'}"
        )
    if metric not in reported:
        raise ValueError(
            f"no trial in {folder} reported {metric!r}; "
            f"pass --metric with one of: {', '.join(sorted(reported)) or 'none reported'}"
        )
    return metric, mode or mode_of(metric)


def _numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The finite numbers of a result that are metrics, not Tune's bookkeeping."""
    return {
        key: value
        for key, value in result.items()
        if key not in BOOKKEEPING_KEYS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def _flat_config(config: dict[str, Any], prefix: str = "config/") -> dict[str, Any]:
    """Nested config dicts as ``config/outer/inner`` columns, as Tune names them."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= _flat_config(value, f"{prefix}{key}/")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _results_frame(trials: list[Trial], metric: str, mode: str) -> pd.DataFrame:
    rows = []
    for trial in trials:
        analysis = trial.metric_analysis.get(metric)
        best = analysis[mode] if analysis else math.nan
        rows.append(_row(trial.trial_id, trial.status, trial.config, trial.last_result, best))
    return _frame(rows, metric, mode)


def _row(
    trial_id: str, status: str, config: dict[str, Any], last: dict | None, best: float
) -> dict[str, Any]:
    return {
        "trial_id": trial_id,
        "status": status,
        **_flat_config(config),
        **_numbers(last or {}),
        "best": best,
    }


def _frame(rows: list[dict[str, Any]], metric: str, mode: str) -> pd.DataFrame:
    best_column = f"best_{metric}"
    frame = pd.DataFrame(rows).rename(columns={"best": best_column})
    metrics = [c for c in frame.columns if c not in ("trial_id", "status")]
    metrics = [c for c in metrics if not c.startswith("config/")]
    # Identity, then the knobs, then what they gave, objective first.
    leading = [metric, best_column] if metric in frame.columns else [best_column]
    configs = sorted(c for c in frame.columns if c.startswith("config/"))
    rest = sorted(c for c in metrics if c not in leading)
    frame = frame[["trial_id", "status", *configs, *leading, *rest]]
    return frame.sort_values(
        best_column, ascending=mode == "min", na_position="last", kind="stable"
    ).reset_index(drop=True)


def _best_checkpoint(
    analysis: ExperimentAnalysis, trial: Trial, metric: str, mode: str
) -> Path | None:
    """Local folder of the trial's best checkpoint by the metric, if one is on disk."""
    # Ray logs an ERROR for a trial without checkpoints; asking first keeps that
    # ordinary case quiet.
    if trial.checkpoint is None:
        return None
    try:
        checkpoint = analysis.get_best_checkpoint(trial, metric, mode)
    except KeyError:
        # A checkpoint saved with a report that lacked the metric cannot be ranked by
        # it; the last one is the best guess.
        checkpoint = trial.checkpoint
    # A run stored on S3 or the like has no local folder to hand out.
    if checkpoint is None or checkpoint.filesystem is None:
        return None
    if checkpoint.filesystem.type_name != "local":
        return None
    folder = Path(checkpoint.path)
    return folder if folder.is_dir() else None
