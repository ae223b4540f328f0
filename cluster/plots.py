"""One PNG that sums up a tuning job: how the best trials learned, and where each tuned
parameter put the job's metric.

The inputs are what the gateway's HTTP API returns (trial rows and per-epoch histories),
so that ``tunefleet plot`` needs nothing but the API. Drawing goes through a
``Figure`` and the Agg canvas directly: no pyplot, no global backend state, safe to call
from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure

# Parameters that are searched on a log scale and read better on one.
LOG_SCALE_PARAMS = frozenset({"lr", "learning_rate", "weight_decay"})
# A log axis only pays off when the values span more than this ratio.
LOG_SCALE_MIN_SPAN = 10.0
SCATTER_COLUMNS = 4
FIGURE_WIDTH_IN = 13.0
CURVES_HEIGHT_IN = 4.4
SCATTER_ROW_HEIGHT_IN = 2.9
DPI = 100
# Curve labels sit outside the plot's right edge; this is the least distance between
# two of them, as a fraction of the y axis, so that labels of converged curves stay
# legible.
LABEL_GAP_FRACTION = 0.085
BEST_COLOUR = "#d62728"
OTHER_COLOUR = "#1f77b4"
# Ranks 1..10 get distinct colours; the best trial's curve is the darkest blue.
RANK_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
)


@dataclass(frozen=True)
class _Ranked:
    rank: int
    trial_id: str
    score: float
    config: dict[str, Any]

    @property
    def label(self) -> str:
        return f"#{self.rank} {self.trial_id}"


def plot_job(
    trials: list[dict[str, Any]],
    histories: dict[str, list[dict[str, Any]]],
    metric: str,
    mode: str,
    out: Path,
    top: int = 5,
) -> Path:
    """Write the job's summary figure to ``out`` (PNG) and return ``out``.

    Trials are ranked by their best value of ``metric`` (``best_metrics``, else the last
    ``metrics``); the ``top`` best get learning curves from ``histories``. ValueError
    when no trial has reported ``metric`` or ``mode`` is not min/max.
    """
    ranked = _ranked_or_why_not(trials, metric, mode, top)
    leaders = ranked[:top]
    params = _tuned_params(ranked)

    scatter_rows = math.ceil(len(params) / SCATTER_COLUMNS)
    height_in = CURVES_HEIGHT_IN + SCATTER_ROW_HEIGHT_IN * scatter_rows
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    best = ranked[0]
    fig.suptitle(
        f"{len(trials)} trials, {len(ranked)} reported {metric}; objective: {metric} "
        f"({mode}); best {best.label} = {best.score:.4g}",
        fontsize=13,
    )
    curves_fig: Figure | SubFigure = fig
    scatter_fig: SubFigure | None = None
    if scatter_rows:
        parts = fig.subfigures(
            2,
            1,
            squeeze=False,
            height_ratios=[CURVES_HEIGHT_IN, SCATTER_ROW_HEIGHT_IN * scatter_rows],
        )
        curves_fig, scatter_fig = parts[0, 0], parts[1, 0]

    _curve_panels(curves_fig, leaders, histories, metric, mode)
    if scatter_fig is not None:
        _scatters(scatter_fig, ranked, params, metric, mode)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def _ranked_or_why_not(
    trials: list[dict[str, Any]], metric: str, mode: str, top: int
) -> list[_Ranked]:
    """The trials that reported ``metric``, best first; ValueError saying why there is
    nothing to plot."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    ranked = _rank(trials, metric, mode)
    if not ranked:
        reported = sum(1 for t in trials if t.get("metrics") or t.get("best_metrics"))
        raise ValueError(
            f"no trial has reported {metric!r}: {len(trials)} trial(s), {reported} with "
            f"any metrics; nothing to plot (is {metric!r} this job's metric?)"
        )
    return ranked


def _curve_panels(
    fig: Figure | SubFigure,
    leaders: list[_Ranked],
    histories: dict[str, list[dict[str, Any]]],
    metric: str,
    mode: str,
) -> None:
    """The leaders' curves of the job's metric, and of a loss, side by side."""
    metric_ax, loss_ax = fig.subplots(1, 2)
    _curves(metric_ax, leaders, histories, metric, f"{metric} ({_better(mode)})")
    # A job tuned on val_loss would show the same curves twice; its training loss
    # says more (over- or under-fitting).
    second = "val_loss" if metric != "val_loss" else "training_loss"
    _curves(loss_ax, leaders, histories, second, f"{second} (lower is better)")
    metric_ax.set_title(f"{metric} per epoch, best {len(leaders)} by {metric} ({mode})")
    loss_ax.set_title(f"{second} per epoch, same trials")


