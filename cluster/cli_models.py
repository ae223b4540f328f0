"""The `tunefleet` commands about models: predict with one (a CSV file, or rows on
stdin), list them, export one, and import an experiment of the seed's own Tune runs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cluster import render
from cluster.cli_options import (
    ApiKeyOption,
    JsonOption,
    TopOption,
    UrlOption,
    WideOption,
    client_of,
    print_json,
    run_or_exit,
)
from cluster.client import GatewayClient
from cluster.files import write_export
from cluster.rows import json_rows
from cluster.scoring import score_csv
from shared.csv_files import read_table_bytes
from shared.errors import DatasetError
from shared.export_formats import EXPORT_FORMATS, EXTENSION_OF_FORMAT, ExportFormat, format_of_path

if TYPE_CHECKING:
    from cluster.importer import ImportedExperiment

# Merged into the `tunefleet` command (cluster.cli): these are top-level commands.
models_app = typer.Typer()


@models_app.command()
def predict(
    model: Annotated[
        str,
        typer.Argument(help="A model id (its job's id), its first characters, or an alias."),
    ],
    csv: Annotated[
        Path | None,
        typer.Option("--csv", exists=True, dir_okay=False, help="Rows with a header row."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            dir_okay=False,
            help="With --csv: write its rows with their predictions to this CSV file; a "
            "file larger than one request is scored as a batch job on the cluster.",
        ),
    ] = None,
    as_csv: Annotated[bool, typer.Option("--as-csv", help="Print CSV, not a table.")] = False,
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Predict with a model: raw rows from --csv (or Parquet), or JSON on stdin."""
    if output is not None:
        if csv is None:
            render.fail("-o FILE takes the rows from --csv FILE")
            raise typer.Exit(1)
        _score_file(client_of(url, api_key), model, csv, output)
        return
    if csv is not None:
        try:
            # As an upload reads it: separators sniffed, gap markers read as gaps.
            instances: Any = json_rows(read_table_bytes(csv.read_bytes()))
        except DatasetError as exc:
            render.fail(f"{csv}: {exc}")
            raise typer.Exit(1) from exc
    else:
        try:
            body = json.load(sys.stdin)
        except json.JSONDecodeError as exc:
            render.fail(f"stdin is not JSON ({exc}); pass rows with --csv FILE instead")
            raise typer.Exit(1) from exc
        instances = body.get("instances") if isinstance(body, dict) else body
        if not isinstance(instances, list):
            render.fail('stdin must hold {"instances": [...]} or a list of rows')
            raise typer.Exit(1)
    client = client_of(url, api_key)
    ref = run_or_exit(lambda: client.resolve_model(model))
    answer = run_or_exit(lambda: client.predict(ref, instances))
    frame = render.predictions_frame(answer)
    if as_json:
        print_json(answer)
    elif as_csv:
        render.out.print(frame.to_csv(index=False), end="")
    else:
        render.frame_table(frame, title=f"model {answer['model']['id']}", wide=wide)


