"""Scoring a CSV file into another (`tunefleet predict MODEL --csv IN -o OUT`): through
/predict when the rows fit one request, else as a batch job on the cluster.

Either way the output is the input's rows, every column kept, with ``prediction`` and,
for a classifier, ``probability_<class>`` columns added: what a batch job writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cluster.client import ClientError, GatewayClient, TooLarge
from cluster.files import written_whole
from cluster.rows import json_rows
from shared.batch import output_columns
from shared.csv_files import read_table_bytes
from shared.errors import DatasetError
from shared.vocabulary import MODEL_ID_PATTERN, JobStatus


def score_csv(
    client: GatewayClient,
    model_ref: str,
    source: Path,
    output: Path,
    on_progress: Callable[[dict[str, Any]], None] = lambda job: None,
) -> dict[str, Any] | None:
    """Score ``source`` with the model into ``output``. Answers the batch job's last view
    when it went as one (``on_progress`` sees each view as it runs), None when one
    /predict request did it. ClientError when the model, file or job fails."""
    content = source.read_bytes()
    try:  # as an upload reads it: separators sniffed, gap markers read as gaps
        frame = read_table_bytes(content)
    except DatasetError as exc:
        raise ClientError(f"{source}: {exc}") from exc
    if len(frame) <= int(client.health().get("max_instances") or 0):
        try:
            _predict_into(client, model_ref, frame, output)
            return None
        except TooLarge:  # the body is past the request limit: as a batch job
            pass
    dataset = client.upload(source.name, content, None, purpose="scoring")
    accepted = client.submit_batch(model_ref, dataset["id"], "csv")
    job_id = accepted["id"]
    view: dict[str, Any] = {}
    for kind, data in client.events(job_id):
        if kind == "job":
            view = data
            on_progress(view)
    state = JobStatus(view["state"]) if view else None
    if state is not JobStatus.SUCCEEDED:
        reason = view.get("error") or "no error recorded"
        raise ClientError(f"batch job {job_id} {state.value if state else 'lost'}: {reason}")
    client.download_output(job_id, output)
    return view


def _predict_into(client: GatewayClient, model_ref: str, frame: pd.DataFrame, output: Path) -> None:
    model = client.model(_model_id(client, model_ref))
    roles = model.get("columns") or {}
    features = [name for name in model["feature_names"] if roles.get(name) != "ignore"]
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ClientError(f"the file lacks the model's features {', '.join(missing)}")
    added = output_columns(model["task"], model.get("classes") or [])
    clashing = [name for name in added if name in frame.columns]
    if clashing:  # as a batch job refuses them: nothing of the input is overwritten
        raise ClientError(f"the file has columns {', '.join(clashing)}, which the output adds")
    answer = client.predict(model_ref, json_rows(frame[features]))
    scored = frame.copy()
    scored[added[0]] = answer["predictions"]
    if answer.get("probabilities") is not None:
        for index, name in enumerate(added[1:]):
            scored[name] = [row[index] for row in answer["probabilities"]]
    with written_whole(output) as partial:
        scored.to_csv(partial, index=False)


def _model_id(client: GatewayClient, model_ref: str) -> str:
    """The model id of an id or alias (GET /models/{id} takes ids only)."""
    if re.fullmatch(MODEL_ID_PATTERN, model_ref):
        return model_ref
    model_id = client.aliases().get(model_ref)
    if model_id is None:
        raise ClientError(f"no model or alias {model_ref!r}; `tunefleet models` lists them")
    return str(model_id)
