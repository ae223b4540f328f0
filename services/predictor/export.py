"""A model as one file that predicts without tunefleet: TorchScript or ONNX.

The graph holds the network's arithmetic: the network in eval mode (dropout off,
BatchNorm on its running statistics), then softmax for classes, or the target's scale
(and its log transform undone) for regression. Its input is the matrix the model's
preprocessing plan makes from raw rows (float32, in the order of ``encoded_names``).

The preprocessing ships beside the graph, not inside it: the file's metadata carries the
plan (``preprocessing``, JSON) and the source of the one module that applies it
(``preprocessing.py``: NumPy and the standard library only, the very code /predict
runs). Text categories, ISO dates and gaps are Python-side work that neither
TorchScript nor ONNX's standard operators do well, and one applying code for every
consumer means an export cannot drift from /predict. In use::

    namespace = {}
    exec(metadata["preprocessing.py"], namespace)
    matrix = namespace["transform"](json.loads(metadata["preprocessing"]), columns)

where ``columns`` maps each of ``feature_names`` to its raw values (None for a gap).
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import threading
import warnings
from typing import Any

import onnx
import torch
from torch import nn

from shared import preprocessing
from shared.export_formats import TORCHSCRIPT_METADATA_FILE, ExportFormat
from shared.model import FastDropout, ModelBundle
from shared.preprocessing import output_names

INPUT_NAME = "features"
# The metadata entry holding the source of shared/preprocessing.py.
PREPROCESSING_SOURCE = "preprocessing.py"
# 17: what onnxruntime releases of the last years all run; the network needs nothing newer.
ONNX_OPSET = 17
# Scripting fills TorchScript's global compilation cache, and the ONNX exporter keeps
# its settings in module globals for the length of an export: one export at a time.
_EXPORT_LOCK = threading.Lock()


class InferenceNet(nn.Module):
    """Raw features in, probabilities per class (or values) out, as the bundle predicts."""

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__()
        # FastDropout draws its masks with NumPy, which TorchScript cannot compile; in
        # eval mode a dropout layer passes its input through, so leaving it out changes
        # nothing.
        kept = [layer for layer in bundle.model.layers if not isinstance(layer, FastDropout)]
        # A copy, so that freezing it below leaves the bundle's own network as it was.
        self.layers = copy.deepcopy(nn.Sequential(*kept))
        # Plain tensor attributes rather than buffers: TorchScript saves them all the same,
        # and their type stays Tensor for the type checker.
        scale, offset = bundle.scaler
        self.scale = scale.detach().clone().float()
        self.offset = offset.detach().clone().float()
        self.regression = bundle.task == "regression"
        self.log_target = bundle.target_transform == "log"
        self.target_mean = float(bundle.target_mean)
        self.target_std = float(bundle.target_std)
        self.eval()
        # A user's output comes without autograd's graph, so .numpy() works on it as is.
        self.requires_grad_(False)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = self.network(features.float() * self.scale + self.offset)
        if self.regression:
            values = outputs[:, 0] * self.target_std + self.target_mean
            # exp - 1, not expm1: ONNX has no expm1 operator (opset 17).
            return torch.exp(values) - 1.0 if self.log_target else values
        return torch.softmax(outputs, dim=1)


class EmbeddedInferenceNet(InferenceNet):
    """InferenceNet of a network with embedded columns: their codes come in as columns
    of the matrix (as the plan makes them) and are looked up in the graph."""

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__(bundle)
        assert bundle.model.embedded is not None
        self.embedded = copy.deepcopy(bundle.model.embedded).eval().requires_grad_(False)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        others, h = self.embedded(x)
        for index, layer in enumerate(self.layers):
            h = layer(others) + h if index == 0 else layer(h)
        return h


def output_name(bundle: ModelBundle) -> str:
    return "values" if bundle.task == "regression" else "probabilities"


def metadata(bundle: ModelBundle, model_id: str) -> dict[str, Any]:
    """What a user of the file needs besides the graph: the input's columns, and what
    the output's columns mean."""
    return {
        "model_id": model_id,
        "task": bundle.task,
        "feature_names": list(bundle.feature_names),
        "columns": dict(bundle.columns),
        "classes": list(bundle.classes),
        "output": output_name(bundle),
        "encoded_names": output_names(bundle.plan),
        "preprocessing": bundle.plan,
        PREPROCESSING_SOURCE: inspect.getsource(preprocessing),
    }


def export_model(bundle: ModelBundle, model_id: str, export_format: ExportFormat) -> bytes:
    """The model as the bytes of a TorchScript (.pt) or ONNX (.onnx) file."""
    net = InferenceNet(bundle) if bundle.model.embedded is None else EmbeddedInferenceNet(bundle)
    about = metadata(bundle, model_id)
    with _EXPORT_LOCK, torch.no_grad():
        if export_format == "onnx":
            return _onnx(net, about, len(about["encoded_names"]))
        return _torchscript(net, about)


def _torchscript(net: InferenceNet, about: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, buffer, _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(about)})
    return buffer.getvalue()


def _onnx(net: InferenceNet, about: dict[str, Any], n_features: int) -> bytes:
    buffer = io.BytesIO()
    output = about["output"]
    # The TorchScript-based exporter (dynamo=False): it needs only the onnx package and
    # took 0.07 s for a 3 x 300 network where the torch.export-based one took 2.6 s, 190 MB
    # more memory and onnxscript. torch is pinned, and 2.13 still has it (it warns that a
    # later release will remove it, which is all the warning says).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, n_features),),
            buffer,  # type: ignore[arg-type]  # a file object is documented, not typed
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[output],
            dynamic_axes={INPUT_NAME: {0: "rows"}, output: {0: "rows"}},
        )
    graph = onnx.load_from_string(buffer.getvalue())
    graph.producer_name = "tunefleet"
    graph.doc_string = (
        f"{INPUT_NAME}: float32 (rows, {n_features}), the matrix that the metadata's "
        f"preprocessing.py makes from raw columns with the preprocessing plan; {output}: "
        + ("(rows,)" if output == "values" else "(rows, classes), in the order of classes")
    )
    for key, value in about.items():
        entry = graph.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    return graph.SerializeToString()
