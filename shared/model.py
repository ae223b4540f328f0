"""The network tunefleet tunes, and the bundle that makes a checkpoint predict on its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FILE = "model.pt"
CHECKPOINT_FORMAT = 1


class MLP(nn.Module):
    """The seed's classifier: (Linear -> BatchNorm -> ReLU -> Dropout) x layers -> Linear."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_units: int,
        hidden_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(hidden_layers):
            layers += [
                nn.Linear(width, hidden_units),
                nn.BatchNorm1d(hidden_units),
                nn.ReLU(),
                nn.Dropout(p=dropout),
            ]
            width = hidden_units
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass
class ModelBundle:
    """A trained network with everything prediction needs: features, classes, scaler."""

    model: MLP
    architecture: dict[str, Any]
    feature_names: list[str]
    classes: list[Any]
    scale: torch.Tensor
    offset: torch.Tensor

    def payload(self, **extra: Any) -> dict[str, Any]:
        """The checkpoint's content: tensors and plain values only, so that it loads
        with ``torch.load(weights_only=True)``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "state_dict": self.model.state_dict(),
            "architecture": dict(self.architecture),
            "feature_names": list(self.feature_names),
            "classes": list(self.classes),
            "scale": self.scale,
            "offset": self.offset,
            **extra,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ModelBundle:
        architecture = payload["architecture"]
        model = MLP(**architecture)
        model.load_state_dict(payload["state_dict"])
        model.eval()
        return cls(
            model=model,
            architecture=architecture,
            feature_names=list(payload["feature_names"]),
            classes=list(payload["classes"]),
            scale=payload["scale"],
            offset=payload["offset"],
        )

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> ModelBundle:
        """Load a checkpoint folder written by the trainable. Never unpickles objects."""
        path = Path(checkpoint_dir) / CHECKPOINT_FILE
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return cls.from_payload(payload)

    @torch.no_grad()
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for raw (unscaled) rows in feature order."""
        x = torch.as_tensor(features, dtype=torch.float32) * self.scale + self.offset
        return torch.softmax(self.model(x), dim=1).numpy()

    def predict(self, features: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """(labels, probabilities) for raw rows; labels are the dataset's own."""
        probabilities = self.predict_proba(features)
        labels = [self.classes[i] for i in probabilities.argmax(axis=1)]
        return labels, probabilities
