"""The `tunefleet` command: run the stack, submit and follow jobs, read their results."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer

from cluster import render
from cluster.cli_datasets import datasets_app
from cluster.cli_keys import keys_app
from cluster.cli_models import models_app
from cluster.cli_options import (
    ApiKeyOption,
    JobArgument,
    JsonOption,
    TopOption,
    UrlOption,
    WideOption,
    client_of,
    job_id_of,
    print_json,
    run_or_exit,
)
from cluster.client import ClientError, GatewayClient
from cluster.specs import read_spec
from shared.about import tunefleet_version
from shared.errors import InvalidInputError
from shared.settings import get_settings
from shared.vocabulary import DEFAULT_METRIC_OF_TASK, JobStatus, mode_of

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="tunefleet: hyperparameter tuning for PyTorch networks on Ray.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
app.add_typer(models_app)
app.add_typer(datasets_app)
app.add_typer(keys_app, name="keys")


def _print_version(asked: bool) -> None:
    if asked:
        print(f"tunefleet {tunefleet_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """tunefleet: hyperparameter tuning for PyTorch networks on Ray."""


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
    health = run_or_exit(client_of(url, api_key).health)
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
    client = client_of(url, api_key)
    try:
        spec = read_spec(file)
    except InvalidInputError as exc:
        render.fail(str(exc))
        raise typer.Exit(1) from exc
    accepted = run_or_exit(lambda: client.submit(spec))
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
    found = run_or_exit(client_of(url, api_key).jobs)
    if as_json:
        print_json(found)
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
    client = client_of(url, api_key)
    view = run_or_exit(lambda: client.job(job_id_of(client, job)))
    if as_json:
        print_json(view)
    else:
        render.out.print_json(json.dumps(view))


@app.command()
def cancel(job: JobArgument, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Cancel a job: a queued one at once, a running one once its trials stop."""
    client = client_of(url, api_key)
    job_id = job_id_of(client, job)
    answer = run_or_exit(lambda: client.cancel(job_id))
    render.out.print(f"job {job_id} {answer['state']}")


@app.command()
def edit(
    job: JobArgument,
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", help="Trials at once: raise or lower.")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option("--time-budget", help="Seconds from the job's start: extend it."),
    ] = None,
    num_samples: Annotated[
        int | None,
        typer.Option("--num-samples", help="Raise a random or optuna search's."),
    ] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="high, normal or low.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Edit a queued or running job; a running one follows within seconds."""
    changes = {
        name: value
        for name, value in (
            ("max_concurrent_trials", max_concurrent),
            ("time_budget_s", time_budget),
            ("num_samples", num_samples),
            ("priority", priority),
        )
        if value is not None
    }
    if not changes:
        render.fail(
            "nothing to edit: give --max-concurrent, --time-budget, --num-samples or --priority"
        )
        raise typer.Exit(1)
    client = client_of(url, api_key)
    job_id = job_id_of(client, job)
    view = run_or_exit(lambda: client.edit(job_id, changes))
    spec = view["spec"]
    budget = spec.get("time_budget_s")
    render.out.print(f"job {job_id} {view['state']}, as edited:")
    for name, value in (
        ("priority", view["priority"]),
        ("max_concurrent_trials", spec.get("max_concurrent_trials") or "no limit"),
        ("time_budget_s", "none" if budget is None else f"{budget:g}"),
        ("num_samples", spec["search"]["num_samples"]),
    ):
        render.out.print(f"  {name}: {value}")


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
    client = client_of(url, api_key)
    job_id = job_id_of(client, job)
    if csv is not None:
        csv.write_text(run_or_exit(lambda: client.trials_csv(job_id, sort="metric")))
        if not as_json:  # with --json, stdout holds the JSON alone
            render.out.print(f"wrote {csv}")
    if as_json:
        limit = {"limit": top} if top is not None else {}
        print_json(run_or_exit(lambda: client.trials(job_id, sort="metric", **limit)))
        return
    text = run_or_exit(lambda: client.trials_csv(job_id, sort="metric", limit=top or RESULTS_SHOWN))
    view = run_or_exit(lambda: client.job(job_id))
    table = pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame()
    render.trials_table(table, view.get("metric") or DEFAULT_METRIC_OF_TASK["classification"], wide)


@app.command()
def best(job: JobArgument, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """The best config of a job and its metrics."""
    client = client_of(url, api_key)
    view = run_or_exit(lambda: client.job(job_id_of(client, job)))
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

    client = client_of(url, api_key)
    job = job_id_of(client, job)
    view = run_or_exit(lambda: client.job(job))
    task = view.get("task") or "classification"
    metric = view.get("metric") or view["spec"].get("metric") or DEFAULT_METRIC_OF_TASK[task]
    mode = view.get("mode") or view["spec"].get("mode") or mode_of(metric)
    trials = run_or_exit(lambda: client.trials(job))
    leaders = run_or_exit(lambda: client.trials(job, sort="metric", limit=top))
    histories = {
        t["trial_id"]: run_or_exit(lambda t=t: client.history(job, t["trial_id"])) for t in leaders
    }
    try:
        plot_job(trials, histories, metric, mode, output, top=top)
    except ValueError as exc:
        render.fail(str(exc))
        raise typer.Exit(1) from exc
    render.out.print(f"wrote {output}")


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