def _better(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, NaN, a string, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def _rank(trials: Sequence[dict[str, Any]], metric: str, mode: str) -> list[_Ranked]:
    """Trials that have the metric, best first, ranked from 1."""
    scored: list[tuple[float, str, dict[str, Any]]] = []
    for trial in trials:
        score = _number((trial.get("best_metrics") or {}).get(metric))
        if score is None:
            score = _number((trial.get("metrics") or {}).get(metric))
        if score is None:
            continue
        scored.append((score, str(trial.get("trial_id", "?")), dict(trial.get("config") or {})))
    sign = -1.0 if mode == "max" else 1.0
    # Ties go to the trial id, so that the same input always draws the same figure.
    scored.sort(key=lambda item: (sign * item[0], item[1]))
    return [
        _Ranked(rank=i, trial_id=trial_id, score=score, config=config)
        for i, (score, trial_id, config) in enumerate(scored, start=1)
    ]


def _tuned_params(ranked: Sequence[_Ranked]) -> list[str]:
    """Config keys whose values differ across the ranked trials, in a stable order."""
    keys = sorted({key for r in ranked for key in r.config})
    tuned = []
    for key in keys:
        values = {repr(r.config[key]) for r in ranked if key in r.config}
        if len(values) > 1:
            tuned.append(key)
    return tuned


def _curves(
    ax: Axes,
    leaders: Sequence[_Ranked],
    histories: dict[str, list[dict[str, Any]]],
    key: str,
    ylabel: str,
) -> None:
    """One line per leading trial, each labelled at its last point."""
    ends: list[tuple[float, float, str, str]] = []
    for leader in leaders:
        xs: list[float] = []
        ys: list[float] = []
        for i, row in enumerate(histories.get(leader.trial_id) or [], start=1):
            y = _number(row.get(key))
            if y is None:
                continue
            x = _number(row.get("training_iteration"))
            xs.append(x if x is not None else float(i))
            ys.append(y)
        if not xs:
            continue
        colour = RANK_COLOURS[(leader.rank - 1) % len(RANK_COLOURS)]
        width = 2.4 if leader.rank == 1 else 1.4
        ax.plot(xs, ys, color=colour, linewidth=width, marker="o", markersize=3)
        ends.append((xs[-1], ys[-1], leader.label, colour))
    ax.set_xlabel("epoch (training_iteration)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if not ends:
        ax.text(
            0.5,
            0.5,
            f"no per-epoch {key} for these trials",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
        return
    _label_ends(ax, ends)


def _label_ends(ax: Axes, ends: Sequence[tuple[float, float, str, str]]) -> None:
    """Name each curve just right of the axes, level with its last point where the
    labels do not collide, with a thin leader line back to the point."""
    low, high = ax.get_ylim()
    gap = (high - low) * LABEL_GAP_FRACTION
    positions = _spread([y for _, y, _, _ in ends], gap, low, high)
    for (x, y, label, colour), label_y in zip(ends, positions, strict=True):
        ax.annotate(
            label,
            xy=(x, y),
            xycoords="data",
            xytext=(1.02, label_y),
            textcoords=("axes fraction", "data"),
            va="center",
            ha="left",
            fontsize=8.5,
            color=colour,
            fontweight="bold",
            arrowprops={"arrowstyle": "-", "color": colour, "alpha": 0.5, "linewidth": 0.8},
            annotation_clip=False,
        )
    ax.set_ylim(low, high)


def _spread(values: Sequence[float], gap: float, low: float, high: float) -> list[float]:
    """Positions as close to ``values`` as possible, at least ``gap`` apart, kept within
    [low, high] where there is room; returned in the order of ``values``."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    placed = [values[i] for i in order]
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    # Pushed past the top: slide the stack down from there.
    if placed and placed[-1] > high:
        placed[-1] = high
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - gap)
    if placed and placed[0] < low:
        shift = low - placed[0]
        placed = [p + shift for p in placed]
    result = [0.0] * len(values)
    for position, i in zip(placed, order, strict=True):
        result[i] = position
    return result


def _scatters(
    fig: SubFigure, ranked: Sequence[_Ranked], params: Sequence[str], metric: str, mode: str
) -> None:
    """Parameter value against the metric, one small plot per tuned parameter."""
    rows = math.ceil(len(params) / SCATTER_COLUMNS)
    axes = fig.subplots(rows, SCATTER_COLUMNS, squeeze=False)
    fig.suptitle(
        f"each tuned parameter against {metric} ({mode}, {_better(mode)}); "
        f"#1 {ranked[0].trial_id} in red",
        fontsize=11,
    )
    for index, ax in enumerate(axes.flat):
        if index >= len(params):
            ax.set_visible(False)
            continue
        _scatter(ax, ranked, params[index], metric, index % SCATTER_COLUMNS == 0)


def _scatter(
    ax: Axes, ranked: Sequence[_Ranked], param: str, metric: str, show_ylabel: bool
) -> None:
    points = [(r.config[param], r) for r in ranked if param in r.config]
    numbers = [_number(value) for value, _ in points]
    if all(n is not None for n in numbers):
        xs = [float(n) for n in numbers if n is not None]
        if param in LOG_SCALE_PARAMS and min(xs) > 0 and max(xs) / min(xs) > LOG_SCALE_MIN_SPAN:
            ax.set_xscale("log")
    else:
        # Choices such as an optimizer's name: one column per distinct value.
        categories = sorted({str(value) for value, _ in points})
        xs = [float(categories.index(str(value))) for value, _ in points]
        ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ys = [r.score for _, r in points]
    others = [(x, y) for (x, y, (_, r)) in zip(xs, ys, points, strict=True) if r.rank != 1]
    if others:
        ax.scatter(
            [x for x, _ in others],
            [y for _, y in others],
            s=22,
            color=OTHER_COLOUR,
            alpha=0.65,
            edgecolors="none",
        )
    for x, y, (_, r) in zip(xs, ys, points, strict=True):
        if r.rank == 1:
            ax.scatter([x], [y], s=130, marker="*", color=BEST_COLOUR, edgecolors="black", zorder=3)
            ax.annotate(
                "#1",
                xy=(x, y),
                xytext=(5, 5),
                textcoords="offset points",
                fontsize=8,
                color=BEST_COLOUR,
                fontweight="bold",
            )
    # Room above and below, so that the best point's star and "#1" stay inside.
    ax.margins(x=0.08, y=0.18)
    ax.set_title(param, fontsize=10)
    ax.set_xlabel(f"{param} (log scale)" if ax.get_xscale() == "log" else param, fontsize=8)
    if show_ylabel:
        ax.set_ylabel(f"best {metric}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
