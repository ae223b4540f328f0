import json

import pytest
from pydantic import ValidationError

from shared.spec import Choice, Grid, JobSpec
from tests.conftest import EXAMPLES


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


def test_defaults_and_mode_follow_the_metric() -> None:
    spec = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "metric": "val_loss"})
    assert spec.mode == "min"
    assert spec.trial_count() == 1
    assert JobSpec.model_validate({"dataset": {"builtin": "iris"}}).mode == "max"


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
        ({"epochs": {"range": [1, 5]}}, "search_space.epochs", '{"grid": [...]}'),
        ({"momentum": 0.9}, "search_space.momentum", "Extra inputs"),
    ],
)
def test_bad_parameters_are_named(space: dict, where: str, words: str) -> None:
    errors = errors_of({"dataset": {"builtin": "iris"}, "search_space": space})
    assert any(loc.startswith(where) and words in msg for loc, msg in errors), errors


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


def test_too_many_trials_is_refused() -> None:
    (_loc, msg), *_ = errors_of(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {"lr": {"grid": [0.1] * 101}, "hidden_units": {"grid": [2] * 100}},
        }
    )
    assert "10100 trials" in msg


def test_spec_round_trips_through_json() -> None:
    spec = JobSpec.model_validate(json.loads((EXAMPLES / "seed-grid.json").read_text()))
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec
