"""Whole jobs over HTTP on the seed-like table: the blog's grid, and a small job against
the blog's own approach.

usage: python -m bench.seed_grid grid ROWS SCHEDULER [packed|unpacked]
       python -m bench.seed_grid small [ROWS]
``grid``: examples/seed-grid.json (560 configurations x 20 epochs) on an uploaded
seed-like table, with the scheduler given (asha, fifo, ...); one JSON line with the wall
time from the 202 to the job's end, the epochs that ran, and the best validation and
test accuracy. ``small``: 8 configurations x 3 epochs, FIFO, through a `tunefleet up`,
against bench/reference/seed_baseline.py on the same table and grid, one after the
other; one JSON line with both wall times, the time to the first epoch's result, and
both best validation accuracies.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import REFERENCE, LocalStack, emit, seed_like_csv

REPO = Path(__file__).resolve().parent.parent
SMALL_GRID = {"lr": [0.0005, 0.001], "batch_size": [64, 256], "dropout": [0.3],
              "hidden_units": [50, 300]}  # fmt: skip


def upload(client: httpx.Client, csv: Path) -> str:
    with open(csv, "rb") as data:
        answer = client.post(
            "/datasets", params={"target": "target"}, files={"file": (csv.name, data)}
        )
    answer.raise_for_status()
    return str(answer.json()["id"])


def run_job(client: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit, follow to the end; the job, its trials, and seconds to the first result
    and to the end, both from the 202."""
    answer = client.post("/jobs", json=spec)
    accepted = time.perf_counter()
    answer.raise_for_status()
    job_id = answer.json()["id"]
    first_result_s = None
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if first_result_s is None:
            trials = client.get(f"/jobs/{job_id}/trials").json()
            if any(t["iterations"] for t in trials):
                first_result_s = time.perf_counter() - accepted
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.02 if first_result_s is None else 0.5)
    wall_s = time.perf_counter() - accepted
    trials = client.get(f"/jobs/{job_id}/trials").json()
    return {"job": job, "trials": trials, "first_result_s": first_result_s, "wall_s": wall_s}


def grid(rows: int, scheduler: str, engine: str) -> None:
    csv = seed_like_csv(rows)
    spec = json.loads((REPO / "examples" / "seed-grid.json").read_text())
    with (
        tempfile.TemporaryDirectory() as folder,
        LocalStack(Path(folder)) as stack,
        httpx.Client(base_url=stack.url, timeout=300) as client,
    ):
        dataset = upload(client, csv)
        spec["dataset"] = {**spec["dataset"], "upload": dataset}
        del spec["dataset"]["builtin"]
        spec["scheduler"] = scheduler
        spec["packing"] = engine == "packed"
        done = run_job(client, spec)
        if done["job"]["state"] != "succeeded":
            print(stack.log_tail(), file=sys.stderr)
        # The driver's share of the packed engine's epochs (services.driver.packed.run).
        recorded = re.findall(
            r"(\d+) pack epochs, ([\d.]+) s recording", stack.log_path.read_text(errors="replace")
        )
    job = done["job"]
    emit(
        {
            "bench": "seed_grid",
            "rows": rows,
            "scheduler": scheduler,
            "engine": job["engine"],
            "state": job["state"],
            "error": job["error"],
            "trials": len(done["trials"]),
            "epochs_run": sum(t["iterations"] for t in done["trials"]),
            "wall_s": round(done["wall_s"], 1),
            "pack_epochs": sum(int(epochs) for epochs, _ in recorded),
            "driver_recording_s": round(sum(float(s) for _, s in recorded), 1),
            "best_val_accuracy": job["best"]["value"] if job["best"] else None,
            "test_accuracy": (job["test_metrics"] or {}).get("test_accuracy"),
        }
    )


def small(rows: int) -> None:
    csv = seed_like_csv(rows)
    spec = {
        "dataset": {"upload": "", "target": "target"},
        "search_space": {**{k: {"grid": v} for k, v in SMALL_GRID.items()}, "epochs": 3},
    }
    with (
        tempfile.TemporaryDirectory() as folder,
        LocalStack(Path(folder)) as stack,
        httpx.Client(base_url=stack.url, timeout=300) as client,
    ):
        spec["dataset"]["upload"] = upload(client, csv)
        first = run_job(client, spec)  # the first job after the stack started
        ours = run_job(client, spec)
    reference = subprocess.run(
        [
            sys.executable, str(REFERENCE / "seed_baseline.py"), str(csv), "3",
            *(",".join(map(str, SMALL_GRID[k])) for k in
              ("lr", "batch_size", "dropout", "hidden_units")),
        ],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    baseline = json.loads(reference.stdout.strip().splitlines()[-1])
    emit(
        {
            "bench": "small_job",
            "rows": rows,
            "trials": len(ours["trials"]),
            "epochs": 3,
            "ours_wall_s": round(ours["wall_s"], 2),
            "ours_first_result_s": round(ours["first_result_s"], 3),
            "first_job_wall_s": round(first["wall_s"], 2),
            "first_job_first_result_s": round(first["first_result_s"], 3),
            "reference_wall_s": baseline["wall_s"],
            "ratio": round(baseline["wall_s"] / ours["wall_s"], 1),
            "ours_best_val_accuracy": ours["job"]["best"]["value"],
            "reference_best_val_accuracy": baseline["best_val_accuracy"] / 100,
        }
    )


def main() -> None:
    if sys.argv[1:2] == ["grid"]:
        engine = sys.argv[4] if len(sys.argv) > 4 else "packed"
        grid(int(sys.argv[2]), sys.argv[3], engine)
    else:
        small(int(sys.argv[2]) if len(sys.argv) > 2 else 20_000)


if __name__ == "__main__":
    main()
