"""The network tunefleet tunes, and the bundle that makes a checkpoint predict on its own."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.preprocessing import code_columns, identity_plan, transform
from shared.storage import StoragePath, storage_path

CHECKPOINT_FILE = "model.pt"
CHECKPOINT_FORMAT = 1
# An embedded column's vectors, unless the search space sets embedding_dim: the rule of
# thumb 1.6 x codes^0.56 (fastai's), at most this many.
MAX_AUTO_EMBEDDING = 32


def embedding_layout(plan: dict[str, Any], embedding_dim: int | None) -> list[list[int]]:
    """[input position, codes, vector size] for each embedded column of the plan: what
    MLP's ``embeddings`` takes. A set ``embedding_dim`` applies to every column (at most
    its number of codes); unset, each column's size follows from its codes."""
    layout = []
    for position, codes in code_columns(plan):
        if embedding_dim is None:
            size = min(MAX_AUTO_EMBEDDING, round(1.6 * codes**0.56))
        else:
            size = min(int(embedding_dim), codes)
        layout.append([position, codes, size])
    return layout


class FastDropout(nn.Module):
    """nn.Dropout whose mask comes from NumPy's generator when the tensor is on the CPU.

    On one CPU thread torch's ``bernoulli_`` took 1.4 ms for a 256 x 300 mask and
    NumPy's PCG64 0.3 ms: dropout was half of an epoch's time at batch size 256. On a
    GPU it is plain ``F.dropout``. Scaling and eval behaviour are nn.Dropout's.

    ``rng`` is the network's generator, shared by its dropout layers: generators of
    their own started from one seed would drop the same units in every layer.
    """

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        super().__init__()
        self.p = p
        self._rng = rng

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        keep = 1.0 - self.p
        mask = torch.from_numpy(self._rng.random(tuple(x.shape), dtype=np.float32) < keep)
        return x * mask * (1.0 / keep)


def embedded_split(n_features: int, embeddings: list[list[int]]) -> tuple[list[int], list[int]]:
    """(the input positions of the embedded columns' codes, those of every other input)."""
    codes = [position for position, _, _ in embeddings]
    taken = set(codes)
    return codes, [j for j in range(n_features) if j not in taken]


class CategoryEmbeddings(nn.Module):
    """Embedded columns (see shared.preprocessing): each input column of codes looks up
    a learned vector in its own table; the vectors, side by side, go through a linear
    map onto the first hidden layer, added to what that layer makes of the other
    columns. The same as one-hot columns into the first layer whose weights are the
    product of a table and the map, with far fewer weights for a column of thousands."""

    def __init__(self, n_features: int, embeddings: list[list[int]], hidden_units: int) -> None:
        super().__init__()
        positions, others = embedded_split(n_features, embeddings)
        self.register_buffer(
            "code_index", torch.tensor(positions, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "other_index", torch.tensor(others, dtype=torch.long), persistent=False
        )
        self.tables = nn.ModuleList(nn.Embedding(codes, size) for _, codes, size in embeddings)
        self.proj = nn.Linear(sum(size for _, _, size in embeddings), hidden_units, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the input's other columns, the vectors' share of the first hidden layer)."""
        # Buffers (they follow the network to its device); typed Tensor | Module for mypy.
        codes = x.index_select(1, self.code_index).long()  # type: ignore[arg-type]
        vectors = [table(codes[:, i]) for i, table in enumerate(self.tables)]
        others = x.index_select(1, self.other_index)  # type: ignore[arg-type]
        return others, self.proj(torch.cat(vectors, dim=1))


class MLP(nn.Module):
    """The seed's network: (Linear -> BatchNorm -> ReLU -> Dropout) x layers -> Linear.

    ``n_outputs`` is the number of classes, or 1 for regression. ``dropout_rng`` draws
    every layer's CPU dropout masks, layer after layer, as the packed engine draws its
    own; a checkpoint carries its state so that a resumed trial goes on with its masks.
    ``embeddings`` ([input position, codes, vector size] per column, see
    embedding_layout) makes those columns learned vectors (CategoryEmbeddings).
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_units: int,
        hidden_layers: int = 1,
        dropout: float = 0.0,
        seed: int = 0,
        embeddings: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.dropout_rng = np.random.default_rng(seed)
        layers: list[nn.Module] = []
        width = n_features - len(embeddings or [])
        for _ in range(hidden_layers):
            layers += [
                nn.Linear(width, hidden_units),
                nn.BatchNorm1d(hidden_units),
                nn.ReLU(),
                FastDropout(dropout, self.dropout_rng),
            ]
            width = hidden_units
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)
        self.embedded = (
            CategoryEmbeddings(n_features, embeddings, hidden_units) if embeddings else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedded is None:
            out: torch.Tensor = self.layers(x)
            return out
        others, embedded = self.embedded(x)
        h: torch.Tensor = embedded
        for index, layer in enumerate(self.layers):
            h = layer(others) + h if index == 0 else layer(h)
        return h


def checkpoint_payload(
    state_dict: dict[str, torch.Tensor],
    architecture: dict[str, Any],
    *,
    task: str,
    feature_names: list[str],
    classes: list[Any],
    target_mean: float,
    target_std: float,
    scale: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    columns: dict[str, str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    target_transform: str = "none",
    **extra: Any,
) -> dict[str, Any]:
    """A checkpoint's content: an MLP's weights and everything prediction needs: the
    table's feature columns and their roles, and the plan that makes their raw values
    the network's input. ``scale`` and ``offset`` default to the identity: the plan
    scales (checkpoints from before plans carry their fitted scaler there)."""
    n_inputs = int(architecture["n_features"])
    return {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state_dict,
        "architecture": dict(architecture),
        "task": task,
        "target_mean": target_mean,
        "target_std": target_std,
        "feature_names": list(feature_names),
        "classes": list(classes),
        "scale": torch.ones(n_inputs) if scale is None else scale,
        "offset": torch.zeros(n_inputs) if offset is None else offset,
        **({"columns": dict(columns)} if columns else {}),
        **({"preprocessing": preprocessing} if preprocessing is not None else {}),
        "target_transform": target_transform,
        **extra,
    }


@dataclass
class ModelBundle:
    """A trained network with everything prediction needs: the table's feature columns
    (``feature_names``, in the table's order) and their roles, the preprocessing plan,
    classes or the target's scale and transform.

    Checkpoints from before plans existed have none: their columns are all numeric,
    without gaps, and ``scale``/``offset`` scale them (since, the plan scales and these
    are the identity)."""

    model: MLP
    architecture: dict[str, Any]
    task: str
    feature_names: list[str]
    classes: list[Any]
    scale: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    columns: dict[str, str] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    target_transform: str = "none"

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = {name: "numeric" for name in self.feature_names}
        n_inputs = int(self.architecture["n_features"])
        if self.scale is None:
            self.scale = torch.ones(n_inputs)
        if self.offset is None:
            self.offset = torch.zeros(n_inputs)
        # Once, not per request: an old checkpoint's plan is made from its columns.
        self._plan = self.preprocessing or identity_plan(self.feature_names)

    @property
    def plan(self) -> dict[str, Any]:
        return self._plan

    @property
    def scaler(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, offset) of the network's own input scaler, set by __post_init__."""
        assert self.scale is not None and self.offset is not None
        return self.scale, self.offset

    @property
    def inputs(self) -> list[str]:
        """The columns a row must give a value (or null) for: those not ignored."""
        return [name for name in self.feature_names if self.columns.get(name) != "ignore"]

    def payload(self, **extra: Any) -> dict[str, Any]:
        """The checkpoint's content: tensors and plain values only, so that it loads
        with ``torch.load(weights_only=True)``."""
        return checkpoint_payload(
            self.model.state_dict(),
            self.architecture,
            task=self.task,
            feature_names=self.feature_names,
            classes=self.classes,
            scale=self.scale,
            offset=self.offset,
            target_mean=self.target_mean,
            target_std=self.target_std,
            columns=self.columns,
            preprocessing=self.plan,
            target_transform=self.target_transform,
            **extra,
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ModelBundle:
        architecture = dict(payload["architecture"])
        if "n_classes" in architecture:  # checkpoints from before regression existed
            architecture["n_outputs"] = architecture.pop("n_classes")
        model = MLP(**architecture)
        model.load_state_dict(payload["state_dict"])
        model.eval()
        return cls(
            model=model,
            architecture=architecture,
            task=payload.get("task", "classification"),
            feature_names=list(payload["feature_names"]),
            classes=list(payload["classes"]),
            scale=payload["scale"],
            offset=payload["offset"],
            target_mean=float(payload.get("target_mean", 0.0)),
            target_std=float(payload.get("target_std", 1.0)),
            columns=dict(payload.get("columns") or {}),
            preprocessing=payload.get("preprocessing"),
            target_transform=str(payload.get("target_transform", "none")),
        )

    @classmethod
    def load(cls, checkpoint_dir: str | Path | StoragePath) -> ModelBundle:
        """Load a checkpoint folder written by the trainable, a local path or a
        StoragePath (a string with a scheme needs one: its endpoint is in the settings,
        ``Settings.storage_at``). Never unpickles objects."""
        content = (storage_path(checkpoint_dir) / CHECKPOINT_FILE).read_bytes()
        payload = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
        return cls.from_payload(payload)

    def encode(self, columns: dict[str, Any]) -> np.ndarray:
        """The network's input from raw columns by name (see shared.preprocessing.transform);
        ValueReadError names a cell that cannot be read."""
        return transform(self.plan, columns)

    @torch.no_grad()
    def _outputs(self, encoded: np.ndarray) -> torch.Tensor:
        scale, offset = self.scaler
        x = torch.as_tensor(encoded, dtype=torch.float32) * scale + offset
        out: torch.Tensor = self.model(x)
        return out

    def predict(self, features: np.ndarray) -> tuple[list[Any], np.ndarray | None]:
        """Predictions for raw rows, a matrix in the order of ``feature_names`` (NaN for
        a gap); see predict_encoded."""
        columns = {name: features[:, j] for j, name in enumerate(self.feature_names)}
        return self.predict_encoded(self.encode(columns))

    def predict_encoded(self, encoded: np.ndarray) -> tuple[list[Any], np.ndarray | None]:
        """Predictions for rows the plan has encoded, and class probabilities.

        Classification: the dataset's own labels and an (n, classes) array.
        Regression: values in the target's units, and None.
        """
        outputs = self._outputs(encoded)
        if self.task == "regression":
            values = outputs[:, 0].double() * self.target_std + self.target_mean
            if self.target_transform == "log":
                values = torch.expm1(values)
            return values.tolist(), None
        probabilities = torch.softmax(outputs, dim=1).numpy()
        labels = [self.classes[i] for i in probabilities.argmax(axis=1)]
        return labels, probabilities
