"""What an uploaded checkpoint claims, checked before its network is built.

A checkpoint names its architecture, and building it allocates every weight: a few
kilobytes that claim 50,000 units in 16 layers would take terabytes. So the claim is
held to the limits a job spec has, then to the weights the file really carries, and
the feature names and classes to the widths of the first and last layers.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from services.predictor.plan_checks import check_plan
from shared.errors import InvalidInputError
from shared.model import CHECKPOINT_FILE, MLP, ModelBundle
from shared.preprocessing import CODE_FIRST, code_columns
from shared.preprocessing_fit import MAX_EMBEDDED
from shared.search_space import SearchSpace
from shared.settings import Settings

NOT_OURS = f"only {CHECKPOINT_FILE} files written by tunefleet's trainable can be imported"


@dataclass(frozen=True)
class ImportLimits:
    """What an imported model may claim besides a job spec's limits (see Settings)."""

    max_inputs: int
    max_classes: int
    max_columns: int

    @classmethod
    def of(cls, settings: Settings) -> ImportLimits:
        return cls(settings.max_model_inputs, settings.max_classes, settings.max_dataset_columns)


# What MLP takes (shared.model), and so all an architecture may name.
ARCHITECTURE_KEYS = frozenset(
    {"n_features", "n_outputs", "hidden_units", "hidden_layers", "dropout", "seed", "embeddings"}
)


