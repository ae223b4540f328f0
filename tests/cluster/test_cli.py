"""The `tunefleet` command against a running stack, as a person uses it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TUNEFLEET, Stack

pytestmark = pytest.mark.e2e


def tunefleet(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TUNEFLEET), *args], env=stack.env, capture_output=True, text=True, timeout=600
    )


def write_spec(tmp_path: Path, name: str, spec: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def test_submit_wait_exits_zero_on_success_and_status_lists_it(
    stack: Stack, tmp_path: Path
) -> None:
    spec = {
        "name": "cli-iris",
        "dataset": {"builtin": "iris"},
        "search_space": {"lr": {"grid": [0.01, 0.02]}, "hidden_units": 16, "epochs": 3},
    }
    done = tunefleet(stack, "submit", str(write_spec(tmp_path, "iris.json", spec)), "--wait")
    assert done.returncode == 0, done.stderr
    assert "succeeded: 2/2 trials" in done.stdout and "best config" in done.stdout
    job_id = done.stdout.split()[1]

    listing = tunefleet(stack, "status")
    assert listing.returncode == 0 and job_id in listing.stdout and "cli-iris" in listing.stdout
    one = tunefleet(stack, "status", job_id)
    assert json.loads(one.stdout)["state"] == "succeeded"


def test_submit_wait_exits_non_zero_with_the_reason(stack: Stack, tmp_path: Path) -> None:
    spec = {"dataset": {"builtin": "wine", "target": "colour"}, "search_space": {"epochs": 1}}
    done = tunefleet(stack, "submit", str(write_spec(tmp_path, "wine.yaml", spec)), "--wait")
    assert done.returncode == 1
    assert "failed" in done.stderr and "target column 'colour'" in done.stderr


def test_invalid_spec_is_one_clear_line(stack: Stack, tmp_path: Path) -> None:
    spec = {"dataset": {"builtin": "iris"}, "search_space": {"lr": 0}}
    done = tunefleet(stack, "submit", str(write_spec(tmp_path, "bad.json", spec)))
    assert done.returncode == 1
    assert "422" in done.stderr and "search_space.lr" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_gateway_is_explained(stack: Stack) -> None:
    done = tunefleet(stack, "status", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1 and "cannot reach tunefleet" in done.stderr
