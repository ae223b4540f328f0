"""POST /models/import in process (no Serve): what a checkpoint claims is checked before
its network is built."""

from __future__ import annotations

import io
import json
import resource
import zipfile
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from services.driver.splits import prepare
from services.predictor.app import create_app
from shared.auth import KeyStore
from shared.data import DatasetStore
from shared.model import MLP, ModelBundle, embedding_layout
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.spec import DatasetSpec
from tests.helpers.models import LOCAL, payload, saved
from tests.helpers.tables import wide_frame

META = json.dumps({"validation_value": 0.9})


async def no_predictions(model_id: str, columns: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("no prediction is asked for here")


@pytest.fixture
def models(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> TestClient:
    settings = Settings(redis_url=redis_server.url, home=tmp_path)
    app = create_app(settings, ModelRegistry(redis_client), no_predictions)
    return TestClient(app, base_url="http://127.0.0.1")


def upload(models: TestClient, checkpoint: bytes) -> Any:
    return models.post(
        "/import", files={"checkpoint": ("model.pt", checkpoint)}, data={"meta": META}
    )


def test_a_checkpoint_that_fits_its_claims_is_registered(models: TestClient) -> None:
    answer = upload(models, saved(payload()))
    assert answer.status_code == 201, answer.text
    assert answer.json()["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert models.get(f"/{answer.json()['id']}").status_code == 200


def test_a_small_file_claiming_a_huge_network_is_422_naming_the_limit(
    models: TestClient,
) -> None:
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    huge = payload()
    huge["architecture"] = {**huge["architecture"], "hidden_units": 50_000, "hidden_layers": 16}
    checkpoint = saved(huge)
    assert len(checkpoint) < 20_000
    answer = upload(models, checkpoint)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "hidden_units is 50000" in detail and "8192" in detail
    deep = payload()
    deep["architecture"] = {**deep["architecture"], "hidden_layers": 17}
    answer = upload(models, saved(deep))
    assert answer.status_code == 422 and "hidden_layers is 17" in answer.json()["detail"]
    assert "16" in answer.json()["detail"]
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb
    assert grown_kb < 200_000, f"the process grew by {grown_kb} KB"


def test_a_claim_within_the_limits_must_match_the_weights(models: TestClient) -> None:
    # 8,000 units in 16 layers is allowed, and would take 4 GB: the file has 8 units.
    bigger = payload()
    bigger["architecture"] = {**bigger["architecture"], "hidden_units": 8_000, "hidden_layers": 16}
    answer = upload(models, saved(bigger))
    assert answer.status_code == 422
    assert "layers.0.weight has shape (8, 4)" in answer.json()["detail"]
    assert "(8000, 4)" in answer.json()["detail"]


def test_feature_names_and_classes_must_match_the_layers(models: TestClient) -> None:
    fewer_names = payload()
    fewer_names["feature_names"] = ["f0", "f1", "f2"]
    answer = upload(models, saved(fewer_names))
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "feature_names has 3 names, but the first layer takes 4 inputs"
    )
    more_classes = payload()
    more_classes["classes"] = [0, 1, 2, 3, 4]
    answer = upload(models, saved(more_classes))
    assert answer.status_code == 422
    assert answer.json()["detail"] == "classes has 5 labels, but the last layer has 3 outputs"
    short_scaler = payload()
    short_scaler["scale"] = torch.ones(2)
    answer = upload(models, saved(short_scaler))
    assert answer.status_code == 422 and "scale" in answer.json()["detail"]


def test_a_compressed_checkpoint_is_refused(models: TestClient) -> None:
    packed = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(saved(payload()))) as original,
        zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for info in original.infolist():
            archive.writestr(info.filename, original.read(info))
    answer = upload(models, packed.getvalue())
    assert answer.status_code == 422 and "compressed" in answer.json()["detail"]


def test_only_admins_see_where_a_checkpoint_is_kept(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_server.url, home=tmp_path)
    registry = ModelRegistry(redis_client)

    async def predict(model_id: str, columns: dict[str, Any]) -> dict[str, Any]:
        bundle = ModelBundle.load(settings.storage_at(registry.get(model_id).checkpoint_uri))
        predictions, probabilities = bundle.predict_encoded(bundle.encode(columns))
        assert probabilities is not None
        return {"predictions": predictions, "probabilities": probabilities.tolist()}

    keys = KeyStore(redis_client)
    tenant = {"Authorization": f"Bearer {keys.create('alpha')}"}
    admin = {"Authorization": f"Bearer {keys.create('ops', admin=True)}"}
    models = TestClient(create_app(settings, registry, predict), base_url="http://127.0.0.1")
    imported = models.post(
        "/import",
        files={"checkpoint": ("model.pt", saved(payload()))},
        data={"meta": META},
        headers=tenant,
    )
    assert imported.status_code == 201, imported.text
    model_id = imported.json()["id"]
    assert imported.json()["checkpoint_uri"] is None
    instances = {"instances": [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}]}
    as_tenant = [
        models.get("/", headers=tenant).json()[0],
        models.get(f"/{model_id}", headers=tenant).json(),
        models.post(f"/{model_id}/predict", json=instances, headers=tenant).json()["model"],
    ]
    assert [shown["checkpoint_uri"] for shown in as_tenant] == [None, None, None]
    assert all(shown["id"] == model_id for shown in as_tenant)
    kept = models.get(f"/{model_id}", headers=admin).json()["checkpoint_uri"]
    assert kept is not None and kept.endswith(model_id)


