"""The CLI's results table at 80 columns, for a job with trials a warm start carried over."""

from __future__ import annotations

import pytest
from rich.console import Console

from cluster import render
from shared.results import trials_table

EARLIER = "9b06cbdb01b241dcabd8f8ed2e343c49"


def test_carried_rows_say_where_they_ran_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=80, record=True)
    monkeypatch.setattr(render, "out", console)
    rows = [
        {
            "trial_id": f"abcd1234_0000{index}",
            "state": "TERMINATED",
            "config": {"lr": lr, "hidden_units": 64, "epochs": 8},
            "metrics": {"val_accuracy": 0.9, "val_loss": 0.3},
            "best_metrics": {"val_accuracy": 0.91 + index / 100},
            "iterations": 8,
            "carried_from": EARLIER if index < 2 else None,
        }
        for index, lr in enumerate([0.001, 0.003, 0.01])
    ]
    render.trials_table(trials_table(rows), "val_accuracy")
    text = console.export_text()
    assert "carried_from" in text.splitlines()[2]  # a column header, in view
    lines = {line.split()[1]: line for line in text.splitlines() if "abcd1234_" in line}
    assert EARLIER[:8] in lines["abcd1234_00000"] and EARLIER[:8] in lines["abcd1234_00001"]
    assert EARLIER[:8] not in lines["abcd1234_00002"]
    assert max(len(line) for line in text.splitlines()) <= 80
