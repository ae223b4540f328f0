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
    """One tuning job, as ``Client.submit`` and ``Client.job`` answer it.

    Its fields are read afresh from the API on each access of ``view`` (``wait``
    refreshes them too).

    Attributes:
        id: The job's id (32 hex digits).
    """

    def __init__(self, client: Client, job_id: str) -> None:
        self._client = client
        self.id = job_id
        self._view: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Job({self.id!r}, state={self.state!r})"

    @property
    def view(self) -> dict[str, Any]:
        """The job as ``GET /jobs/{id}`` answers it, read now.

        Raises:
            NotFound: The job is not there (removed, or another tenant's).
        """
        self._view = self._client.http.job(self.id)
        return self._view

    @property
    def state(self) -> str:
        """Its state now: queued, running, cancelling, succeeded, failed or cancelled."""
        return str(self.view["state"])

    @property
    def best(self) -> dict[str, Any] | None:
        """The best trial so far: ``trial_id``, ``metric``, ``value`` and ``config``;
        None before any trial reported a result."""
        view = self._view if self._is_ended(self._view) else self.view
        return view.get("best") if view else None

    def wait(
        self, progress: bool = False, timeout_s: float | None = None, out: TextIO = sys.stderr
    ) -> Job:
        """Follow the job until it ends, on its event stream.

        Args:
            progress: Print a line to ``out`` each time its progress changes.
            timeout_s: Give up after this many seconds (None: wait for the end).
            out: Where the progress lines go.

        Returns:
            This job, ended (its ``view`` is the final one).

        Raises:
            TimeoutError: It had not ended after ``timeout_s``.
            Unreachable: The stack cannot be reached.
        """
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
        """The results table (the blog's dataframe).

        Args:
            best_first: Order by each trial's best value of the job's metric; else by
                trial id.

        Returns:
            One row per trial: ``config/<name>``, ``metrics/<name>`` (its last epoch),
            ``best_metrics/<name>``, iterations, time, node, state, and where a warm
            start carried it over, ``carried_from``.
        """
        params = {"sort": "metric"} if best_first else {}
        return trials_table(self._client.http.trials(self.id, **params))

    def history(self, trial_id: str) -> pd.DataFrame:
        """One trial's metrics per epoch.

        Args:
            trial_id: A ``trial_id`` of ``trials()``.

        Returns:
            One row per epoch: ``training_iteration`` and the metrics it reported.

        Raises:
            NotFound: The job has no such trial.
        """
        return pd.DataFrame.from_records(self._client.http.history(self.id, trial_id))

    def cancel(self) -> Job:
        """Cancel the job: a queued one at once, a running one once its trials stop.

        Returns:
            This job (cancelled, or cancelling).

        Raises:
            Conflict: It has already ended.
        """
        self._view = self._client.http.cancel(self.id)
        return self

    def continue_(self, epochs: int, top: int = 3) -> Job:
        """Train this job's best trials on from their checkpoints, as a new job.

        Args:
            epochs: Each trial's epochs in all, more than they ran.
            top: How many of the best trials go on.

        Returns:
            The new job (queued; ``.wait()`` for it).

        Raises:
            Conflict: This job has not succeeded.
            Invalid: ``epochs`` is no more than the trials ran.
        """
        accepted = self._client.http.continue_job(self.id, epochs, top)
        return Job(self._client, accepted["id"])

    @staticmethod
    def _is_ended(view: dict[str, Any] | None) -> bool:
        return view is not None and JobStatus(view["state"]).is_terminal()


