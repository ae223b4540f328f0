"""How an epoch draws its rows, the same in both engines: the seed's class-balanced
sampling (weights inversely proportional to each class's count), or a shuffle."""

from __future__ import annotations

import numpy as np
import torch


def balanced_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """The seed's WeightedRandomSampler weights: 1 / (rows of the row's class)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return torch.from_numpy(1.0 / counts[labels])


def epoch_order(
    n_rows: int, sample_weights: torch.Tensor | None, generator: torch.Generator
) -> torch.Tensor:
    """Row indices for one epoch: a balanced draw with replacement, else a shuffle."""
    if sample_weights is None:
        return torch.randperm(n_rows, generator=generator)
    return torch.multinomial(sample_weights, n_rows, replacement=True, generator=generator)