def test_embedded_columns_must_match_the_plan_and_the_limits(models: TestClient) -> None:
    data = prepare(wide_frame(), DatasetSpec(upload="0" * 32), "level")
    architecture = {
        "n_features": 2, "n_outputs": 2, "hidden_units": 8,
        "embeddings": embedding_layout(data.plan, 4),
    }  # fmt: skip
    bundle = ModelBundle(
        model=MLP(**architecture), architecture=architecture, task="classification",
        feature_names=list(data.columns), classes=data.classes, columns=data.columns,
        preprocessing=data.plan,
    )  # fmt: skip
    answer = upload(models, saved(bundle.payload()))
    assert answer.status_code == 201, answer.text

    # Tables of 10 codes, weights to match: the plan's column has 119 codes, and a code
    # past a table's end would fail every prediction.
    fewer = bundle.payload()
    fewer["architecture"]["embeddings"] = [[0, 10, 4]]
    fewer["state_dict"]["embedded.tables.0.weight"] = torch.zeros(10, 4)
    answer = upload(models, saved(fewer))
    assert answer.status_code == 422
    assert "does not match the embedded columns" in answer.json()["detail"]
    wide = bundle.payload()
    wide["architecture"]["embeddings"] = [[0, 119, 100_000]]
    answer = upload(models, saved(wide))
    assert answer.status_code == 422
    assert "vector size 100000" in answer.json()["detail"]
    assert "embedding_dim" in answer.json()["detail"]
    garbled = bundle.payload()
    garbled["architecture"]["embeddings"] = [["store", 119, 4]]
    answer = upload(models, saved(garbled))
    assert answer.status_code == 422
    assert "[input position, codes, vector size]" in answer.json()["detail"]


def test_views_that_would_grow_at_load_are_refused_and_memory_stays_flat(
    models: TestClient,
) -> None:
    # torch.save keeps a view as its storage and strides: 16 layers of 8,192 units on
    # 1,000 features, every tensor one float expanded, is a small file that loads as GBs.
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    architecture = {"n_features": 1000, "n_outputs": 3, "hidden_units": 8192, "hidden_layers": 16}
    with torch.device("meta"):
        weights = MLP(**architecture).state_dict()
    expanded = payload()
    expanded["architecture"] = architecture
    expanded["state_dict"] = {
        k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in weights.items()
    }
    expanded["feature_names"] = [f"f{i}" for i in range(1000)]
    expanded["scale"], expanded["offset"] = torch.ones(1000), torch.zeros(1000)
    checkpoint = saved(expanded)
    assert len(checkpoint) < 100_000
    answer = upload(models, checkpoint)
    assert answer.status_code == 422
    assert "is a view of 4 bytes of storage" in answer.json()["detail"]
    assert "contiguous" in answer.json()["detail"]
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb
    assert grown_kb < 200_000, f"the process grew by {grown_kb} KB"


def bad_claims() -> dict[str, dict[str, Any]]:
    """Checkpoints that load but claim what no job makes, by what is wrong."""
    named_by_numbers = payload()
    named_by_numbers["feature_names"] = [0, 1, 2, 3]
    tensor_label = payload()
    tensor_label["classes"] = [torch.tensor(1), 2, 3]
    negative_seed = payload()
    negative_seed["architecture"]["seed"] = -1
    many_outputs = payload(n_outputs=1001)
    return {
        "feature_names must be a list of distinct column names": named_by_numbers,
        "classes must be a list of labels": tensor_label,
        "architecture.seed is -1": negative_seed,
        "architecture.n_outputs is 1001; this service takes at most 1000": many_outputs,
    }


def test_malformed_claims_are_422_and_leave_nothing_behind(
    models: TestClient, tmp_path: Path
) -> None:
    for message, content in bad_claims().items():
        answer = upload(models, saved(content))
        assert answer.status_code == 422, (message, answer.text)
        assert message in answer.json()["detail"]
    for meta, message in (
        ('{"validation_value": NaN}', "meta.validation_value: NaN is not a finite number"),
        ('{"validation_value": 0.5, "config": {"lr": Infinity}}', "meta.config.lr: Infinity"),
        ('{"validation_value": 0.5', "meta: not JSON"),
    ):
        answer = models.post(
            "/import", files={"checkpoint": ("model.pt", saved(payload()))}, data={"meta": meta}
        )
        assert answer.status_code == 422, answer.text
        assert message in answer.json()["detail"]
    assert models.get("/").json() == []
    assert list(tmp_path.rglob("model.pt")) == []


def test_a_tenant_past_its_batch_output_quota_gets_413(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_server.url, home=tmp_path, max_batch_bytes_per_tenant=5000)
    client = TestClient(
        create_app(settings, ModelRegistry(redis_client), no_predictions), base_url=LOCAL
    )
    model_id = upload(client, saved(payload())).json()["id"]
    table = b"f0,f1,f2,f3\n" + b"".join(b"%d,1,2,3\n" % i for i in range(100))
    dataset = DatasetStore(settings.datasets_dir).save(table, purpose="scoring").id
    body = {"dataset": dataset}
    assert client.post(f"/{model_id}/batch", json=body).status_code == 202
    # Outputs of earlier batch jobs take the quota's bytes.
    earlier = settings.batches_dir.local / ("e" * 32) / "d1#1" / "predictions.csv"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"x" * 5000)
    answer = client.post(f"/{model_id}/batch", json=body)
    assert answer.status_code == 413
    assert "TUNEFLEET_MAX_BATCH_BYTES_PER_TENANT" in answer.json()["detail"]