def load_checked(folder: Path, limits: ImportLimits) -> ModelBundle:
    """The model of ``folder``/model.pt once its claims hold; InvalidInputError naming
    the first that does not. Weights only: nothing is unpickled."""
    path = folder / CHECKPOINT_FILE
    _check_stored_only(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInputError(
            f"not a tunefleet checkpoint ({type(exc).__name__}); {NOT_OURS}"
        ) from exc
    check_claims(payload, limits)
    try:
        return ModelBundle.from_payload(payload)
    except Exception as exc:
        raise InvalidInputError(
            f"not a tunefleet checkpoint ({type(exc).__name__}); {NOT_OURS}"
        ) from exc


def check_claims(payload: Any, limits: ImportLimits) -> None:
    """Raise InvalidInputError unless the architecture is one a job could have made and
    the weights, feature names, classes and scaler fit it."""
    if not isinstance(payload, dict) or not isinstance(payload.get("architecture"), dict):
        raise InvalidInputError(f"not a tunefleet checkpoint (no architecture); {NOT_OURS}")
    architecture = dict(payload["architecture"])
    if "n_classes" in architecture:  # as ModelBundle.from_payload reads old checkpoints
        architecture["n_outputs"] = architecture.pop("n_classes")
    _check_architecture_values(architecture)
    n_features, n_outputs = architecture.get("n_features"), architecture.get("n_outputs")
    for name, width, limit, setting in (
        ("n_features", n_features, limits.max_inputs, "TUNEFLEET_MAX_MODEL_INPUTS"),
        ("n_outputs", n_outputs, limits.max_classes, "TUNEFLEET_MAX_CLASSES"),
    ):
        if not isinstance(width, int) or not _is_count(width):
            raise InvalidInputError(f"architecture.{name} must be a whole number of at least 1")
        if width > limit:
            raise InvalidInputError(
                f"architecture.{name} is {width}; this service takes at most {limit} ({setting})"
            )
    assert isinstance(n_features, int)  # _is_count above
    _check_embeddings(architecture.get("embeddings"), n_features)
    _check_weights(architecture, payload.get("state_dict"))
    _check_tensors_own_their_storage(payload)
    _check_feature_names(payload, architecture, n_features, limits)
    _check_classes(payload.get("classes"))
    _check_outputs(payload.get("task", "classification"), payload.get("classes"), n_outputs)
    _check_scaler(payload, n_features)


def _check_feature_names(
    payload: dict[str, Any], architecture: dict[str, Any], n_features: int, limits: ImportLimits
) -> None:
    """The checkpoint's feature names, distinct, within the column limit, and matching
    its preprocessing plan (or, without one, the first layer's inputs)."""
    feature_names = payload.get("feature_names")
    if (
        not isinstance(feature_names, list)
        or not all(isinstance(n, str) for n in feature_names)
        or len(set(feature_names)) != len(feature_names)
    ):
        raise InvalidInputError("feature_names must be a list of distinct column names (text)")
    if len(feature_names) > limits.max_columns:
        raise InvalidInputError(
            f"feature_names has {len(feature_names)} columns; this service takes at most "
            f"{limits.max_columns} (TUNEFLEET_MAX_DATASET_COLUMNS)"
        )
    if payload.get("preprocessing") is not None:
        check_plan(payload["preprocessing"], feature_names, n_features)
        embedded = [(p, c) for p, c, _ in architecture.get("embeddings") or []]
        if embedded != code_columns(payload["preprocessing"]):
            raise InvalidInputError(
                "architecture.embeddings does not match the embedded columns of the "
                "preprocessing plan (input position and number of codes of each)"
            )
    elif architecture.get("embeddings"):
        raise InvalidInputError("architecture.embeddings needs a preprocessing plan")
    elif len(feature_names) != n_features:
        raise InvalidInputError(
            f"feature_names has {len(feature_names)} names, but the first layer takes "
            f"{n_features} inputs"
        )


def _check_outputs(task: Any, classes: Any, n_outputs: Any) -> None:
    """One output for a regression, one per class label for a classification."""
    if task == "regression":
        if n_outputs != 1:
            raise InvalidInputError(
                f"a regression model has 1 output, but the last layer has {n_outputs}"
            )
    elif task == "classification":
        if not isinstance(classes, list) or len(classes) != n_outputs:
            count = len(classes) if isinstance(classes, list) else "no"
            raise InvalidInputError(
                f"classes has {count} labels, but the last layer has {n_outputs} outputs"
            )
    else:
        raise InvalidInputError(
            f"task {task!r}: a checkpoint's task is classification or regression"
        )


def _check_scaler(payload: dict[str, Any], n_features: int) -> None:
    for name in ("scale", "offset"):
        tensor = payload.get(name)
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (n_features,):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "missing"
            raise InvalidInputError(
                f"the scaler's {name} is {shape}, but the first layer takes {n_features} "
                f"inputs: it must have shape ({n_features},)"
            )


def _check_stored_only(path: Path) -> None:
    # torch.save stores records uncompressed, so the file's size bounds what loading
    # reads; a compressed record could inflate a small upload to any size.
    try:
        with zipfile.ZipFile(path) as archive:
            packed = [
                i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(
            f"not a tunefleet checkpoint (not a torch.save file); {NOT_OURS}"
        ) from exc
    if packed:
        raise InvalidInputError(
            f"the checkpoint's record {packed[0]} is compressed; {NOT_OURS}, as torch.save "
            "writes them (uncompressed)"
        )


def _check_architecture_values(architecture: dict[str, Any]) -> None:
    """Only what MLP takes, within the bounds a job spec has."""
    unknown = sorted(str(key) for key in set(architecture) - ARCHITECTURE_KEYS)
    if unknown:
        raise InvalidInputError(
            f"architecture.{unknown[0]} is not part of tunefleet's network; {NOT_OURS}"
        )
    seed = architecture.get("seed", 0)
    if not (_is_count_or_zero(seed) and seed < 2**63):
        raise InvalidInputError(f"architecture.seed is {seed!r}: a whole number from 0 to 2^63 - 1")
    dropout = architecture.get("dropout", 0.0)
    if not (
        isinstance(dropout, int | float) and not isinstance(dropout, bool) and 0 <= dropout < 1
    ):
        raise InvalidInputError(f"architecture.dropout is {dropout!r}: a number in [0, 1)")
    _check_within_spec_limits(architecture)


def _check_classes(classes: Any) -> None:
    """Labels a model can answer with in JSON: text, whole numbers, finite numbers, booleans."""
    if classes is None:
        return
    if not isinstance(classes, list) or not all(
        isinstance(label, str | int | bool) or (isinstance(label, float) and math.isfinite(label))
        for label in classes
    ):
        raise InvalidInputError(
            "classes must be a list of labels: text, numbers (finite) or true/false"
        )


def _check_tensors_own_their_storage(payload: dict[str, Any]) -> None:
    """Every tensor contiguous and the whole of its storage: torch.save keeps a view as
    its storage and strides, so ``torch.zeros(1).expand(8192, 8192)`` is 4 bytes in the
    file and 256 MB once the network copies it. So the file's size bounds the memory its
    model takes."""
    tensors = {f"state_dict.{k}": v for k, v in (payload.get("state_dict") or {}).items()}
    tensors |= {name: payload.get(name) for name in ("scale", "offset")}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        whole = tensor.numel() * tensor.element_size()
        if (
            not tensor.is_contiguous()
            or tensor.storage_offset() != 0
            or tensor.untyped_storage().nbytes() != whole
        ):
            raise InvalidInputError(
                f"{name} is a view of {tensor.untyped_storage().nbytes()} bytes of storage for "
                f"{whole} bytes of values; save each tensor contiguous and on its own "
                "(tensor.contiguous().clone()), as tunefleet's trainable does"
            )


def _check_within_spec_limits(architecture: dict[str, Any]) -> None:
    """The same bounds as a job spec's hidden_units and hidden_layers, from its own
    model (no second copy of the numbers here)."""
    claimed = {
        "hidden_units": architecture.get("hidden_units"),
        "hidden_layers": architecture.get("hidden_layers", 1),  # MLP's default
    }
    for name, value in claimed.items():
        if not _is_count(value):
            raise InvalidInputError(f"architecture.{name} must be a whole number of at least 1")
    try:
        SearchSpace.model_validate(claimed)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        raise InvalidInputError(
            f"architecture.{name} is {claimed[name]}: {error['msg'].lower()}, the limit of "
            f"search_space.{name} in a job spec"
        ) from exc


def _check_embeddings(embeddings: Any, n_features: int) -> None:
    """[input position, codes, vector size] per embedded column, within what a job
    makes: sizes within search_space.embedding_dim's limit, codes within the plan's."""
    if embeddings is None:
        return
    if not isinstance(embeddings, list) or not all(
        isinstance(column, list) and len(column) == 3 and all(map(_is_count_or_zero, column))
        for column in embeddings
    ):
        raise InvalidInputError(
            "architecture.embeddings must be a list of [input position, codes, vector size]"
        )
    positions = [position for position, _, _ in embeddings]
    if len(set(positions)) != len(positions) or max(positions, default=0) >= n_features:
        raise InvalidInputError(
            f"architecture.embeddings: input positions must be distinct and below {n_features}"
        )
    for _, codes, size in embeddings:
        if not CODE_FIRST <= codes <= CODE_FIRST + MAX_EMBEDDED:
            raise InvalidInputError(
                f"architecture.embeddings: {codes} codes; a column has "
                f"{CODE_FIRST}-{CODE_FIRST + MAX_EMBEDDED}"
            )
        try:
            SearchSpace.model_validate({"embedding_dim": size})
        except ValidationError as exc:
            raise InvalidInputError(
                f"architecture.embeddings: vector size {size}: "
                f"{exc.errors()[0]['msg'].lower()}, the limit of search_space.embedding_dim"
            ) from exc


def _check_weights(architecture: dict[str, Any], state_dict: Any) -> None:
    """Every weight the architecture makes is in the file, with its shape, and no other."""
    if not isinstance(state_dict, dict):
        raise InvalidInputError(f"not a tunefleet checkpoint (no state_dict); {NOT_OURS}")
    # On the meta device the network has shapes but no storage: nothing is allocated.
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in MLP(**architecture).state_dict().items()}
    except TypeError as exc:
        raise InvalidInputError(f"architecture: {exc}; {NOT_OURS}") from exc
    for name, shape in expected.items():
        found = state_dict.get(name)
        if not isinstance(found, torch.Tensor):
            raise InvalidInputError(
                f"the weights have no {name}, which the architecture makes with shape {shape}"
            )
        if tuple(found.shape) != shape:
            raise InvalidInputError(
                f"the weights' {name} has shape {tuple(found.shape)}, but the architecture "
                f"makes it {shape}"
            )
    extra = sorted(set(state_dict) - set(expected))
    if extra:
        raise InvalidInputError(
            f"the weights have {extra[0]}, which the architecture does not make"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_count_or_zero(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
