import json

import pytest
from pydantic import ValidationError
from ray import tune

from shared.errors import InvalidInputError
from shared.search_space import Choice, Grid, LogUniform, RandInt
from shared.spec import JobSpec
from tests.helpers.stack import EXAMPLES


def errors_of(payload: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(payload)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


def test_seed_grid_example_is_the_seed_search_space() -> None:
    spec = JobSpec.model_validate(json.loads((EXAMPLES / "seed-grid.json").read_text()))
    space = spec.search_space
    assert isinstance(space.lr, Grid) and space.lr.grid == [3e-5, 5e-4, 1e-3, 7e-4]
    assert isinstance(space.batch_size, Grid) and space.batch_size.grid == [
        8, 16, 32, 64, 128, 256, 512,
    ]  # fmt: skip
    assert isinstance(space.dropout, Grid) and space.dropout.grid == [0.3, 0.5, 0.7, 0.85]
    assert isinstance(space.hidden_units, Grid) and space.hidden_units.grid == [
        30, 50, 100, 200, 300,
    ]  # fmt: skip
    assert spec.trial_count() == 4 * 7 * 4 * 5


def test_quick_example_is_small() -> None:
    spec = JobSpec.model_validate(json.loads((EXAMPLES / "quick.json").read_text()))
    assert spec.trial_count() == 4
    assert spec.dataset.builtin == "digits"


def test_metric_and_mode_follow_the_task() -> None:
    spec = JobSpec.model_validate({"dataset": {"builtin": "iris"}})
    assert spec.trial_count() == 1 and spec.task is None
    assert spec.objective("classification") == ("val_accuracy", "max")
    assert spec.objective("regression") == ("val_loss", "min")
    by_loss = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "metric": "val_loss"})
    assert by_loss.objective("classification") == ("val_loss", "min")
    by_r2 = JobSpec.model_validate({"dataset": {"builtin": "diabetes"}, "metric": "val_r2"})
    assert by_r2.task == "regression" and by_r2.objective("regression") == ("val_r2", "max")
    with pytest.raises(InvalidInputError, match="does not apply to classification"):
        JobSpec.model_validate({"dataset": {"builtin": "iris"}, "metric": "val_rmse"}).objective(
            "classification"
        )


def test_choice_and_grid_combine_with_num_samples() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"builtin": "wine"},
            "search_space": {"lr": {"choice": [0.1, 0.01]}, "hidden_units": {"grid": [8, 16]}},
            "search": {"num_samples": 3},
        }
    )
    assert isinstance(spec.search_space.lr, Choice)
    assert spec.trial_count() == 6


@pytest.mark.parametrize(
    ("space", "where", "words"),
    [
        ({"lr": -0.1}, "search_space.lr", "greater than 0"),
        ({"lr": {"grid": [0.1, 0]}}, "search_space.lr.grid.grid.1", "greater than 0"),
        ({"dropout": 1.0}, "search_space.dropout", "less than 1"),
        ({"batch_size": 1}, "search_space.batch_size", "greater than or equal to 2"),
        ({"batch_size": {"choice": [8.5]}}, "search_space.batch_size", "integer"),
        ({"hidden_units": {"grid": []}}, "search_space.hidden_units.grid", "at least 1"),
        ({"epochs": {"range": [1, 5]}}, "search_space.epochs", '{"randint": ...}'),
        ({"lr": {"loguniform": [0, 0.1]}}, "search_space.lr.loguniform", "greater than 0"),
        ({"lr": {"uniform": [0.1, 0.01]}}, "search_space.lr.uniform", "must be below"),
        ({"dropout": {"uniform": [0.1, 1.0]}}, "search_space.dropout.uniform", "less than 1"),
        ({"hidden_layers": 0}, "search_space.hidden_layers", "greater than or equal to 1"),
        ({"batch_size": {"randint": [64, 8]}}, "search_space.batch_size.randint", "must be below"),
        ({"lr": {"quniform": [0.1, 0.5, 0]}}, "search_space.lr.quniform", "greater than 0"),
        ({"momentum": 0.9}, "search_space.momentum", "Extra inputs"),
    ],
)
def test_bad_parameters_are_named(space: dict, where: str, words: str) -> None:
    errors = errors_of({"dataset": {"builtin": "iris"}, "search_space": space})
    assert any(loc.startswith(where) and words in msg for loc, msg in errors), errors


