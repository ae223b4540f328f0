"""Warm starts (``warm_start: {jobs: [...]}``): an earlier job's finished trials carried
over on the same data, not trained again, and Optuna told their values; its best
configurations tried first on other data. The driver on a local Ray, and the gateway's
refusals in process."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.driver.search import WarmOptunaSearch, tune_config
from shared.model import ModelBundle
from shared.results import TrialRow
from shared.spec import JobSpec

IRIS = {"builtin": "iris"}
SPACE = {"hidden_units": 16, "batch_size": 16, "epochs": 3}


def tuned(trial: TrialRow) -> dict[str, Any]:
    return {k: v for k, v in trial.config.items() if k != "seed"}


@pytest.mark.ray
@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_trials_run_before_on_the_same_data_are_carried_over(engine: Any, packing: bool) -> None:
    first, earlier = engine({"dataset": IRIS, "packing": packing,
                             "search_space": {**SPACE, "lr": {"grid": [0.003, 0.03]}}})  # fmt: skip
    assert first.state == "succeeded", first.error
    spec = {"dataset": IRIS, "packing": packing, "warm_start": {"jobs": [first.id]},
            "search_space": {**SPACE, "lr": {"grid": [0.003, 0.03, 0.1]}}}  # fmt: skip
    job, trials = engine(spec)
    assert job.state == "succeeded", job.error
    assert job.trials_total == job.trials_done == 3
    carried = [t for t in trials if t.carried_from is not None]
    trained = [t for t in trials if t.carried_from is None]
    assert {t.trial_id for t in carried} == {t.trial_id for t in earlier}
    assert all(t.carried_from == first.id for t in carried)
    # Only the new learning rate trained; the carried rows are the earlier ones as they were.
    assert [t.config["lr"] for t in trained] == [0.1]
    by_id = {t.trial_id: t for t in earlier}
    for trial in carried:
        assert trial.best_metrics == by_id[trial.trial_id].best_metrics
        assert engine.jobs.results.history(job.id, trial.trial_id) == (
            engine.jobs.results.history(first.id, trial.trial_id)
        )
    assert job.best is not None
    assert job.best.value == max(t.best_metrics["val_accuracy"] for t in trials)


@pytest.mark.ray
def test_a_job_whose_every_configuration_ran_before_succeeds_without_training(
    engine: Any,
) -> None:
    space = {**SPACE, "lr": {"grid": [0.003, 0.03]}}
    first, _ = engine({"dataset": IRIS, "search_space": space})
    job, trials = engine({"dataset": IRIS, "search_space": space,
                          "warm_start": {"jobs": [first.id]}})  # fmt: skip
    assert job.state == "succeeded", job.error
    assert job.engine is not None and "carried over" in job.engine
    assert all(t.carried_from == first.id for t in trials) and len(trials) == 2
    assert job.best is not None and first.best is not None
    assert job.best.trial_id == first.best.trial_id and job.test_metrics == first.test_metrics
    # Its model is its own copy: the earlier job's folder can go (retention) and it loads.
    (engine.settings.experiments_dir / first.id).rmtree()
    model = engine.registry.get(job.id)
    bundle = ModelBundle.load(engine.settings.storage_at(model.checkpoint_uri))
    assert bundle.classes == model.classes


@pytest.mark.ray
def test_optuna_counts_carried_trials_and_trains_the_rest(engine: Any) -> None:
    space = {**SPACE, "lr": {"loguniform": [0.001, 0.1]}}
    optuna = {"algorithm": "optuna", "num_samples": 3, "seed": 4}
    first, earlier = engine({"dataset": IRIS, "search_space": space, "search": optuna})
    assert first.state == "succeeded", first.error
    job, trials = engine({"dataset": IRIS, "search_space": space,
                          "warm_start": {"jobs": [first.id]},
                          "search": {**optuna, "num_samples": 5}})  # fmt: skip
    assert job.state == "succeeded", job.error
    assert job.trials_total == job.trials_done == 5
    assert sorted(t.trial_id for t in trials if t.carried_from == first.id) == sorted(
        t.trial_id for t in earlier
    )
    new = [t for t in trials if t.carried_from is None]
    assert len(new) == 2 and all(t.iterations == 3 for t in new)


@pytest.mark.ray
def test_on_other_data_the_earlier_best_goes_first_and_nothing_is_carried(
    engine: Any,
) -> None:
    space = {**SPACE, "lr": {"grid": [0.001, 0.01, 0.1]}, "dropout": {"grid": [0.0, 0.3]}}
    first, _ = engine({"dataset": IRIS, "search_space": space})
    assert first.best is not None
    job, trials = engine({"dataset": {"builtin": "wine"}, "search_space": space,
                          "warm_start": {"jobs": [first.id]}})  # fmt: skip
    assert job.state == "succeeded", job.error
    assert len(trials) == 6 and all(t.carried_from is None for t in trials)
    # The packed engine numbers its trials in the order it hands them out.
    handed_first = min(trials, key=lambda t: t.trial_id)
    assert tuned(handed_first) == {k: v for k, v in first.best.config.items() if k != "seed"}


def test_optuna_starts_from_the_values_it_is_told() -> None:
    space = {"lr": {"loguniform": [0.001, 0.1]}}
    spec = JobSpec.model_validate({"dataset": IRIS, "search": "optuna", "search_space": space})
    told = [({"lr": 0.002}, 0.6), ({"lr": 0.05}, 0.9)]
    searcher = WarmOptunaSearch(3, told, [{"lr": 0.01}])
    searcher.set_search_properties("val_accuracy", "max", tune_config(spec))
    study = searcher._ot_study
    assert [(t.params, t.value) for t in study.trials if t.value is not None] == [
        ({"lr": 0.002}, 0.6),
        ({"lr": 0.05}, 0.9),
    ]
    assert study.best_trial.params == {"lr": 0.05}
    # The earlier best on other data is the first it suggests.
    assert searcher.suggest("t1")["lr"] == 0.01


def submit(client: TestClient, spec: dict[str, Any]) -> str:
    answer = client.post("/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_a_spec_may_start_from_its_tenants_ended_tuning_jobs_only(
    clients: dict[str, TestClient],
) -> None:
    alpha, beta = clients["alpha"], clients["beta"]
    plain = {"dataset": IRIS, "search_space": {"epochs": 1}}
    queued = submit(alpha, plain)
    warm = {**plain, "warm_start": {"jobs": [queued]}}
    assert beta.post("/jobs", json=warm).status_code == 404  # another tenant's job
    refused = alpha.post("/jobs", json=warm)
    assert refused.status_code == 422 and "once that one has" in refused.json()["detail"]
    assert alpha.delete(f"/jobs/{queued}").json()["state"] == "cancelled"
    submit(alpha, warm)  # ended: its finished trials (none here) count
    for bad, says in [
        ({"jobs": []}, "at least 1"),
        ({"jobs": [queued, queued]}, "name each job once"),
        ({"jobs": ["nope"]}, "pattern"),
    ]:
        answer = alpha.post("/jobs", json={**plain, "warm_start": bad})
        assert answer.status_code == 422 and says in answer.text, answer.text
    both = {**warm, "continue_from": {"job": queued, "trials": ["x_00000"], "epochs": 5}}
    answer = alpha.post("/jobs", json=both)
    assert answer.status_code == 422 and "do not go together" in answer.text
