"""What the benchmarks share: the seed-like table, a local stack, JSON-line output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from cluster.launcher import LaunchedStack
from services.driver.prepared import PreparedData
from services.driver.splits import prepare
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


class LocalStack(LaunchedStack):
    """`tunefleet up` in a temp folder on free ports (cluster.launcher), its drivers live
    before the figures start, stopped with Ctrl-C to its process group."""

    def __init__(self, home: Path, **env: str) -> None:
        super().__init__(home, wait_for_drivers=True, **env)
