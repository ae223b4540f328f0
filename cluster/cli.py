"""The `tunefleet` command: run the stack, submit and follow jobs, read their results."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import redis
import typer

from cluster import render
from cluster.client import ClientError, GatewayClient
from cluster.scoring import score_csv
from cluster.specs import read_spec
from shared.errors import InvalidInputError
from shared.export_formats import EXPORT_FORMATS, EXTENSION_OF_FORMAT, ExportFormat, format_of_path
from shared.settings import get_settings
from shared.vocabulary import DEFAULT_METRIC_OF_TASK, JobStatus, mode_of

if TYPE_CHECKING:
    from cluster.importer import ImportedExperiment

app = typer.Typer(
    help="tunefleet: hyperparameter tuning for PyTorch networks on Ray.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="TUNEFLEET_URL", help="tunefleet's URL.", show_default=False),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TUNEFLEET_API_KEY",
        help="API key, when auth is on.",
        show_default=False,
    ),
]
JobArgument = Annotated[
    str, typer.Argument(help="A job id, or its first characters (unique among the jobs).")
]
TopOption = Annotated[int, typer.Option("--top", min=1, help="How many of the best trials.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON, for scripts, not a table.")
]
WideOption = Annotated[
    bool,
    typer.Option("--wide", help="Every column, however wide; the terminal's width picks else."),
]
# Trials in `results`' table unless --top says otherwise (its --json has every trial).
RESULTS_SHOWN = 10


@app.command()
def up() -> None:
    """Run Redis, Ray, Serve (gateway + predictor) and a driver here, until Ctrl-C."""
    settings = get_settings()
    if settings.ray_address not in (None, "auto", "local"):
        # Ray turns token authentication on by itself only for "auto"; joining a cluster
        # by its address needs it said before Ray is imported (the drivers inherit it).
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    from cluster.stack import up as run_stack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_stack(settings)


@app.command()
def check(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Exit 0 if the gateway answers and a driver is alive, else 1 (for health probes)."""
    health = _run(_client(url, api_key).health)
    if not health["live_drivers"]:
        render.fail("unhealthy: no driver has sent a heartbeat within its lease")
        raise typer.Exit(1)
    render.out.print(
        f"healthy: {health['live_drivers']} driver(s), {health['queued_jobs']} queued, "
        f"{health['running_jobs']} running"
    )


