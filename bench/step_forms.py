"""The forms the packed step's operations could take, timed side by side: the figures
behind services/driver/packed/step.py's choices.

usage: python -m bench.step_forms
One JSON line per (form, rows): microseconds per call, the median of 5 rounds, on one
thread as a pack's task runs (subnormals flushed, freed memory kept). The tensors are a
pack of the seed grid's: 40 members, 5,440 hidden columns, 5 classes, 30 inputs; widths
of one batched matmul are 8 members of 300 columns.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.common import emit
from bench.packed_speed import configs
from services.driver.packed.epoch import member_of
from services.driver.packed.network import PackedMLP
from services.driver.packed.step import HandStep
from services.driver.workers import keep_freed_memory

COLUMNS, MEMBERS, CLASSES, INPUTS = 5440, 40, 5, 30
GROUP, WIDTH = 8, 300


def timed(call: Callable[[], Any], calls: int) -> float:
    """Microseconds per call, the median of 5 rounds of ``calls`` calls."""
    call()
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def forms(rows: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """Name -> (the form step.py takes, the form it does not)."""
    h, g = torch.randn(rows, COLUMNS), torch.randn(rows, COLUMNS)
    scratch = torch.empty(rows, COLUMNS)
    block = h[:, : GROUP * WIDTH].view(rows, GROUP, WIDTH).transpose(0, 1)
    weight = torch.randn(GROUP, CLASSES, WIDTH)  # as the pack keeps it: nn.Linear's
    weight_by_inputs = weight.transpose(1, 2).contiguous()  # (width, outputs) per member
    by_rows, by_outputs = torch.empty(GROUP, rows, CLASSES), torch.empty(GROUP, CLASSES, rows)
    logits = torch.randn(MEMBERS, CLASSES, rows)
    return {
        "batchnorm statistics: sum, subtract, dot / var_mean": (
            lambda: (
                torch.sum(h, dim=0),
                torch.sub(h, h[0], out=scratch),
                torch.linalg.vecdot(scratch, scratch, dim=0),
            ),
            lambda: torch.var_mean(h, dim=0, correction=0),
        ),
        "output layer: (members, outputs, rows) / (members, rows, outputs)": (
            lambda: torch.bmm(weight, block.transpose(1, 2), out=by_outputs),
            lambda: torch.bmm(block, weight_by_inputs, out=by_rows),
        ),
        "output layer's weights: (outputs, width) / a view of (width, outputs)": (
            lambda: torch.bmm(weight, block.transpose(1, 2), out=by_outputs),
            lambda: torch.bmm(
                weight_by_inputs.transpose(1, 2), block.transpose(1, 2), out=by_outputs
            ),
        ),
        "predicted class: max / argmax": (
            lambda: torch.max(logits, dim=1),
            lambda: logits.argmax(dim=1),
        ),
        "ReLU gate multiplied in: float / bool": (
            lambda: g.mul_(torch.gt(h, 0, out=scratch)),
            lambda: g.mul_(h > 0),
        ),
    }


def steps(rows: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """A written-out step and an autograd step of one pack of the seed grid's."""
    members = [member_of(trial_id, c) for trial_id, c in configs(MEMBERS, rows).items()]
    hand_pack, autograd_pack = (PackedMLP(members, INPUTS, CLASSES, 1) for _ in range(2))
    hand = HandStep(hand_pack, rows, regression=False)
    x, y = torch.randn(rows, INPUTS), torch.randint(0, CLASSES, (rows,))
    onehot = torch.nn.functional.one_hot(y, CLASSES).t().float()
    rng = np.random.default_rng(0)
    return (
        lambda: hand(x, y, onehot, rng),
        lambda: autograd_pack.autograd_step(x, y, False, rng),
    )


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    keep_freed_memory()
    for rows in (8, 64, 512):
        calls = max(5, 4096 // rows)
        chosen_forms = {**forms(rows), "a step, 40 members: written out / autograd": steps(rows)}
        for name, (chosen, other) in chosen_forms.items():
            ours, theirs = timed(chosen, calls), timed(other, calls)
            emit(
                {
                    "bench": "step_forms",
                    "form": name,
                    "rows": rows,
                    "chosen_us": round(ours, 1),
                    "other_us": round(theirs, 1),
                    "ratio": round(theirs / ours, 2),
                }
            )


if __name__ == "__main__":
    main()
