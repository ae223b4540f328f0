"""The `tunefleet` command against a running stack, as a person uses it."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cluster.redis_server import free_port
from tests.helpers.cli import tunefleet
from tests.helpers.stack import TUNEFLEET, Stack, digits_rows

pytestmark = pytest.mark.e2e


def assert_fits_80_columns(done: subprocess.CompletedProcess[str]) -> None:
    """Exit 0, no cell cut to an ellipsis, no line wider than the terminal."""
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80, done.stdout


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
    # The progress bar ends full, then the seed's "Best config" line.
    assert "succeeded: 2/2 trials" in done.stdout and "Best config: {" in done.stdout
    assert "2/2" in done.stdout.split("succeeded: 2/2 trials")[0]
    job_id = done.stdout.split()[1]

    listing = tunefleet(stack, "status")  # ids shortened to a unique prefix
    assert listing.returncode == 0 and job_id[:8] in listing.stdout
    assert "cli-iris" in listing.stdout
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


def test_results_best_and_csv_of_a_job(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    job_id = quick_job["id"]
    path = tmp_path / "trials.csv"
    done = tunefleet(stack, "results", job_id, "--csv", str(path), "--top", "2")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(path)
    assert len(table) == 4 and {"config/lr", "best_metrics/val_accuracy"} <= set(table.columns)
    best_trial = quick_job["best"]["trial_id"]
    assert table["trial_id"].iloc[0] == best_trial
    shown = [line for line in done.stdout.splitlines() if "_0000" in line]
    assert len(shown) == 2 and best_trial in shown[0]

    best = tunefleet(stack, "best", job_id)
    assert best.returncode == 0
    assert f"Best config: {quick_job['best']['config']}" in best.stdout.replace("\n", "")
    assert "test_accuracy" in best.stdout


def test_plot_writes_a_png_with_content(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "job.png"
    done = tunefleet(stack, "plot", quick_job["id"], "-o", str(out), "--top", "3")
    assert done.returncode == 0, done.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 400 and image.shape[1] > 400
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_predict_from_csv_and_from_stdin(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    rows = digits_rows(5)
    path = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    from_csv = tunefleet(stack, "predict", quick_job["id"], "--csv", str(path), "--as-csv")
    assert from_csv.returncode == 0, from_csv.stderr
    answer = pd.read_csv(io.StringIO(from_csv.stdout))
    assert len(answer) == 5 and "prediction" in answer.columns and "p(0)" in answer.columns
    served = stack.http.post(f"/models/{quick_job['id']}/predict", json={"instances": rows})
    assert answer["prediction"].tolist() == served.json()["predictions"]

    from_stdin = tunefleet(stack, "predict", quick_job["id"], stdin=json.dumps({"instances": rows}))
    assert from_stdin.returncode == 0 and "prediction" in from_stdin.stdout

    bad = tunefleet(stack, "predict", quick_job["id"], stdin="not json")
    assert bad.returncode == 1 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr


def test_jobs_edit_and_cancel(stack: Stack, tmp_path: Path) -> None:
    # Long enough to be still queued or running when the cancel comes.
    spec = {"dataset": {"builtin": "digits"}, "priority": "low",
            "search_space": {"lr": {"grid": [0.01, 0.02, 0.03]}, "epochs": 200,
                             "batch_size": 8}}  # fmt: skip
    submitted = tunefleet(stack, "submit", str(write_spec(tmp_path, "long.json", spec)))
    job_id = submitted.stdout.split()[1]
    edited = tunefleet(stack, "edit", job_id[:10], "--max-concurrent", "2", "--time-budget", "900",
                       columns=80)  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    assert "max_concurrent_trials: 2\n" in edited.stdout and "time_budget_s: 900\n" in edited.stdout
    nothing = tunefleet(stack, "edit", job_id)
    assert nothing.returncode == 1 and "nothing to edit" in nothing.stderr
    cancelled = tunefleet(stack, "cancel", job_id)
    assert cancelled.returncode == 0 and job_id in cancelled.stdout
    assert "cancel" in cancelled.stdout
    listing = tunefleet(stack, "jobs")
    assert job_id[:8] in listing.stdout and "cancel" in listing.stdout
    again = tunefleet(stack, "cancel", job_id)
    stack.wait_for(job_id, 120)
    assert tunefleet(stack, "cancel", job_id).returncode == 1
    assert again.returncode in (0, 1)
    ended = tunefleet(stack, "edit", job_id, "--priority", "high")
    assert ended.returncode == 1 and "409" in ended.stderr and "can be edited" in ended.stderr


def test_import_an_experiment_folder_and_serve_its_best(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    folder = stack.home / "storage" / "experiments" / quick_job["id"]
    done = tunefleet(stack, "import", str(folder), "--register")
    assert done.returncode == 0, done.stderr
    assert "Best config: {" in done.stdout and "4 trials" in done.stdout
    model_id = done.stdout.split("registered model ")[1].split()[0]
    model = stack.http.get(f"/models/{model_id}").json()
    assert model["config"]["lr"] == quick_job["best"]["config"]["lr"]
    rows = digits_rows(20)
    imported = stack.http.post(f"/models/{model_id}/predict", json={"instances": rows}).json()
    original = stack.http.post(f"/models/{quick_job['id']}/predict", json={"instances": rows})
    assert imported["predictions"] == original.json()["predictions"]

    not_one = tunefleet(stack, "import", str(tmp_path))
    assert not_one.returncode == 1 and "Traceback" not in not_one.stderr
    assert "experiment" in not_one.stderr


def test_up_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("TUNEFLEET_REDIS_URL", "RAY_ADDRESS")},
        "TUNEFLEET_HOME": str(tmp_path),
        "TUNEFLEET_HTTP_HOST": "0.0.0.0",
        "TUNEFLEET_HTTP_PORT": str(free_port()),
    }
    done = subprocess.run(
        [str(TUNEFLEET), "up"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0 with no API key" in done.stderr
    assert "tunefleet keys create" in done.stderr


def test_up_refuses_a_port_that_is_taken(tmp_path: Path) -> None:
    # Serve's HAProxy would bind it anyway (SO_REUSEPORT) and share its connections
    # with whatever holds it: two stacks answering on one port, each request to either.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("TUNEFLEET_REDIS_URL", "RAY_ADDRESS")
            },
            "TUNEFLEET_HOME": str(tmp_path),
            "TUNEFLEET_HTTP_PORT": str(port),
        }
        done = subprocess.run(
            [str(TUNEFLEET), "up"], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "TUNEFLEET_HTTP_PORT" in done.stderr
    assert not (tmp_path / "redis").exists(), "nothing is started before the check"


def test_tables_read_at_80_columns_and_json_has_it_all(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    job_id, best_trial = quick_job["id"], quick_job["best"]["trial_id"]
    jobs = tunefleet(stack, "jobs", columns=80)
    assert_fits_80_columns(jobs)
    assert job_id[:8] in jobs.stdout and "quick-digits" in jobs.stdout
    listed = json.loads(tunefleet(stack, "jobs", "--json", columns=80).stdout)
    assert job_id in {job["id"] for job in listed}

    # The first characters of the id do, as with git; the tuned parameters stay.
    results = tunefleet(stack, "results", job_id[:8], columns=80)
    assert_fits_80_columns(results)
    rows = [line for line in results.stdout.splitlines() if "_0000" in line]
    assert len(rows) == 4 and best_trial in rows[0]
    assert "lr" in results.stdout and "hidden_units" in results.stdout
    assert "--wide shows them" in results.stdout
    wide = tunefleet(stack, "results", job_id[:8], "--wide", columns=80)
    assert "…" not in wide.stdout and "batch_size" in wide.stdout and "iterations" in wide.stdout
    trials = json.loads(tunefleet(stack, "results", job_id[:8], "--json").stdout)
    assert len(trials) == 4 and trials[0]["trial_id"] == best_trial
    assert trials[0]["config"] == quick_job["best"]["config"]

    folder = stack.home / "storage" / "experiments" / job_id
    imported = tunefleet(stack, "import", str(folder), columns=80)
    assert_fits_80_columns(imported)
    assert best_trial in imported.stdout
    experiment = json.loads(tunefleet(stack, "import", str(folder), "--json").stdout)
    assert (
        experiment["trials"] == 4
        and experiment["best_config"]["lr"] == (quick_job["best"]["config"]["lr"])
    )
    assert experiment["results"][0]["trial_id"] == best_trial

    assert_fits_80_columns(tunefleet(stack, "models", columns=80))
    rows_in = json.dumps({"instances": digits_rows(3)})
    answer = tunefleet(stack, "predict", job_id[:9], "--json", stdin=rows_in)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["model"]["id"] == job_id
    unknown = tunefleet(stack, "predict", "no-such-alias", stdin=rows_in)
    assert unknown.returncode == 1 and "tunefleet models" in unknown.stderr