class Client:
    """A tunefleet stack, as one tenant sees it.

    Args:
        url: Where the stack answers (its gateway).
        api_key: The tenant's API key, once keys exist (``tunefleet keys create``).

    Every method raises a ``ClientError`` (``cluster.client``) for an answer that is not
    a success: ``NotFound``, ``Conflict``, ``Invalid``, ``TooLarge``, ``RateLimited``,
    ``Unauthorized``, ``Unavailable``, or ``Unreachable`` when nothing answers.
    """

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None) -> None:
        self.http = GatewayClient(url, api_key)

    def submit(self, spec: dict[str, Any] | str | Path) -> Job:
        """Queue a tuning job.

        Args:
            spec: A job spec as a dict, or the path of a file holding one: JSON
                (``.json``) or YAML (``.yaml``, ``.yml``).

        Returns:
            The job, queued.

        Raises:
            InvalidInputError: The file does not parse (the line and column named).
            Invalid: The spec breaks a rule (the field and the reason named).
            RateLimited: The queue or the tenant's share of it is full.
        """
        body = read_spec(spec) if isinstance(spec, str | Path) else spec
        return Job(self, self.http.submit(body)["id"])

    def job(self, job_id: str) -> Job:
        """A job by its id, or by the first characters of it.

        Args:
            job_id: The id, or a prefix that only one job's id starts with.

        Returns:
            The job.

        Raises:
            NotFound: No job's id starts so.
            Ambiguous: Several jobs' ids start so (they are listed).
        """
        job = Job(self, self.http.resolve_job(job_id))
        job.view  # noqa: B018  (NotFound now rather than later)
        return job

    def jobs(self) -> pd.DataFrame:
        """The tenant's jobs, newest first.

        Returns:
            One row per job: id, name, state, trials done and in all, best value,
            submitted at.
        """
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
        """Upload a table as a dataset, as it is: text categories, dates and gaps.

        Args:
            data: A DataFrame, or the path of a CSV or Parquet file.
            target: The column to predict (default: ``target``).

        Returns:
            Its id and summary (each column's role, gaps, top values). Name the id
            in a spec: ``{"dataset": {"upload": id}}``.

        Raises:
            Invalid: The table cannot be read, or has no such target.
            TooLarge: It is past the upload limit or the tenant's quota.
        """
        if isinstance(data, pd.DataFrame):
            name, content = "data.csv", data.to_csv(index=False).encode()
        else:
            name, content = Path(data).name, Path(data).read_bytes()
        return self.http.upload(name, content, target)

    def predict(self, model: str, rows: pd.DataFrame) -> pd.DataFrame:
        """Predict with a model.

        Args:
            model: A model id (its job's id) or an alias.
            rows: Raw columns by name: text for categories, dates, NaN or None for a gap.

        Returns:
            A ``prediction`` column, and for a classifier a ``probability/<class>``
            column per class, on the rows' index.

        Raises:
            NotFound: No such model or alias.
            Invalid: A column the model needs is missing or unreadable.
            TooLarge: More rows than one request takes (score them as a batch job).
        """
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
        """Export a model to run without tunefleet.

        Args:
            model: A model id or an alias.
            export_format: ``"torchscript"`` (a ``.pt`` file), ``"onnx"`` (``.onnx``), or
                ``"mlflow"``: an MLflow model folder (its zip for a path ending in
                ``.zip``) that ``mlflow.pyfunc.load_model`` loads.
            path: Where to write it.

        Returns:
            ``path``.

        Raises:
            ValueError: ``export_format`` is none of those.
            NotFound: No such model or alias.
        """
        if export_format not in EXPORT_FORMATS:
            raise ValueError(f"export_format is one of {', '.join(EXPORT_FORMATS)}")
        written = Path(path)
        write_export(self.http.export_model(model, export_format), export_format, written)
        return written

    def models(self) -> pd.DataFrame:
        """The tenant's registered models, newest first.

        Returns:
            One row per model: id, task, metric, validation and test scores, config.
        """
        return pd.json_normalize(self.http.models())


def _progress_line(view: dict[str, Any]) -> str:
    best = view.get("best")
    scored = f", best {best['metric']} {best['value']:.4f}" if best else ""
    return (
        f"job {view['id'][:8]} {view['state']}: "
        f"{view['trials_done']}/{view['trials_total']} trials{scored}"
    )


__all__ = ["Client", "ClientError", "Job"]
