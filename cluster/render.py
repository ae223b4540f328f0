"""How the `tunefleet` command shows things: tables, the progress bar, one-line errors."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from cluster.importer import ImportedExperiment

out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """One line on stderr: what went wrong and what to do."""
    err.print(message, markup=False, highlight=False)


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    table = Table("name", "state", "priority", "trials", "running", "best", "submitted", "ran")
    # Ids are what a person copies into the next command: never wrapped or cut.
    table.add_column("id", no_wrap=True, min_width=32)
    for job in jobs:
        best = job.get("best")
        table.add_row(
            job.get("name") or "",
            job["state"],
            job.get("priority", ""),
            f"{job['trials_done']}/{job['trials_total']}",
            str(job.get("trials_running", 0)),
            f"{best['metric']} {best['value']:.4f}" if best else "",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(job["submitted_at"])),
            _ran(job),
            job["id"],
        )
    out.print(table)


def trials_table(table: pd.DataFrame, metric: str) -> None:
    """The seed's results dataframe: one row per trial, config and metrics, best first."""
    if table.empty:
        out.print("no trials yet")
        return
    config = [c for c in table.columns if c.startswith("config/")]
    if "config/seed" in config and table["config/seed"].nunique() <= 1:
        config.remove("config/seed")  # the job's seed, the same in every row
    metrics = [c for c in (f"best_metrics/{metric}", f"metrics/{metric}") if c in table.columns]
    if "metrics/val_loss" in table.columns and metric != "val_loss":
        metrics.append("metrics/val_loss")
    shown = table[["trial_id", *config, *metrics, "iterations", "state"]]
    frame_table(
        shown.rename(columns=lambda c: c.split("/", 1)[-1] if c.startswith("config/") else c)
    )


def frame_table(frame: pd.DataFrame, title: str | None = None) -> None:
    table = Table(*[str(c) for c in frame.columns], title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*[_cell(v) for v in row])
    out.print(table)


def best(view: dict[str, Any]) -> None:
    """What the seed prints after tuning: the best config, and the best model's scores."""
    found = view["best"]
    out.print(f"Best config: {found['config']}")
    out.print(f"Best {found['metric']}: {found['value']:.4f} (trial {found['trial_id']})")
    if view.get("test_metrics"):
        scores = ", ".join(f"{k} {v:.4f}" for k, v in view["test_metrics"].items())
        out.print(f"Test split: {scores}")


def predictions_frame(answer: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"prediction": answer["predictions"]})
    classes = answer["model"].get("classes") or []
    if answer.get("probabilities") is not None:
        for index, label in enumerate(classes):
            frame[f"p({label})"] = [row[index] for row in answer["probabilities"]]
    return frame


def imported(experiment: ImportedExperiment, top: int) -> None:
    out.print(f"Experiment {experiment.path}: {len(experiment.results)} trials")
    out.print(f"Best config: {experiment.best_config}")
    value = experiment.best_metrics.get(experiment.metric)
    out.print(f"Best {experiment.metric} ({experiment.mode}): {value}")
    frame_table(experiment.results.head(top), title=f"top {top} by {experiment.metric}")


class JobProgress:
    """A live bar: trials done of total, running now, best so far, elapsed, time left."""

    def __init__(self, job_id: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("trials, {task.fields[running]} running, best {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=out,
        )
        self._last: dict[str, Any] | None = None
        self._task: TaskID = self._progress.add_task(
            f"job {job_id[:8]} queued", total=None, running=0, best="-"
        )

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()
        job = self._last
        if job is not None and job["state"] in ("succeeded", "failed", "cancelled"):
            # Below the bar, where it ended in plain words.
            out.print(
                f"{job['state']}: {job['trials_done']}/{job['trials_total']} trials",
                highlight=False,
            )

    def update(self, job: dict[str, Any]) -> None:
        found = job.get("best")
        self._progress.update(
            self._task,
            description=f"job {job['id'][:8]} {job['state']}",
            total=job["trials_total"],
            completed=job["trials_done"],
            running=job.get("trials_running", 0),
            best=f"{found['metric']} {found['value']:.4f}" if found else "-",
        )
        self._last = job


def _ran(job: dict[str, Any]) -> str:
    started = job.get("started_at")
    if started is None:
        return ""
    seconds = (job.get("finished_at") or time.time()) - started
    return f"{seconds:.0f} s"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
