"""How the `tunefleet` command shows things: tables, the progress bar, one-line errors."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
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
from rich.text import Text

from shared.vocabulary import JobStatus

if TYPE_CHECKING:
    from cluster.importer import ImportedExperiment

out = Console()
err = Console(stderr=True)

# Ids in tables are cut to the shortest unique prefix of at least this many characters.
ID_PREFIX_MIN = 8
# Free text in a table (a name, an alias list) wraps past this many characters.
TEXT_WIDTH_MAX = 24
# Tables are measured as if the terminal were this wide, to learn their natural width.
TABLE_WIDTH_MAX = 10_000
# The progress bar's full line (bar, running trials, metric name, time so far) needs
# this many columns; on fewer it is shorter, with a bar this wide.
PROGRESS_FULL_WIDTH = 150
PROGRESS_BAR_FULL = 40
PROGRESS_BAR_NARROW = 10


def fail(message: str) -> None:
    """One line on stderr: what went wrong and what to do."""
    err.print(message, markup=False, highlight=False)


@dataclass
class Column:
    """One column of a table: its header, its cells as text, and its rank (0 is kept
    longest when the terminal is too narrow for every column)."""

    header: str
    cells: list[str]
    rank: int
    justify: JustifyMethod = "left"
    # Free text (a job's name): wraps at TEXT_WIDTH_MAX rather than widening the table.
    wraps: bool = False


def show_table(columns: list[Column], title: str | None = None, wide: bool = False) -> None:
    """Print the columns that fit the terminal, highest rank first, in their own order,
    and name the ones left out. Nothing is ever cut to an ellipsis: a person copies
    ids and values from here. With ``wide``, every column, however wide the table."""
    shown = list(columns)
    natural = _natural_width(shown, title)
    while not wide and len(shown) > 1 and natural > out.width:
        # The lowest rank goes first; of equal ranks, the rightmost.
        shown.remove(max(reversed(shown), key=lambda column: column.rank))
        natural = _natural_width(shown, title)
    width = out.width
    try:
        out.width = max(width, natural)
        out.print(_table(shown, title))
    finally:
        out.width = width
    hidden = [column.header.replace("\n", " ") for column in columns if column not in shown]
    if hidden:
        out.print(
            f"not shown at {width} columns: {', '.join(hidden)} (--wide shows them)",
            style="dim",
            highlight=False,
            markup=False,
        )


def short_ids(ids: list[str]) -> list[str]:
    """The ids cut to one length, the shortest of at least ID_PREFIX_MIN characters at
    which no two of them are the same (as git abbreviates commits)."""
    length = ID_PREFIX_MIN
    # Sorted, the id sharing the longest start with any other is next to that other.
    for first, second in itertools.pairwise(sorted(set(ids))):
        shared = next(
            (index for index, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
            min(len(first), len(second)),
        )
        length = max(length, shared + 1)
    return [found[:length] for found in ids]


def jobs_table(jobs: list[dict[str, Any]], wide: bool = False) -> None:
    """The jobs, newest first: id, name, state, trials, best value, then more."""
    if not jobs:
        out.print("no jobs yet; `tunefleet submit SPEC` queues one")
        return
    best = [job.get("best") or {} for job in jobs]
    show_table(
        [
            Column("id", short_ids([job["id"] for job in jobs]), 0),
            Column("name", [job.get("name") or "" for job in jobs], 2, wraps=True),
            Column("state", [job["state"] for job in jobs], 1),
            Column(
                "trials", [f"{job['trials_done']}/{job['trials_total']}" for job in jobs], 3,
                justify="right",
            ),
            Column("best", [_metric(b.get("value")) for b in best], 4, justify="right"),
            Column("metric", [b.get("metric") or job.get("metric") or "" for job, b in
                              zip(jobs, best, strict=True)], 6),
            Column("submitted", [_when(job["submitted_at"]) for job in jobs], 5),
            Column("ran", [_ran(job) for job in jobs], 7, justify="right"),
            Column("running", [str(job.get("trials_running", 0)) for job in jobs], 8,
                   justify="right"),
            Column("priority", [job.get("priority", "") for job in jobs], 9),
            Column("tenant", [job.get("tenant", "") for job in jobs], 10),
        ],
        wide=wide,
    )  # fmt: skip


def models_table(models: list[dict[str, Any]], aliases: dict[str, str], wide: bool) -> None:
    """The registered models, newest first: id, aliases, metric and scores."""
    if not models:
        out.print("no models yet: a job that succeeds registers its best one")
        return
    named: dict[str, list[str]] = {}
    for alias, model_id in sorted(aliases.items()):
        named.setdefault(model_id, []).append(alias)
    tests = [model.get("test_metrics") or {} for model in models]
    show_table(
        [
            Column("id", short_ids([model["id"] for model in models]), 0),
            Column("aliases", [", ".join(named.get(m["id"], [])) for m in models], 1,
                   wraps=True),
            Column("metric", [model["metric"] for model in models], 3),
            Column("validation", [_metric(model["validation_value"]) for model in models], 2,
                   justify="right"),
            Column("test", [", ".join(f"{k.removeprefix('test_')} {_metric(v)}"
                                      for k, v in test.items()) for test in tests], 4,
                   wraps=True),
            Column("task", [model.get("task", "") for model in models], 6),
            Column("registered", [_when(model["created_at"]) for model in models], 5),
            Column("features", [str(len(model["feature_names"])) for model in models], 7,
                   justify="right"),
            Column("tenant", [model.get("tenant", "") for model in models], 8),
        ],
        wide=wide,
    )  # fmt: skip


def trials_table(table: pd.DataFrame, metric: str, wide: bool = False) -> None:
    """The seed's results dataframe: one row per trial, config and metrics, best first.
    When narrow, the tuned parameters and the metric stay; what every row shares goes."""
    if table.empty:
        out.print("no trials yet")
        return
    config = [c for c in table.columns if c.startswith("config/")]
    best, last = f"best_metrics/{metric}", f"metrics/{metric}"
    rest = [last, "metrics/val_loss", "iterations", "state", "time_total_s", "early_stopped"]
    if "error" in table.columns and table["error"].notna().any():
        rest.append("error")
    if "carried_from" in table.columns and table["carried_from"].notna().any():
        # Carried over by a warm start: the earlier job's short id, as the CLI takes it.
        table = table.assign(carried_from=table["carried_from"].str[:8])
        rest.append("carried_from")
    order = [c for c in dict.fromkeys(["trial_id", best, *rest]) if c in table.columns]
    ranks = {name: rank if rank < 2 else rank + 1 for rank, name in enumerate(order)}
    ranks |= {c: 2 if table[c].nunique(dropna=False) > 1 else len(order) + 1 for c in config}
    if "carried_from" in order:  # which rows a warm start carried over stays in view
        ranks["carried_from"] = 2
    shown = table[[order[0], *config, *order[1:]]]
    frame_table(shown, ranks=ranks, wide=wide, headers=_trial_header)


def frame_table(
    frame: pd.DataFrame,
    title: str | None = None,
    ranks: dict[str, int] | None = None,
    wide: bool = False,
    headers: Callable[[str], str] = str,
) -> None:
    """A dataframe as a table; ``ranks`` (by column name, default: left to right) say
    which columns stay on a narrow terminal."""
    ranks = ranks or {}
    columns = [
        Column(
            headers(str(name)),
            [_cell(value) for value in frame[name]],
            ranks.get(str(name), index),
            justify="right" if pd.api.types.is_numeric_dtype(frame[name]) else "left",
        )
        for index, name in enumerate(frame.columns)
    ]
    show_table(columns, title=title, wide=wide)


# What a job's stopped_by means, as the CLI says it.
STOP_REASONS = {
    "target": "its stop target (a trial reached it)",
    "no_improvement": "its no_improvement rule (no new best for that many trials)",
    "time_budget": "its time_budget_s",
}


def best(view: dict[str, Any]) -> None:
    """What the seed prints after tuning: the best config, and the best model's scores."""
    found = view["best"]
    out.print(f"Best config: {found['config']}")
    out.print(f"Best {found['metric']}: {found['value']:.4f} (trial {found['trial_id']})")
    if view.get("test_metrics"):
        scores = ", ".join(f"{k} {v:.4f}" for k, v in view["test_metrics"].items())
        out.print(f"Test split: {scores}")
    if view.get("stopped_by"):
        out.print(f"Ended early by: {STOP_REASONS.get(view['stopped_by'], view['stopped_by'])}")