@pytest.mark.parametrize(
    ("quniform", "words"),
    [
        ([0.15, 0.5, 0.1], "quniform low 0.15 is not a multiple of q 0.1; use 0.1 or 0.2"),
        ([0.1, 0.45, 0.1], "quniform high 0.45 is not a multiple of q 0.1; use 0.4 or 0.5"),
        (
            [0.003, 0.01, 0.002],
            "quniform low 0.003 is not a multiple of q 0.002; use 0.002 or 0.004",
        ),
    ],
)
def test_quniform_bounds_off_the_grid_of_q_are_refused(quniform: list, words: str) -> None:
    # Refused at submit, as Tune would refuse them once the job runs.
    with pytest.raises(ValueError, match="not divisible by quantization factor"):
        tune.quniform(*quniform)
    errors = errors_of(
        {"dataset": {"builtin": "iris"}, "search_space": {"lr": {"quniform": quniform}}}
    )
    assert any(loc == "search_space.lr.quniform" and words in msg for loc, msg in errors), errors


@pytest.mark.parametrize(
    ("parameter", "quniform"),
    [
        # 0.3 / 0.1 and 0.7 / 0.1 are not whole numbers in floating point.
        ("dropout", [0.3, 0.7, 0.1]),
        ("lr", [0.0001, 0.0009, 0.0001]),
        ("hidden_units", [16, 128, 16]),
    ],
)
def test_quniform_bounds_on_the_grid_of_q_pass_and_tune_samples_them(
    parameter: str, quniform: list
) -> None:
    spec = JobSpec.model_validate(
        {"dataset": {"builtin": "iris"}, "search_space": {parameter: {"quniform": quniform}}}
    )
    low, high, q = getattr(spec.search_space, parameter).quniform
    values = tune.quniform(low, high, q).sample(size=50)
    assert all(low - 1e-9 <= value <= high + 1e-9 for value in values)


def test_dataset_needs_exactly_one_source() -> None:
    (loc, msg), *_ = errors_of({"dataset": {}})
    assert loc == "dataset" and "exactly one dataset source" in msg
    (loc, msg), *_ = errors_of({"dataset": {"builtin": "iris", "upload": "ab" * 16}})
    assert "exactly one dataset source" in msg


def test_unknown_builtin_and_bad_upload_id_are_rejected() -> None:
    assert errors_of({"dataset": {"builtin": "mnist"}})[0][0] == "dataset.builtin"
    assert errors_of({"dataset": {"upload": "../../etc/passwd"}})[0][0] == "dataset.upload"


def test_splits_must_leave_rows_to_train_on() -> None:
    (_loc, msg), *_ = errors_of(
        {"dataset": {"builtin": "iris", "validation_fraction": 0.5, "test_fraction": 0.45}}
    )
    assert "at least 10%" in msg


def test_spec_round_trips_through_json() -> None:
    spec = JobSpec.model_validate(json.loads((EXAMPLES / "seed-grid.json").read_text()))
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec


SAMPLED_SPACE = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "batch_size": {"randint": [8, 65]},
    "dropout": {"uniform": [0.0, 0.5]},
    "hidden_units": {"quniform": [16, 128, 16]},
}


def test_sampled_space_defaults_to_random_search() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"builtin": "iris"},
            "search_space": SAMPLED_SPACE,
            "search": {"num_samples": 5},
        }
    )
    assert spec.search.algorithm == "random" and spec.trial_count() == 5
    assert isinstance(spec.search_space.lr, LogUniform)
    assert isinstance(spec.search_space.batch_size, RandInt)


def test_grid_search_refuses_sampled_parameters_and_optuna_refuses_grids() -> None:
    ((_, msg),) = errors_of(
        {"dataset": {"builtin": "iris"}, "search_space": SAMPLED_SPACE, "search": "grid"}
    )
    assert "search 'grid' tries listed values only" in msg and "lr" in msg
    ((_loc, msg),) = errors_of(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {"lr": {"grid": [0.1]}},
            "search": "optuna",
        }
    )
    assert "cannot take a grid (lr)" in msg


