"""The `tunefleet` command: run the stack, submit jobs, follow them."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from cluster.client import ClientError, GatewayClient
from shared.settings import get_settings
from shared.status import JobStatus

app = typer.Typer(help="tunefleet: hyperparameter tuning for PyTorch networks on Ray.")
console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Gateway URL (default: TUNEFLEET_URL).")
]
POLL_INTERVAL_S = 2.0


@app.command()
def up() -> None:
    """Run Redis, Ray, Serve (gateway + predictor) and a driver here, until Ctrl-C."""
    from cluster.stack import up as run_stack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_stack(get_settings())


@app.command()
def check(url: UrlOption = None) -> None:
    """Exit 0 if the gateway answers and a driver is alive, else 1 (for health probes)."""
    health = _run(_client(url).health)
    if not health["drivers"]:
        err_console.print("unhealthy: no driver has sent a heartbeat within its lease")
        raise typer.Exit(1)
    console.print(
        f"healthy: {len(health['drivers'])} driver(s), {health['queued_jobs']} queued, "
        f"{health['running_jobs']} running"
    )


@app.command()
def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Job spec, JSON or YAML.")
    ],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    url: UrlOption = None,
) -> None:
    """Submit a tuning job; with --wait, follow it and exit non-zero unless it succeeds."""
    client = _client(url)
    spec = yaml.safe_load(file.read_text())  # YAML is a superset of JSON
    accepted = _run(lambda: client.submit(spec))
    console.print(f"job {accepted['id']} queued")
    if wait:
        raise typer.Exit(_follow(client, accepted["id"]))


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="A job id; none lists the jobs.")] = None,
    url: UrlOption = None,
) -> None:
    """Show one job in full, or the list of jobs."""
    client = _client(url)
    if job is None:
        _print_jobs(_run(client.jobs))
    else:
        console.print_json(json.dumps(_run(lambda: client.job(job))))


def _follow(client: GatewayClient, job_id: str) -> int:
    last = None
    while True:
        job = _run(lambda: client.job(job_id))
        line = _progress_line(job)
        if line != last:
            console.print(line)
            last = line
        if JobStatus(job["state"]).is_terminal():
            if job["state"] == JobStatus.SUCCEEDED:
                console.print(f"test metrics: {job['test_metrics']}")
                console.print(f"best config: {job['best']['config']}")
                return 0
            err_console.print(f"job {job_id} {job['state']}: {job.get('error') or ''}")
            return 1
        time.sleep(POLL_INTERVAL_S)


def _progress_line(job: dict[str, Any]) -> str:
    best = job.get("best")
    best_text = f", best {best['metric']} {best['value']:.4f}" if best else ""
    return f"{job['state']}: {job['trials_done']}/{job['trials_total']} trials{best_text}"


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    table = Table("name", "state", "trials", "best")
    # Ids are what a person copies into the next command: never wrapped or cut.
    table.add_column("id", no_wrap=True, min_width=32)
    for job in jobs:
        best = job.get("best")
        table.add_row(
            job.get("name") or "",
            job["state"],
            f"{job['trials_done']}/{job['trials_total']}",
            f"{best['metric']} {best['value']:.4f}" if best else "",
            job["id"],
        )
    console.print(table)


def _client(url: str | None) -> GatewayClient:
    return GatewayClient(url or get_settings().url)


def _run(call: Any) -> Any:
    try:
        return call()
    except ClientError as exc:
        err_console.print(f"error: {exc}")
        raise typer.Exit(1) from exc
