"""The formats a model exports to, and their file extensions.

Kept apart from the exporter (services/predictor/export.py) so that the CLI can read
them without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

ExportFormat = Literal["torchscript", "onnx", "mlflow"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
EXTENSION_OF_FORMAT: dict[ExportFormat, str] = {
    "torchscript": ".pt",
    "onnx": ".onnx",
    # An MLflow model is a folder: it travels as a zip of that folder.
    "mlflow": ".zip",
}
# Inside a TorchScript file, beside the code: torch.jit.load(..., _extra_files=...).
TORCHSCRIPT_METADATA_FILE = "metadata.json"


def format_of_path(path: Path) -> ExportFormat | None:
    """The format a file name's extension stands for (.pt, .onnx); None for others."""
    suffix = path.suffix.lower()
    return next((f for f, ext in EXTENSION_OF_FORMAT.items() if ext == suffix), None)