def test_optuna_trial_count_is_num_samples() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"builtin": "iris"},
            "search_space": SAMPLED_SPACE,
            "search": {"algorithm": "optuna", "num_samples": 7, "seed": 3},
        }
    )
    assert spec.trial_count() == 7


@pytest.mark.parametrize(
    ("scheduler", "words"),
    [
        ({"type": "asha", "grace_period": 11}, "grace_period (11) must be at most the epochs"),
        ({"type": "median", "grace_period": 20}, "grace_period (20)"),
        ({"type": "asha", "grace_period": 4, "max_epochs": 3}, "max_epochs (3) must lie between"),
        ({"type": "hyperband", "max_epochs": 50}, "max_epochs (50)"),
        ({"type": "asha", "reduction_factor": 1}, "greater than 1"),
        ({"type": "pbt"}, "'fifo', 'asha', 'hyperband' or 'median'"),
    ],
)
def test_scheduler_knobs_are_checked_against_epochs(scheduler: dict, words: str) -> None:
    errors = errors_of(
        {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 10}, "scheduler": scheduler}
    )
    assert any(words in msg for _, msg in errors), errors


def test_scheduler_by_name_and_epochs_domain_bound() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {"epochs": {"choice": [4, 12]}},
            "scheduler": "asha",
            "time_budget_s": 30,
        }
    )
    assert spec.scheduler.type == "asha" and spec.search_space.most_epochs() == 12


@pytest.mark.parametrize(
    ("stop", "where"),
    [
        ({"target": float("inf")}, "stop.target"),
        ({"no_improvement": {"trials": 0}}, "stop.no_improvement.trials"),
        ({"no_improvement": 5}, "stop.no_improvement"),
        ({"patience": 5}, "stop.patience"),
    ],
)
def test_bad_stop_rules_are_named(stop: dict, where: str) -> None:
    errors = errors_of({"dataset": {"builtin": "iris"}, "stop": stop})
    assert [loc for loc, _ in errors] == [where], errors


def test_metric_of_the_other_task_is_refused_when_task_is_given() -> None:
    ((_loc, msg),) = errors_of(
        {"dataset": {"builtin": "diabetes"}, "task": "regression", "metric": "val_accuracy"}
    )
    assert "val_accuracy is not a regression metric" in msg


def test_packing_is_on_unless_turned_off_and_its_size_is_checked() -> None:
    base = {"dataset": {"builtin": "iris"}}
    assert JobSpec.model_validate(base).packing is True
    assert JobSpec.model_validate({**base, "packing": False}).packing is False
    capped = JobSpec.model_validate({**base, "packing": {"max_k": 8}})
    assert capped.pack_size_limit() == 8
    assert errors_of({**base, "packing": {"max_k": 0}})[0][0] == "packing.Packing.max_k"
    assert errors_of({**base, "packing": {"size": 8}})[0][1] == "Extra inputs are not permitted"
    assert errors_of({**base, "packing": "yes"})[-1][0] == "packing.bool"


def test_the_scaler_is_a_parameter_left_out_unless_set() -> None:
    plain = JobSpec.model_validate({"dataset": {"builtin": "iris"}})
    assert "scaler" not in plain.search_space.domains()
    tuned = JobSpec.model_validate(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {"scaler": {"grid": ["minmax", "quantile"]}},
        }
    )
    assert tuned.search_space.scalers() == ["minmax", "quantile"] and tuned.trial_count() == 2
    for wrong, words in (
        ({"grid": ["minmax", "log"]}, "'minmax', 'standard', 'quantile' or 'none'"),
        ({"uniform": ["minmax", "none"]}, 'scaler takes a constant, {"grid": [...]}'),
    ):
        with pytest.raises(ValidationError, match=words.replace("[", r"\[").replace("{", r"\{")):
            JobSpec.model_validate(
                {"dataset": {"builtin": "iris"}, "search_space": {"scaler": wrong}}
            )
