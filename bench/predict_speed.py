"""Prediction speed: /predict on Serve against Serve's floor and against plain uvicorn.

usage: python -m bench.predict_speed [seconds_per_run]
Trains one digits model on a `tunefleet up` stack, then measures, with 1 and 16
concurrent clients (keep-alive connections, each request waits for its answer):
- Serve's floor: a trivial endpoint on the same stack, one replica configured like
  ours, taking the same JSON body and answering a small one (POST /bench-floor/), and
  GET /livez on the gateway (no body);
- /predict on Serve with 1 and 64 instances per request, and the Open Inference
  Protocol's infer with the same rows as one [N, 64] FP32 tensor, at /v2 (the gateway,
  which asks the predictor's replicas) and at /models/v2 (the predictor itself);
- the same model behind plain uvicorn + FastAPI in one process, without Ray;
for Serve's default proxy and its HAProxy-based one (RAY_SERVE_ENABLE_HA_PROXY=1).
One JSON line per run: requests per second, p50 and p99 latency in milliseconds.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ray
from fastapi import FastAPI
from ray import serve
from sklearn.datasets import load_digits

from bench.common import LocalStack, emit
from cluster.redis_server import free_port

SPEC = {
    "dataset": {"builtin": "digits"},
    "search_space": {"lr": 0.003, "hidden_units": 64, "epochs": 8},
}
UVICORN_APP = """
import sys
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from services.predictor.features import instances_to_columns
from shared.model import ModelBundle

bundle = ModelBundle.load(sys.argv[1])
app = FastAPI()

class PredictRequest(BaseModel):
    instances: list

@app.post("/predict")
def predict(request: PredictRequest) -> dict:
    columns = instances_to_columns(request.instances, bundle.feature_names, bundle.columns)
    predictions, probabilities = bundle.predict_encoded(bundle.encode(columns))
    return {"predictions": predictions, "probabilities": probabilities.tolist()}

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


FLOOR_ROUTE = "/bench-floor"
floor_app = FastAPI()


@floor_app.post("/")
async def floor(body: dict[str, Any]) -> dict[str, int]:
    return {"keys": len(body)}


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
@serve.ingress(floor_app)
class Floor:
    """Serve's own cost for a POST with a JSON body: parse it, answer."""


def load(url: str, body: dict[str, Any] | None, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                answer = client.post(url, json=body) if body is not None else client.get(url)
                mine.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {
        "rps": round(len(ordered) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
        "errors": errors[0],
    }


def bodies() -> dict[int, dict[str, Any]]:
    rows = load_digits(as_frame=True).frame.drop(columns=["target"]).to_dict(orient="records")
    return {n: {"instances": rows[:n]} for n in (1, 64)}


def v2_body(body: dict[str, Any]) -> dict[str, Any]:
    """The same rows as one FP32 [N, F] tensor of the Open Inference Protocol."""
    rows = body["instances"]
    flat = [value for row in rows for value in row.values()]
    shape = [len(rows), len(rows[0])]
    return {"inputs": [{"name": "features", "shape": shape, "datatype": "FP32", "data": flat}]}


def measure_stack(home: Path, proxy: str, seconds: float) -> str:
    with LocalStack(home, TUNEFLEET_SERVE_PROXY=proxy) as stack:
        with httpx.Client(base_url=stack.url, timeout=300) as client:
            models = client.get("/models").json()
            if models:
                model_id = models[0]["id"]
            else:
                model_id = client.post("/jobs", json=SPEC).json()["id"]
                while client.get(f"/jobs/{model_id}").json()["state"] != "succeeded":
                    time.sleep(1)
            checkpoint = client.get(f"/models/{model_id}").json()["checkpoint_uri"]
            client.post(f"/models/{model_id}/predict", json=bodies()[1])  # load it once
        # The stack's Ray is the only one on this machine: "auto" joins it.
        ray.init(address="auto", namespace="serve", logging_level="ERROR")
        try:
            serve.run(Floor.bind(), name="bench-floor", route_prefix=FLOOR_ROUTE)
            measure_urls(stack.url, model_id, proxy, seconds)
            serve.delete("bench-floor")
        finally:
            ray.shutdown()
    return checkpoint


def measure_urls(base_url: str, model_id: str, proxy: str, seconds: float) -> None:
    predict_url = f"{base_url}/models/{model_id}/predict"
    for clients in (1, 16):
        floor_get = load(f"{base_url}/livez", None, clients, seconds)
        emit({"bench": "predict", "proxy": proxy, "target": "serve_floor_get_livez",
              "clients": clients, **floor_get})  # fmt: skip
        for instances, body in bodies().items():
            floor = load(f"{base_url}{FLOOR_ROUTE}/", body, clients, seconds)
            emit({"bench": "predict", "proxy": proxy, "target": "serve_floor_post",
                  "clients": clients, "instances": instances, **floor})  # fmt: skip
            speed = load(predict_url, body, clients, seconds)
            emit({"bench": "predict", "proxy": proxy, "target": "serve_predict",
                  "clients": clients, "instances": instances, **speed,
                  "rps_vs_floor_post": round(speed["rps"] / floor["rps"], 2),
                  "p99_vs_floor_post": round(speed["p99_ms"] / floor["p99_ms"], 2)})  # fmt: skip
            for target, base in (("serve_v2_infer", ""), ("serve_v2_infer_models", "/models")):
                url = f"{base_url}{base}/v2/models/{model_id}/infer"
                v2 = load(url, v2_body(body), clients, seconds)
                emit({"bench": "predict", "proxy": proxy, "target": target,
                      "clients": clients, "instances": instances, **v2,
                      "rps_vs_floor_post": round(v2["rps"] / floor["rps"], 2),
                      "p99_vs_floor_post": round(v2["p99_ms"] / floor["p99_ms"], 2)})  # fmt: skip


def measure_uvicorn(checkpoint: str, seconds: float) -> None:
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(UVICORN_APP)
    server = subprocess.Popen([sys.executable, script.name, checkpoint, str(port)])
    try:
        url = f"http://127.0.0.1:{port}/predict"
        for _ in range(100):
            try:
                httpx.post(url, json=bodies()[1], timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        for clients in (1, 16):
            for instances, body in bodies().items():
                emit({"bench": "predict", "target": "plain_uvicorn", "clients": clients,
                      "instances": instances, **load(url, body, clients, seconds)})  # fmt: skip
    finally:
        server.terminate()
        server.wait()
        Path(script.name).unlink()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = measure_stack(Path(folder), "default", seconds)
        measure_stack(Path(folder), "haproxy", seconds)
        measure_uvicorn(checkpoint, seconds)


if __name__ == "__main__":
    main()
