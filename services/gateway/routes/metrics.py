"""GET /metrics: the queue as Prometheus reads it.

Every figure is read from Redis at scrape time (counters are kept by the queue's own
scripts, in keys.STATS), so any gateway replica answers the same and nothing is lost
when one restarts. Ray's and Serve's own metrics (replicas, requests, latencies) are
exported by Ray next to these; see docs/guides/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from services.edge.deps import PrincipalDep
from services.edge.metrics import PREDICT_LATENCY_BUCKETS_S, metrics_of
from services.gateway.deps import ServicesDep
from shared.errors import UnauthorizedError
from shared.jobs import JobStore
from shared.queue_scripts import DURATION_BUCKETS_S
from shared.vocabulary import JobStatus

router = APIRouter(tags=["health"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HISTOGRAMS = {
    "submit_to_start_seconds": "Seconds from a job's submission to its first claim.",
    "job_duration_seconds": "Seconds a job's last attempt ran, to its end state.",
}


class QueueCollector(Collector):
    """The queue's gauges, counters and histograms, read from Redis when collected."""

    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "tunefleet_queued_jobs", "Jobs waiting in the queue.", labels=["priority", "tenant"]
        )
        for (priority, tenant), depth in sorted(self._jobs.queued_by_tenant().items()):
            queued.add_metric([priority, tenant], depth)
        yield queued
        yield GaugeMetricFamily(
            "tunefleet_running_jobs", "Jobs a driver holds now.", value=self._jobs.running_count()
        )
        yield GaugeMetricFamily(
            "tunefleet_running_trials",
            "Trials training now, over every running job.",
            value=self._jobs.trials_running(),
        )
        yield GaugeMetricFamily(
            "tunefleet_live_drivers",
            "Drivers whose heartbeat is current.",
            value=len(self._jobs.drivers.live()),
        )
        stats = self._jobs.stats()
        yield CounterMetricFamily(
            "tunefleet_jobs_submitted", "Jobs accepted.", value=stats.get("jobs_submitted", 0)
        )
        ended = CounterMetricFamily("tunefleet_jobs_ended", "Jobs ended.", labels=["state"])
        for state in JobStatus:
            if state.is_terminal():
                ended.add_metric([state.value], stats.get(f"jobs_ended:{state.value}", 0))
        yield ended
        yield CounterMetricFamily(
            "tunefleet_epochs", "Trial epochs reported (rate: epochs per second).",
            value=stats.get("epochs", 0),
        )  # fmt: skip
        for name, documentation in HISTOGRAMS.items():
            buckets = [(str(le), stats.get(f"{name}:le:{le}", 0)) for le in DURATION_BUCKETS_S]
            count = stats.get(f"{name}:count", 0)
            yield HistogramMetricFamily(
                f"tunefleet_{name}",
                documentation,
                buckets=[*buckets, ("+Inf", count)],
                sum_value=stats.get(f"{name}:sum", 0),
            )


class HttpCollector(Collector):
    """Answers by app and status, and predictions per model, as every replica of the
    gateway and the predictor flushed them to Redis (see services/edge/metrics.py)."""

    def __init__(self, totals: dict[str, float]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        totals = self._totals
        responses = CounterMetricFamily(
            "tunefleet_http_responses",
            "HTTP answers, by app (gateway, predictor) and status: errors are 4xx and 5xx.",
            labels=["app", "status"],
        )
        models: set[str] = set()
        for field, value in sorted(totals.items()):
            kind, name, rest = field.split(":", 2)
            if kind == "responses":
                responses.add_metric([name, rest], value)
            elif kind == "predict":
                models.add(name)
        yield responses
        requests = CounterMetricFamily(
            "tunefleet_predictions", "Predict requests answered, per model.", labels=["model"]
        )
        rows = CounterMetricFamily(
            "tunefleet_predicted_rows", "Rows predicted, per model.", labels=["model"]
        )
        latency = HistogramMetricFamily(
            "tunefleet_prediction_seconds",
            "Seconds from a predict request's arrival at the predictor to its answer.",
            labels=["model"],
        )
        for model in sorted(models):
            name = f"predict:{model}"
            count = totals.get(f"{name}:count", 0)
            requests.add_metric([model], count)
            rows.add_metric([model], totals.get(f"{name}:rows", 0))
            buckets = [
                (str(le), totals.get(f"{name}:le:{le}", 0)) for le in PREDICT_LATENCY_BUCKETS_S
            ]
            latency.add_metric(
                [model], [*buckets, ("+Inf", count)], sum_value=totals.get(f"{name}:sum", 0)
            )
        yield requests
        yield rows
        yield latency


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep, principal: PrincipalDep, request: Request) -> Response:
    """Prometheus's text format: queued jobs per priority and tenant, running jobs and
    trials, live drivers, jobs submitted and ended per state, epochs, the
    submit-to-start and job-duration histograms, HTTP answers by app and status, and
    predictions, rows and prediction latency per model. Once API keys exist, for admin keys
    only (it names every tenant): give Prometheus one as its bearer token."""
    if not principal.admin:
        raise UnauthorizedError(
            "GET /metrics needs an admin key (tunefleet keys create NAME --admin)"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(services.jobs))
    registry.register(HttpCollector(metrics_of(request.app).totals()))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