@app.command()
def submit(
    file: Annotated[
        str,
        typer.Argument(help="Job spec: .json, .yaml or .yml; - reads JSON or YAML on stdin."),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job with a progress bar until it ends.")
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Submit a tuning job; with --wait, exit 0 if it succeeds, else 1 with the reason."""
    client = _client(url, api_key)
    try:
        spec = read_spec(file)
    except InvalidInputError as exc:
        render.fail(str(exc))
        raise typer.Exit(1) from exc
    accepted = _run(lambda: client.submit(spec))
    render.out.print(f"job {accepted['id']} queued")
    if wait:
        raise typer.Exit(_follow(client, accepted["id"]))


@app.command()
def jobs(
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The newest jobs: id, name, state, trials, best value (more with --wide)."""
    found = _run(_client(url, api_key).jobs)
    if as_json:
        _print_json(found)
    else:
        render.jobs_table(found, wide)


@app.command()
def status(
    job: Annotated[
        str | None, typer.Argument(help="A job id or its first characters; none lists jobs.")
    ] = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """One job in full (JSON), or the list of jobs."""
    if job is None:
        jobs(as_json, wide, url, api_key)
        return
    client = _client(url, api_key)
    view = _run(lambda: client.job(_job_id(client, job)))
    if as_json:
        _print_json(view)
    else:
        render.out.print_json(json.dumps(view))


@app.command()
def cancel(job: JobArgument, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Cancel a job: a queued one at once, a running one once its trials stop."""
    client = _client(url, api_key)
    job_id = _job_id(client, job)
    answer = _run(lambda: client.cancel(job_id))
    render.out.print(f"job {job_id} {answer['state']}")


@app.command()
def results(
    job: JobArgument,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Also write every trial to this CSV file.")
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            min=1,
            help=f"How many of the best trials (default {RESULTS_SHOWN}; all with --json).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The trials of a job, best first: config and metrics (the seed's results table)."""
    client = _client(url, api_key)
    job_id = _job_id(client, job)
    if csv is not None:
        csv.write_text(_run(lambda: client.trials_csv(job_id, sort="metric")))
        if not as_json:  # with --json, stdout holds the JSON alone
            render.out.print(f"wrote {csv}")
    if as_json:
        limit = {"limit": top} if top is not None else {}
        _print_json(_run(lambda: client.trials(job_id, sort="metric", **limit)))
        return
    text = _run(lambda: client.trials_csv(job_id, sort="metric", limit=top or RESULTS_SHOWN))
    view = _run(lambda: client.job(job_id))
    table = pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame()
    render.trials_table(table, view.get("metric") or DEFAULT_METRIC_OF_TASK["classification"], wide)


@app.command()
def best(job: JobArgument, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """The best config of a job and its metrics."""
    client = _client(url, api_key)
    view = _run(lambda: client.job(_job_id(client, job)))
    if view.get("best") is None:
        render.fail(f"job {view['id']} is {view['state']} and has no result yet")
        raise typer.Exit(1)
    render.best(view)


@app.command()
def plot(
    job: JobArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="The PNG to write.")],
    top: TopOption = 5,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Curves (validation metric and loss per epoch) of the top trials, and each tuned
    parameter against the metric, in one PNG."""
    from cluster.plots import plot_job

    client = _client(url, api_key)
    job = _job_id(client, job)
    view = _run(lambda: client.job(job))
    task = view.get("task") or "classification"
    metric = view.get("metric") or view["spec"].get("metric") or DEFAULT_METRIC_OF_TASK[task]
    mode = view.get("mode") or view["spec"].get("mode") or mode_of(metric)
    trials = _run(lambda: client.trials(job))
    leaders = _run(lambda: client.trials(job, sort="metric", limit=top))
    histories = {
        t["trial_id"]: _run(lambda t=t: client.history(job, t["trial_id"])) for t in leaders
    }
    try:
        plot_job(trials, histories, metric, mode, output, top=top)
    except ValueError as exc:
        render.fail(str(exc))
        raise typer.Exit(1) from exc
    render.out.print(f"wrote {output}")


@app.command()
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
    """Predict with a model, rows from --csv or JSON on stdin ({"instances": [...]} or
    a list of rows)."""
    if output is not None:
        if csv is None:
            render.fail("-o FILE takes the rows from --csv FILE")
            raise typer.Exit(1)
        _score_file(_client(url, api_key), model, csv, output)
        return
    if csv is not None:
        instances = pd.read_csv(csv).to_dict(orient="records")
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
    client = _client(url, api_key)
    ref = _run(lambda: client.resolve_model(model))
    answer = _run(lambda: client.predict(ref, instances))
    frame = render.predictions_frame(answer)
    if as_json:
        _print_json(answer)
    elif as_csv:
        render.out.print(frame.to_csv(index=False), end="")
    else:
        render.frame_table(frame, title=f"model {answer['model']['id']}", wide=wide)


@app.command()
def models(
    as_json: JsonOption = False,
    wide: WideOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The registered models, newest first: id, aliases, validation and test scores."""
    client = _client(url, api_key)
    found = _run(client.models)
    if as_json:
        _print_json(found)
    else:
        render.models_table(found, _run(client.aliases), wide)


@app.command()
def export(
    model: Annotated[
        str,
        typer.Argument(help="A model id (its job's id), its first characters, or an alias."),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The file to write: .pt or .onnx.")
    ],
    export_format: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="Default: from the file's extension.", show_default=False),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Write a model as one file that predicts without tunefleet (TorchScript or ONNX):
    raw features in, class probabilities or values out; classes in its metadata."""
    chosen = export_format or format_of_path(output)
    if chosen is None:
        extensions = " or ".join(f"{ext} ({f})" for f, ext in EXTENSION_OF_FORMAT.items())
        render.fail(
            f"cannot tell the format of {output.name}: name the file {extensions}, "
            f"or pass --format {'|'.join(EXPORT_FORMATS)}"
        )
        raise typer.Exit(1)
    client = _client(url, api_key)
    ref = _run(lambda: client.resolve_model(model))
    content = _run(lambda: client.export_model(ref, chosen))
    output.write_bytes(content)
    render.out.print(f"wrote {output} ({chosen}, {len(content)} bytes)")


@app.command("import")
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
        _print_json(_experiment_json(experiment, top))
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
    record = _run(lambda: _client(url, api_key).import_model(found, meta))
    if as_json:
        _print_json({**_experiment_json(experiment, top), "registered_model": record})
    else:
        render.out.print(f"registered model {record['id']}")


keys_app = typer.Typer(help="API keys: each belongs to a tenant.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Argument(help="The tenant the key acts for.")],
    admin: Annotated[bool, typer.Option("--admin", help="Sees every tenant's.")] = False,
) -> None:
    """Print a new API key (shown this once; only its digest is stored). Talks to Redis
    directly: TUNEFLEET_REDIS_URL, else the embedded stack's Redis."""
    from shared.auth import KeyStore
    from shared.errors import InvalidInputError

    with _redis_url() as url:
        try:
            key = KeyStore.from_url(url).create(tenant, admin)
        except InvalidInputError as exc:
            render.fail(str(exc))
            raise typer.Exit(1) from exc
    render.out.print(key, highlight=False)


@keys_app.command("revoke")
def revoke_key(key: Annotated[str, typer.Argument(help="The key to revoke.")]) -> None:
    """Revoke an API key."""
    from shared.auth import KeyStore

    with _redis_url() as url:
        if not KeyStore.from_url(url).revoke(key):
            render.fail("no such key")
            raise typer.Exit(1)
    render.out.print("revoked")


@contextmanager
def _redis_url() -> Iterator[str]:
    """TUNEFLEET_REDIS_URL; else the running embedded stack's Redis; else the embedded
    Redis started on its data for a moment."""
    from cluster.redis_server import RedisServer

    settings = get_settings()
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    url_file = settings.embedded_redis_url_file
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError:
            url_file.unlink(missing_ok=True)  # left by a stack that did not stop cleanly
        else:
            yield url
            return
    with RedisServer(settings.home / "redis") as server:
        yield server.url


def _score_file(client: GatewayClient, model: str, csv: Path, output: Path) -> None:
    ref = _run(lambda: client.resolve_model(model))

    def progress(job: dict[str, Any]) -> None:
        render.out.print(
            f"batch job {job['id']} {job['state']}: {job.get('rows_done') or 0}/"
            f"{job.get('rows_total')} rows",
            highlight=False,
        )

    job = _run(lambda: score_csv(client, ref, csv, output, on_progress=progress))
    how = f"batch job {job['id']}" if job is not None else "one request"
    render.out.print(f"wrote {output} ({how})", highlight=False)


def _follow(client: GatewayClient, job_id: str) -> int:
    """Show the job's progress from its event stream; the exit code follows its end."""
    view: dict[str, Any] = {}
    try:
        with render.JobProgress(job_id) as progress:
            for kind, data in client.events(job_id):
                if kind == "job":
                    view = data
                    progress.update(view)
    except ClientError as exc:
        render.fail(f"error: {exc}")
        return 1
    if not view or not JobStatus(view["state"]).is_terminal():
        render.fail(f"the event stream of job {job_id} ended early; `tunefleet status` shows it")
        return 1
    state = JobStatus(view["state"])
    if state is JobStatus.SUCCEEDED:
        render.best(view)
        return 0
    render.fail(f"job {job_id} {state.value}: {view.get('error') or 'no error recorded'}")
    return 1


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


def _print_json(data: Any) -> None:
    """JSON on stdout as is: no colours, no wrapping, whatever the terminal."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _job_id(client: GatewayClient, ref: str) -> str:
    """The job id that ``ref`` (an id or its first characters) names; else exit 1 with
    the ids it could mean, or how to list them."""
    return str(_run(lambda: client.resolve_job(ref)))


def _client(url: str | None, api_key: str | None) -> GatewayClient:
    return GatewayClient(url or get_settings().url, api_key)


def _run(call: Any) -> Any:
    try:
        return call()
    except ClientError as exc:
        render.fail(f"error: {exc}")
        raise typer.Exit(1) from exc