def predictions_frame(answer: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"prediction": answer["predictions"]})
    classes = answer["model"].get("classes") or []
    if answer.get("probabilities") is not None:
        for index, label in enumerate(classes):
            frame[f"p({label})"] = [row[index] for row in answer["probabilities"]]
    return frame


def imported(experiment: ImportedExperiment, top: int, wide: bool = False) -> None:
    out.print(f"Experiment {experiment.path}: {len(experiment.results)} trials")
    out.print(f"Best config: {experiment.best_config}")
    value = experiment.best_metrics.get(experiment.metric)
    out.print(f"Best {experiment.metric} ({experiment.mode}): {value}")
    results = experiment.results.head(top)
    leading = ["trial_id", f"best_{experiment.metric}", experiment.metric]
    ranks = {name: rank for rank, name in enumerate(leading)}
    for name in results.columns:
        if name.startswith("config/"):
            varies = results[name].nunique(dropna=False) > 1
            ranks[name] = len(leading) if varies else len(results.columns)
    frame_table(
        results,
        title=f"top {top} by {experiment.metric}",
        ranks={name: ranks.get(name, index + len(leading)) for index, name in
               enumerate(results.columns)},
        wide=wide,
        headers=lambda name: name.removeprefix("config/"),
    )  # fmt: skip


