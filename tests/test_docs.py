"""The documentation site builds, strictly (a broken link or reference fails it), and its
reference pages say what the code says: every spec field, route, command and setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer.main

from cluster.cli import app as cli_app
from services.gateway.app import create_app as create_gateway
from shared.settings import Settings
from shared.spec import JobSpec

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_every_field_route_command_and_setting(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]

    def text(page: str) -> str:
        html = (site / page / "index.html").read_text()
        return re.sub(r"<[^>]+>", "", html)

    spec = text("reference/spec")
    assert all(field in spec for field in JobSpec.model_fields)
    assert "warm_start" in spec and "WarmStart" in spec
    http = text("reference/http")
    gateway = create_gateway(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert all(path in http for path in gateway.openapi()["paths"])
    assert "POST /models/{model_ref}/predict" in http
    cli = text("reference/cli")
    assert all(f"tunefleet {name}" in cli for name in typer.main.get_command(cli_app).commands)
    settings = text("reference/settings")
    assert all(f"TUNEFLEET_{name.upper()}" in settings for name in Settings.model_fields)
    # The SDK's page is its docstrings: the Client's methods with their arguments.
    sdk = text("reference/sdk")
    assert "submit" in sdk and "continue_" in sdk and "ClientError" in sdk


def test_every_code_block_of_the_markdown_is_closed() -> None:
    # A block left open swallows the prose and headings after it (GitHub renders the
    # README so): each fence with a language opens a block, and a bare fence closes it.
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for path in files:
        open_at: int | None = None
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fence = re.match(r"\s*```(\S*)\s*$", line)
            if fence is None:
                continue
            if open_at is None:
                open_at = number
            else:
                assert not fence.group(1), (
                    f"{path.name}:{number}: a block opens inside the block of line {open_at}"
                )
                open_at = None
        assert open_at is None, f"{path.name}:{open_at}: this code block is never closed"
