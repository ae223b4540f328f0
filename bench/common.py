"""What the benchmarks share: the seed-like table, a local stack, JSON-line output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from cluster.redis_server import free_port
from shared.data import prepare
from shared.prepared import PreparedData
from shared.spec import DatasetSpec

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference"
OUT = HERE / "out"
DATA_SEED = 7


def seed_like_csv(rows: int) -> Path:
    """The seed-like table (30 features, 5 imbalanced classes), made once per size."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"seed_like_{rows}_{DATA_SEED}.csv"
    if not path.exists():
        subprocess.run(
            [sys.executable, str(REFERENCE / "make_data.py"), str(path), str(rows), str(DATA_SEED)],
            check=True,
            capture_output=True,
        )
    return path


def seed_split(path: Path) -> PreparedData:
    """The seed's split: 80 % training, 20 % validation (stratified, seed 21), MinMax.

    Our splitter also holds out a test split; it is kept to 1 % here so that both
    sides train on almost the same rows.
    """
    spec = DatasetSpec(upload="0" * 32, validation_fraction=0.2, test_fraction=0.01, seed=21)
    return prepare(pd.read_csv(path), spec, "target")


def emit(record: dict[str, Any]) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps(record), flush=True)


class LocalStack:
    """`tunefleet up` in a temp folder on free ports, stopped with SIGINT."""

    def __init__(self, home: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("TUNEFLEET_REDIS_URL", "RAY_ADDRESS")
            },
            "TUNEFLEET_HOME": str(home),
            "TUNEFLEET_HTTP_PORT": str(self.port),
            **env,
        }
        self.log = home / "stack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalStack:
        tunefleet = Path(sys.executable).parent / "tunefleet"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(tunefleet), "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).json()["drivers"]:
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the stack did not come up; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(120)
