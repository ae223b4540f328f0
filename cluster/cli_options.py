"""What the `tunefleet` commands share: their options and arguments, and how a command
reaches the gateway and fails on an error it answers."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from cluster import render
from cluster.client import ClientError, GatewayClient
from shared.settings import get_settings

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


def print_json(data: Any) -> None:
    """JSON on stdout as is: no colours, no wrapping, whatever the terminal."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def job_id_of(client: GatewayClient, ref: str) -> str:
    """The job id that ``ref`` (an id or its first characters) names; else exit 1 with
    the ids it could mean, or how to list them."""
    return str(run_or_exit(lambda: client.resolve_job(ref)))


def client_of(url: str | None, api_key: str | None) -> GatewayClient:
    return GatewayClient(url or get_settings().url, api_key)


def run_or_exit(call: Any) -> Any:
    try:
        return call()
    except ClientError as exc:
        render.fail(f"error: {exc}")
        raise typer.Exit(1) from exc
