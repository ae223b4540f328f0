"""`tunefleet upload` and `tunefleet datasets`: tables in, and what tunefleet made of
each column (its role, gaps and most frequent values)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cluster import render
from cluster.cli_options import (
    ApiKeyOption,
    JsonOption,
    UrlOption,
    WideOption,
    client_of,
    print_json,
    run_or_exit,
)
from cluster.render import Column, short_ids, show_table

datasets_app = typer.Typer()
# Top values of a categorical column shown in the columns table.
TOP_SHOWN = 3


@datasets_app.command()
def upload(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A CSV (any common separator) or Parquet file."
        ),
    ],
    target: Annotated[
        str, typer.Option("--target", "-t", help="The column to predict.")
    ] = "target",
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload a table as it is (text, dates, gaps welcome) and show each column's role."""
    client = client_of(url, api_key)
    summary = run_or_exit(lambda: client.upload(file.name, file.read_bytes(), target))
    if as_json:
        print_json(summary)
        return
    show_summary(summary, wide)
    render.out.print(
        f'tune on it: {{"dataset": {{"upload": "{summary["id"]}"}}}} in a job spec',
        highlight=False,
        markup=False,
    )


@datasets_app.command()
def datasets(
    dataset: Annotated[
        str | None, typer.Argument(help="A dataset id (or its first characters): its columns.")
    ] = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The uploaded datasets, newest first; with an id, that dataset's columns."""
    client = client_of(url, api_key)
    found = run_or_exit(client.datasets)
    if dataset is None:
        if as_json:
            print_json(found)
        else:
            datasets_table(found, wide)
        return
    matches = [d for d in found if d["id"].startswith(dataset)]
    if len(matches) != 1:
        what = "no dataset" if not matches else f"{len(matches)} datasets"
        render.fail(f"{what} with an id starting {dataset!r}; `tunefleet datasets` lists them")
        raise typer.Exit(1)
    if as_json:
        print_json(matches[0])
    else:
        show_summary(matches[0], wide)


def datasets_table(found: list[dict[str, Any]], wide: bool) -> None:
    if not found:
        render.out.print("no datasets yet: `tunefleet upload FILE --target COLUMN` adds one")
        return
    show_table(
        [
            Column("id", short_ids([d["id"] for d in found]), 0),
            Column("rows", [f"{d['rows']:,}" for d in found], 1, justify="right"),
            Column("columns", [str(len(d["columns"])) for d in found], 3, justify="right"),
            Column("target", [d.get("target") or "-" for d in found], 2),
            Column("task", [d.get("task") or "for scoring" for d in found], 4),
            Column("problems", [str(len(d.get("problems") or [])) for d in found], 5,
                   justify="right"),
        ],
        wide=wide,
    )  # fmt: skip


def show_summary(summary: dict[str, Any], wide: bool) -> None:
    """A dataset's columns: role (and why a column is ignored), type, gaps, top values."""
    names = [*summary["columns"], *([summary["target"]] if summary.get("target") else [])]
    roles, ignored = summary.get("roles") or {}, summary.get("ignored") or {}
    missing, categories = summary.get("missing") or {}, summary.get("categories") or {}
    types = summary.get("column_types") or {}

    def role(name: str) -> str:
        if name == summary.get("target"):
            return "target"
        return roles.get(name, "-") + (f": {ignored[name]}" if name in ignored else "")

    def top(name: str) -> str:
        values = list((categories.get(name) or {}).items())
        shown = ", ".join(f"{value} ({count:,})" for value, count in values[:TOP_SHOWN])
        return shown + (", ..." if len(values) > TOP_SHOWN else "")

    title = f"dataset {summary['id']}: {summary['rows']:,} rows"
    show_table(
        [
            Column("column", names, 0),
            Column("role", [role(n) for n in names], 1, wraps=True),
            Column("gaps", [f"{missing.get(n, 0):,}" for n in names], 2, justify="right"),
            Column("type", [types.get(n, "") for n in names], 4),
            Column("top values", [top(n) for n in names], 3, wraps=True),
        ],
        title=title,
        wide=wide,
    )
    if summary.get("rows_without_target"):
        count = summary["rows_without_target"]
        render.out.print(
            f"{count:,} {'row has' if count == 1 else 'rows have'} no target and "
            f"{'is' if count == 1 else 'are'} left out of training",
            highlight=False,
        )
    for problem in summary.get("problems") or []:
        render.fail(f"problem: {problem}")
