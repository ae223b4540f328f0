import pytest
import redis

from shared.errors import NotFoundError
from shared.registry import ModelRecord, ModelRegistry
from tests.helpers.factories import record


@pytest.fixture
def registry(redis_client: redis.Redis) -> ModelRegistry:
    return ModelRegistry(redis_client)


def test_registered_model_round_trips(registry: ModelRegistry) -> None:
    model = record("a" * 32, 0.9)
    registry.register(model)
    assert registry.get("a" * 32) == model
    assert registry.recent() == [model]
    with pytest.raises(NotFoundError):
        registry.get("b" * 32)


def test_alias_follows_promotion_and_can_be_removed(registry: ModelRegistry) -> None:
    first, second = record("a" * 32, 0.9), record("b" * 32, 0.8)
    registry.register(first)
    registry.register(second)
    registry.set_alias("prod", first.id)
    assert registry.resolve("prod") == first.id
    registry.set_alias("prod", second.id)
    assert registry.resolve("prod") == second.id and registry.aliases() == {"prod": second.id}
    registry.delete_alias("prod")
    assert registry.resolve("prod") is None
    with pytest.raises(NotFoundError):
        registry.delete_alias("prod")
    with pytest.raises(NotFoundError):
        registry.set_alias("prod", "c" * 32)
    assert registry.resolve(first.id) == first.id  # an id names itself


def test_promotion_only_when_the_test_metric_is_better(registry: ModelRegistry) -> None:
    good, worse, best = record("a" * 32, 0.9), record("b" * 32, 0.8), record("c" * 32, 0.95)
    for model in (good, worse, best):
        registry.register(model)
    assert registry.promote_if_better("prod", good)  # nothing there yet
    assert not registry.promote_if_better("prod", worse)
    assert registry.resolve("prod") == good.id
    assert registry.promote_if_better("prod", best)
    assert registry.resolve("prod") == best.id


def test_regression_promotion_prefers_lower_test_loss(registry: ModelRegistry) -> None:
    high, low = record("a" * 32, 40.0, "regression"), record("b" * 32, 30.0, "regression")
    registry.register(high)
    registry.register(low)
    assert registry.promote_if_better("reg", high)
    assert registry.promote_if_better("reg", low)
    assert not registry.promote_if_better("reg", high)
    assert registry.resolve("reg") == low.id


def test_records_from_before_regression_still_read(registry: ModelRegistry) -> None:
    old = record("a" * 32, 0.9).model_dump(exclude={"task", "target"})
    restored = ModelRecord.model_validate(old)
    assert restored.task == "classification" and restored.target == "target"