class JobProgress:
    """A live bar: trials done of total, running now, best so far, elapsed, time left."""

    def __init__(self, job_id: str) -> None:
        # On a narrower terminal the full line would be cut to "…": a short bar, and
        # neither the trials running nor the time so far, keep it within 80 columns.
        self._wide = out.width >= PROGRESS_FULL_WIDTH
        counts = "trials, {task.fields[running]} running, best" if self._wide else "trials, best"
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=PROGRESS_BAR_FULL if self._wide else PROGRESS_BAR_NARROW),
            MofNCompleteColumn(),
            TextColumn(counts + " {task.fields[best]}"),
            *([TimeElapsedColumn()] if self._wide else []),
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
        if job is not None and JobStatus(job["state"]).is_terminal():
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
            best=self._best(found),
        )
        self._last = job

    def _best(self, found: dict[str, Any] | None) -> str:
        if found is None:
            return "-"
        named = f"{found['metric']} " if self._wide else ""
        return f"{named}{found['value']:.4f}"


def _ran(job: dict[str, Any]) -> str:
    started = job.get("started_at")
    if started is None:
        return ""
    seconds = (job.get("finished_at") or time.time()) - started
    return f"{seconds:.0f} s"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _trial_header(name: str) -> str:
    """config/lr -> lr; best_metrics/val_loss -> "best val_loss" and metrics/val_loss
    -> "last val_loss", each on two lines (as narrow as its longest word)."""
    for prefix, shown in (("best_metrics/", "best"), ("metrics/", "last")):
        if name.startswith(prefix):
            return f"{shown}\n{name.removeprefix(prefix)}"
    return name.removeprefix("config/")


def _table(columns: list[Column], title: str | None) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=not column.wraps,
            max_width=TEXT_WIDTH_MAX if column.wraps else None,
            # Were a column ever too wide, its text folds onto the next line: never "…".
            overflow="fold",
        )
    for row in zip(*(column.cells for column in columns), strict=True):
        table.add_row(*(Text(cell) for cell in row))
    return table


def _natural_width(columns: list[Column], title: str | None) -> int:
    """How wide the table is with no cell wrapped (free text at TEXT_WIDTH_MAX)."""
    table = _table(columns, title)
    return Measurement.get(out, out.options.update(width=TABLE_WIDTH_MAX), table).maximum