@models_app.command()
def models(
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The registered models, newest first: id, aliases, validation and test scores."""
    client = client_of(url, api_key)
    found = run_or_exit(client.models)
    if as_json:
        print_json(found)
    else:
        render.models_table(found, run_or_exit(client.aliases), wide)


@models_app.command()
def export(
    model: Annotated[
        str,
        typer.Argument(help="A model id (its job's id), its first characters, or an alias."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="The file to write: .pt, .onnx or .zip (an MLflow model); with --format "
            "mlflow, a new folder.",
        ),
    ],
    export_format: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="Default: from the file's extension.", show_default=False),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Write a model as one file (TorchScript or ONNX) with its preprocessing inside, or
    as an MLflow model (a folder, or its .zip) that MLflow loads without tunefleet."""
    chosen = export_format or format_of_path(output)
    if chosen is None:
        named = [f"{ext} ({f})" for f, ext in EXTENSION_OF_FORMAT.items()]
        extensions = f"{', '.join(named[:-1])} or {named[-1]}"
        render.fail(
            f"cannot tell the format of {output.name}: name the file {extensions}, "
            f"or pass --format {'|'.join(EXPORT_FORMATS)}"
        )
        raise typer.Exit(1)
    client = client_of(url, api_key)
    ref = run_or_exit(lambda: client.resolve_model(model))
    content = run_or_exit(lambda: client.export_model(ref, chosen))
    try:
        written = write_export(content, chosen, output)
    except OSError as exc:
        render.fail(str(exc))
        raise typer.Exit(1) from None
    render.out.print(f"wrote {output} ({chosen}, {written})")


@models_app.command("import")
def import_experiment(
    path: Annotated[Path, typer.Argument(help="A Ray Tune experiment folder.")],
    metric: Annotated[str | None, typer.Option(help="Default: val_accuracy or val_loss.")] = None,
    mode: Annotated[str | None, typer.Option(help="max or min.")] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Serve its best checkpoint as a model.")
    ] = False,
    top: TopOption = 10,
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Read an existing Tune experiment folder: best config and results table; with
    --register, its best checkpoint becomes a model (when tunefleet's trainable made it).
    --json prints the experiment (and the registered model) as JSON."""
    from cluster.importer import read_experiment, tunefleet_checkpoint

    try:
        experiment = read_experiment(path, metric, mode)
    except ValueError as exc:
        render.fail(str(exc))
        raise typer.Exit(1) from exc
    if as_json and not register:
        print_json(_experiment_json(experiment, top))
    elif not as_json:
        render.imported(experiment, top, wide)
    if not register:
        return
    found = experiment.best_checkpoint and tunefleet_checkpoint(experiment.best_checkpoint)
    if not found:
        render.fail(
            "the best trial has no tunefleet checkpoint (model.pt written by tunefleet's "
            "trainable); only those can be served"
        )
        raise typer.Exit(1)
    # The best value the best trial reached: what its best checkpoint was kept for.
    best_value = experiment.results.iloc[0].get(f"best_{experiment.metric}")
    if best_value is None or not math.isfinite(float(best_value)):
        render.fail(f"the best trial reported no finite {experiment.metric}; nothing to serve")
        raise typer.Exit(1)
    meta = {
        "config": experiment.best_config,
        "metric": experiment.metric,
        "mode": experiment.mode,
        "validation_value": float(best_value),
    }
    record = run_or_exit(lambda: client_of(url, api_key).import_model(found, meta))
    if as_json:
        print_json({**_experiment_json(experiment, top), "registered_model": record})
    else:
        render.out.print(f"registered model {record['id']}")


def _score_file(client: GatewayClient, model: str, csv: Path, output: Path) -> None:
    ref = run_or_exit(lambda: client.resolve_model(model))

    def progress(job: dict[str, Any]) -> None:
        render.out.print(
            f"batch job {job['id']} {job['state']}: {job.get('rows_done') or 0}/"
            f"{job.get('rows_total')} rows",
            highlight=False,
        )

    job = run_or_exit(lambda: score_csv(client, ref, csv, output, on_progress=progress))
    how = f"batch job {job['id']}" if job is not None else "one request"
    render.out.print(f"wrote {output} ({how})", highlight=False)


def _experiment_json(experiment: ImportedExperiment, top: int) -> dict[str, Any]:
    return {
        "path": str(experiment.path),
        "metric": experiment.metric,
        "mode": experiment.mode,
        "trials": len(experiment.results),
        "best_config": experiment.best_config,
        "best_metrics": experiment.best_metrics,
        "best_checkpoint": str(experiment.best_checkpoint) if experiment.best_checkpoint else None,
        # pandas' own JSON: NaN as null, numpy's numbers as plain numbers.
        "results": json.loads(experiment.results.head(top).to_json(orient="records")),
    }
