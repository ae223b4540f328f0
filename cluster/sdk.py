"""The Python SDK: tunefleet from a notebook or a script, with pandas in and out.

    from cluster import Client

    client = Client("http://127.0.0.1:8000")
    job = client.submit("examples/quick.json").wait(progress=True)
    table = job.trials()              # one row per trial, best first
    print(job.best["config"])
    client.predict(job.id, rows)      # a DataFrame in, a DataFrame out
    client.export(job.id, "mlflow", "model")  # a folder MLflow loads

Every error answer is raised as a typed ClientError (cluster.client) carrying the API's
own message: NotFound, Conflict, Invalid, TooLarge, RateLimited, Unauthorized,
Unavailable, Unreachable.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from cluster.client import ClientError, GatewayClient
from cluster.files import write_export
from cluster.rows import json_rows
from cluster.specs import read_spec
from shared.export_formats import EXPORT_FORMATS
from shared.results import trials_table
from shared.vocabulary import JobStatus

DEFAULT_URL = "http://127.0.0.1:8000"


class Job:
    """One tuning job; its fields are read afresh from the API on each access of
    ``view`` (``wait`` refreshes it too)."""

    def __init__(self, client: Client, job_id: str) -> None:
        self._client = client
        self.id = job_id
        self._view: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Job({self.id!r}, state={self.state!r})"

    @property
    def view(self) -> dict[str, Any]:
        """The job as GET /jobs/{id} answers it."""
        self._view = self._client.http.job(self.id)
        return self._view

    @property
    def state(self) -> str:
        return str(self.view["state"])

    @property
    def best(self) -> dict[str, Any] | None:
        """The best trial: trial_id, metric, value and config (None before any result)."""
        view = self._view if self._is_ended(self._view) else self.view
        return view.get("best") if view else None

    def wait(
        self, progress: bool = False, timeout_s: float | None = None, out: TextIO = sys.stderr
    ) -> Job:
        """Follow the job until it ends (its event stream), printing a line per change
        of progress with ``progress``; TimeoutError after ``timeout_s``."""
        started = time.monotonic()
        shown = ""
        for kind, data in self._client.http.events(self.id):
            if kind != "job":
                continue
            self._view = data
            line = _progress_line(data)
            if progress and line != shown:
                print(line, file=out, flush=True)
                shown = line
            if self._is_ended(data):
                return self
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"job {self.id} still {data['state']} after {timeout_s} s")
        return self

    def trials(self, best_first: bool = True) -> pd.DataFrame:
        """One row per trial: ``config/<name>``, ``metrics/<name>`` (last epoch),
        ``best_metrics/<name>``, iterations, time, node, state (the blog's dataframe)."""
        params = {"sort": "metric"} if best_first else {}
        return trials_table(self._client.http.trials(self.id, **params))

    def history(self, trial_id: str) -> pd.DataFrame:
        """One trial's metrics per epoch."""
        return pd.DataFrame.from_records(self._client.http.history(self.id, trial_id))

    def cancel(self) -> Job:
        self._view = self._client.http.cancel(self.id)
        return self

    def continue_(self, epochs: int, top: int = 3) -> Job:
        """Train this succeeded job's ``top`` best trials on to ``epochs`` epochs from
        their checkpoints, as a new job (returned; ``.wait()`` for it). Conflict unless
        this job has succeeded; Invalid for no more epochs than the trials ran."""
        accepted = self._client.http.continue_job(self.id, epochs, top)
        return Job(self._client, accepted["id"])

    @staticmethod
    def _is_ended(view: dict[str, Any] | None) -> bool:
        return view is not None and JobStatus(view["state"]).is_terminal()


class Client:
    """A tunefleet at ``url``, acting with ``api_key`` (its tenant's jobs, datasets and
    models)."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None) -> None:
        self.http = GatewayClient(url, api_key)

    def submit(self, spec: dict[str, Any] | str | Path) -> Job:
        """Queue a job from a spec, or from a file holding one: JSON (.json) or YAML
        (.yaml, .yml). InvalidInputError (shared.errors) names the line of a syntax
        error in the file."""
        body = read_spec(spec) if isinstance(spec, str | Path) else spec
        return Job(self, self.http.submit(body)["id"])

    def job(self, job_id: str) -> Job:
        """A job by its id, or by the first characters of it (unique among the jobs);
        NotFound if there is none, Ambiguous if several jobs' ids start so."""
        job = Job(self, self.http.resolve_job(job_id))
        job.view  # noqa: B018  (NotFound now rather than later)
        return job

    def jobs(self) -> pd.DataFrame:
        """The jobs, newest first: id, name, state, trials, best value."""
        rows = [
            {
                "id": view["id"],
                "name": view["name"],
                "state": view["state"],
                "trials_done": view["trials_done"],
                "trials_total": view["trials_total"],
                "best": (view.get("best") or {}).get("value"),
                "submitted_at": pd.to_datetime(view["submitted_at"], unit="s"),
            }
            for view in self.http.jobs()
        ]
        return pd.DataFrame.from_records(rows)

    def upload(self, data: pd.DataFrame | str | Path, target: str | None = None) -> dict[str, Any]:
        """Upload a table (a DataFrame, or a CSV or Parquet file) as a dataset: text
        categories, dates and gaps as they are; its id and summary (roles included).
        Name the id in a spec: ``{"dataset": {"upload": id}}``."""
        if isinstance(data, pd.DataFrame):
            name, content = "data.csv", data.to_csv(index=False).encode()
        else:
            name, content = Path(data).name, Path(data).read_bytes()
        return self.http.upload(name, content, target)

    def predict(self, model: str, rows: pd.DataFrame) -> pd.DataFrame:
        """Predictions of a model (an id or an alias) for ``rows`` (raw columns by name:
        text for categories, dates, NaN or None for a gap):
        a ``prediction`` column, and for a classifier a ``probability/<class>`` column
        per class, on the rows' index."""
        answer = self.http.predict(model, json_rows(rows))
        result = pd.DataFrame({"prediction": answer["predictions"]}, index=rows.index)
        classes = answer["model"].get("classes") or []
        if answer.get("probabilities") is not None and classes:
            probabilities = pd.DataFrame(
                answer["probabilities"],
                index=rows.index,
                columns=[f"probability/{label}" for label in classes],
            )
            result = pd.concat([result, probabilities], axis=1)
        return result

    def export(self, model: str, export_format: str, path: str | Path) -> Path:
        """Write a model (an id or an alias) where ``path`` says: ``"torchscript"`` (.pt)
        or ``"onnx"`` (.onnx), one file; ``"mlflow"``, an MLflow model folder (or its zip,
        for a path ending in .zip) that ``mlflow.pyfunc.load_model`` loads without
        tunefleet. Returns the path."""
        if export_format not in EXPORT_FORMATS:
            raise ValueError(f"export_format is one of {', '.join(EXPORT_FORMATS)}")
        written = Path(path)
        write_export(self.http.export_model(model, export_format), export_format, written)
        return written

    def models(self) -> pd.DataFrame:
        """The registered models, newest first: id, task, metric and scores, config."""
        return pd.json_normalize(self.http.models())


def _progress_line(view: dict[str, Any]) -> str:
    best = view.get("best")
    scored = f", best {best['metric']} {best['value']:.4f}" if best else ""
    return (
        f"job {view['id'][:8]} {view['state']}: "
        f"{view['trials_done']}/{view['trials_total']} trials{scored}"
    )


__all__ = ["Client", "ClientError", "Job"]
