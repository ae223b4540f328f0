"""Columns with more categories than one-hot keeps are embedded: a code per row, looked up
in learned vectors whose size the search space tunes, the same in both engines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from services.driver.packed.epoch import PackState, pack_key, train_pack_epoch
from services.driver.prepared import PreparedData
from services.driver.splits import prepare
from services.driver.training import TrialPlan, train_trial
from shared.model import ModelBundle
from shared.preprocessing import CODE_MISSING, CODE_OTHER, transform
from shared.preprocessing_fit import MAX_ONE_HOT
from shared.spec import DatasetSpec
from tests.helpers.tables import wide_frame

SPEC = DatasetSpec(upload="0" * 32)
CONFIG = {
    "lr": 0.01, "batch_size": 32, "dropout": 0.0, "hidden_units": 32,
    "weight_decay": 0.0, "epochs": 12,
}  # fmt: skip


@pytest.fixture(scope="module")
def stores() -> PreparedData:
    return prepare(wide_frame(), SPEC, "level")


def trained(config: dict[str, Any], data: PreparedData) -> tuple[list[dict], dict]:
    """Every epoch's metrics of an unpacked trial, and its best checkpoint."""
    reports: list[tuple[dict, dict | None]] = []
    plan = TrialPlan(data=data, metric="val_accuracy", mode="max", seed=3)
    train_trial(config, plan, lambda metrics, payload: reports.append((metrics, payload)))
    best = next(payload for _, payload in reversed(reports) if payload is not None)
    return [metrics for metrics, _ in reports], best


def test_a_wide_column_becomes_one_column_of_codes(stores: PreparedData) -> None:
    (store,) = [c for c in stores.plan["columns"] if c["name"] == "store"]
    assert store["encoding"] == "embedding"
    assert len(store["categories"]) > MAX_ONE_HOT
    assert stores.feature_names == ["store:code", "size"]
    codes = transform(stores.plan, {"store": ["S005", None, "S999", "?"], "size": [0, 1, 2, 3]})
    assert codes[0, 0] == 2 + store["categories"].index("S005")
    # A gap (null or a gap marker) and a store never seen have codes of their own.
    assert list(codes[1:, 0]) == [CODE_MISSING, CODE_OTHER, CODE_MISSING]


def test_the_vectors_learn_what_the_store_says(stores: PreparedData) -> None:
    _, best = trained(CONFIG, stores)
    bundle = ModelBundle.from_payload(best)
    codes = len(stores.plan["columns"][0]["categories"]) + 2
    # Unset, the size follows from the codes: 1.6 x codes^0.56 (14 for 119 codes).
    assert bundle.architecture["embeddings"] == [[0, codes, round(1.6 * codes**0.56)]]
    ours = np.mean(
        bundle.predict_encoded(stores.x_test)[0] == np.array(stores.classes)[stores.y_test]
    )
    # A careful person's models of the same rows, the better of two: gradient boosting
    # with the store as a native category (its codes are below 255), and a logistic
    # regression on the store one-hot encoded.
    boosted = HistGradientBoostingClassifier(categorical_features=[0], random_state=0)
    one_hot = make_pipeline(
        ColumnTransformer(
            [("store", OneHotEncoder(handle_unknown="ignore"), [0])], remainder="passthrough"
        ),
        LogisticRegression(max_iter=1000),
    )
    theirs = max(
        model.fit(stores.x_train, stores.y_train).score(stores.x_test, stores.y_test)
        for model in (boosted, one_hot)
    )
    print(f"embedded {ours:.3f}, scikit-learn {theirs:.3f}")
    assert ours >= theirs - 0.03, (ours, theirs)
    # Without the store, the class is little better than a guess from the size.
    ignored = prepare(
        wide_frame(), SPEC.model_copy(update={"columns": {"store": "ignore"}}), "level"
    )
    _, blind = trained(CONFIG, ignored)
    blind_bundle = ModelBundle.from_payload(blind)
    without = np.mean(
        blind_bundle.predict_encoded(ignored.x_test)[0] == np.array(ignored.classes)[ignored.y_test]
    )
    print(f"without the store {without:.3f}")
    assert ours >= without + 0.1, (ours, without)


def test_the_vector_size_is_tuned_and_packs_follow_it(stores: PreparedData) -> None:
    small, large = {**CONFIG, "embedding_dim": 3}, {**CONFIG, "embedding_dim": 12}
    assert pack_key(small) != pack_key(large)
    _, best = trained(large, stores)
    (column,) = best["architecture"]["embeddings"]
    assert column[2] == 12
    assert tuple(best["state_dict"]["embedded.tables.0.weight"].shape) == (column[1], 12)


def test_a_packed_member_with_vectors_trains_as_it_would_alone(stores: PreparedData) -> None:
    plan = TrialPlan(data=stores, metric="val_accuracy", mode="max", seed=3)
    base = {**CONFIG, "epochs": 3, "embedding_dim": 6}
    configs = {
        "a": base,
        "b": {**base, "hidden_units": 8, "lr": 0.003, "weight_decay": 1e-3},
        "c": {**base, "hidden_units": 32, "lr": 0.03},
    }
    state, epochs = PackState.new(configs), []
    for _ in range(3):
        state, results = train_pack_epoch(state, plan)
        epochs.append(results)
    for trial_id in ("a", "b"):
        alone, best = trained(configs[trial_id], stores)
        for epoch, metrics in enumerate(alone):
            got = epochs[epoch][trial_id].metrics
            assert got["training_loss"] == pytest.approx(metrics["training_loss"], rel=1e-4)
            assert got["training_accuracy"] == pytest.approx(metrics["training_accuracy"])
        packed = next(e[trial_id].payload for e in reversed(epochs) if e[trial_id].payload)
        assert packed["architecture"] == best["architecture"]
        for name in ("embedded.tables.0.weight", "embedded.proj.weight"):
            assert torch.allclose(packed["state_dict"][name], best["state_dict"][name], atol=1e-4)
