"""A model of tunefleet called as Triton's and KServe's users call a model: tritonclient,
the Open Inference Protocol's REST API, one FP32 tensor per column.

usage: JOB=<model id or alias> python examples/triton_client.py [host:port]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as triton

address = sys.argv[1] if len(sys.argv) > 1 else "localhost:8000"
model = os.environ["JOB"]
# The predictor's own /models/v2: one hop fewer than the gateway's /v2.
client = triton.InferenceServerClient(f"{address}/models")
about = client.get_model_metadata(model)
names = [tensor["name"] for tensor in about["inputs"]]
rows = json.loads((Path(__file__).parent / "predict-digits.json").read_text())["instances"]
inputs = []
for name in names:
    tensor = triton.InferInput(name, [len(rows)], "FP32")
    tensor.set_data_from_numpy(np.array([row[name] for row in rows], dtype=np.float32))
    inputs.append(tensor)
result = client.infer(model, inputs)
print("predictions:", result.as_numpy("predictions").tolist())  # the labels /predict answers
print("probabilities:", result.as_numpy("probabilities").astype(float).round(3).tolist())
