"""The packed engine against the unpacked loop: same seed, same batches, same results."""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.driver.packed.epoch import (
    PackState,
    member_of,
    state_from_payload,
    state_to_payload,
    train_pack_epoch,
)
from services.driver.packed.network import Member, PackedMLP
from services.driver.packed.step import HandStep
from services.driver.prepared import PreparedData
from services.driver.splits import prepare
from services.driver.training import TrialPlan, train_trial, trial_seed
from shared.data import DatasetStore, load_frame
from shared.model import ModelBundle
from shared.spec import DatasetSpec

BASE = {"batch_size": 16, "epochs": 3, "weight_decay": 0.0}
# Mixed widths, dropouts, learning rates and weight decays; "a" and "c" without dropout,
# so that their masks (drawn per pack, not per member) cannot differ from alone.
PACK = {
    "a": {**BASE, "lr": 0.01, "dropout": 0.0, "hidden_units": 32},
    "b": {**BASE, "lr": 0.003, "dropout": 0.5, "hidden_units": 64},
    "c": {**BASE, "lr": 0.02, "dropout": 0.0, "hidden_units": 8, "weight_decay": 1e-3},
    "d": {**BASE, "lr": 0.001, "dropout": 0.2, "hidden_units": 32},
}


def builtin(name: str) -> PreparedData:
    spec = DatasetSpec(builtin=name)  # type: ignore[arg-type]
    return prepare(load_frame(spec, DatasetStore(Path("/nonexistent"))), spec, "target")


@pytest.fixture(scope="module")
def wine() -> TrialPlan:
    return TrialPlan(data=builtin("wine"), metric="val_accuracy", mode="max", seed=7)


def alone(config: dict[str, Any], plan: TrialPlan) -> list[tuple[dict, dict | None]]:
    reports: list[tuple[dict, dict | None]] = []
    train_trial(config, plan, lambda metrics, payload: reports.append((metrics, payload)))
    return reports


def packed(configs: dict[str, dict], plan: TrialPlan, epochs: int) -> list[dict[str, Any]]:
    state, per_epoch = PackState.new(configs), []
    for _ in range(epochs):
        state, results = train_pack_epoch(state, plan)
        per_epoch.append(results)
    return per_epoch


@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_a_member_trains_as_it_would_alone(wine: TrialPlan, hidden_layers: int) -> None:
    configs = {k: {**c, "hidden_layers": hidden_layers} for k, c in PACK.items()}
    epochs = packed(configs, wine, 3)
    for trial_id in ("a", "c"):
        reports = alone(configs[trial_id], wine)
        for epoch, (metrics, _) in enumerate(reports):
            got = epochs[epoch][trial_id].metrics
            # Training sees the same weights, batches and updates: equal to rounding.
            assert got["training_loss"] == pytest.approx(metrics["training_loss"], rel=1e-4)
            assert got["training_accuracy"] == pytest.approx(metrics["training_accuracy"])
            # The bias before BatchNorm has no true gradient; Adam scales its rounding
            # noise up, and BatchNorm's running mean follows it, so validation agrees
            # closely rather than to the last digit.
            assert got["val_loss"] == pytest.approx(metrics["val_loss"], abs=0.02)
            assert got["val_accuracy"] == pytest.approx(metrics["val_accuracy"], abs=0.03)
        last_alone = next(p for _, p in reversed(reports) if p is not None)
        last_packed = next(e[trial_id].payload for e in reversed(epochs) if e[trial_id].payload)
        noisy = {f"layers.{4 * i}.bias" for i in range(hidden_layers)}
        noisy |= {f"layers.{4 * i + 1}.running_mean" for i in range(hidden_layers)}
        for name, tensor in last_alone["state_dict"].items():
            if name not in noisy:
                got = last_packed["state_dict"][name].float()
                assert torch.allclose(got, tensor.float(), atol=1e-4), name
        assert _agree(last_packed, last_alone, wine.data.x_val) >= 0.95


def test_a_member_alone_in_its_pack_draws_the_dropout_masks_it_would_alone(
    wine: TrialPlan,
) -> None:
    # Masks are drawn per pack, layer after layer; a pack of one draws an unpacked
    # trial's, in every layer of a deeper network too.
    config = {**PACK["b"], "hidden_layers": 3}
    epochs = packed({"b": config}, wine, 3)
    for epoch, (metrics, _) in enumerate(alone(config, wine)):
        got = epochs[epoch]["b"].metrics
        assert got["training_loss"] == pytest.approx(metrics["training_loss"], rel=1e-4)
        assert got["training_accuracy"] == pytest.approx(metrics["training_accuracy"])


def test_members_of_one_width_drop_at_their_own_rates() -> None:
    # Members of one width share the uniform numbers their masks come from; each still
    # keeps its own share of units, scaled as nn.Dropout scales them.
    rates = {"a": 0.3, "b": 0.7, "c": 0.0, "d": 0.5}
    widths = {"a": 32, "b": 32, "c": 32, "d": 16}
    members = [Member(k, widths[k], p, 0.01, 0.0) for k, p in rates.items()]
    pack = PackedMLP(members, n_features=4, n_outputs=2, hidden_layers=1)
    multiplier = pack._dropout_multiplier((4000, pack.total_width), np.random.default_rng(0))
    for index, member in enumerate(pack.members):
        part = multiplier[:, pack.col_offsets[index] : pack.col_offsets[index + 1]]
        keep = 1.0 - member.dropout
        assert float((part > 0).float().mean()) == pytest.approx(keep, abs=0.01)
        assert torch.allclose(part[part > 0], torch.tensor(1.0 / keep))


def test_a_trial_with_a_seed_of_its_own_trains_as_it_would_alone(wine: TrialPlan) -> None:
    # A repeat of a grid point comes with its own seed; its pack starts from it.
    own_seed = trial_seed(wine.seed, 1)
    configs = {k: {**PACK[k], "seed": own_seed} for k in ("a", "c")}
    epochs = packed(configs, wine, 3)
    with_job_seed = packed({k: PACK[k] for k in configs}, wine, 1)[0]
    for trial_id, config in configs.items():
        for epoch, (metrics, _) in enumerate(alone(config, wine)):
            got = epochs[epoch][trial_id].metrics
            assert got["training_loss"] == pytest.approx(metrics["training_loss"], rel=1e-4)
            assert got["training_accuracy"] == pytest.approx(metrics["training_accuracy"])
        other = with_job_seed[trial_id].metrics["training_loss"]
        assert epochs[0][trial_id].metrics["training_loss"] != pytest.approx(other, rel=1e-3)


def _agree(first: dict, second: dict, rows: np.ndarray) -> float:
    a = ModelBundle.from_payload(first).predict(rows)[0]
    b = ModelBundle.from_payload(second).predict(rows)[0]
    return float(np.mean([x == y for x, y in zip(a, b, strict=True)]))


def test_a_diverging_member_does_not_spoil_the_others(wine: TrialPlan) -> None:
    # Without dropout: masks are drawn per pack, so a new member would change them.
    healthy = {k: PACK[k] for k in ("a", "c")}
    with_nan = {**healthy, "nan": {**PACK["a"], "lr": 1e38}}
    clean, spoiled = packed(healthy, wine, 3), packed(with_nan, wine, 3)
    assert not math.isfinite(spoiled[-1]["nan"].metrics["training_loss"])
    for epoch in range(3):
        for trial_id in healthy:
            got, want = spoiled[epoch][trial_id].metrics, clean[epoch][trial_id].metrics
            assert all(math.isfinite(value) for value in got.values())
            assert got["training_loss"] == pytest.approx(want["training_loss"], rel=1e-5)
            assert got["training_accuracy"] == want["training_accuracy"]
            # Validation too: nothing of a member's depends on its pack's other members
            # (the bias before BatchNorm, which has no true gradient, gets none).
            assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)


def test_regression_pack_matches_alone() -> None:
    plan = TrialPlan(data=builtin("diabetes"), metric="val_loss", mode="min", seed=3)
    config = {**BASE, "lr": 0.01, "dropout": 0.0, "hidden_units": 16}
    configs = {"r": config, "s": {**config, "hidden_units": 48, "lr": 0.003}}
    epochs = packed(configs, plan, 3)
    for epoch, (metrics, _) in enumerate(alone(config, plan)):
        got = epochs[epoch]["r"].metrics
        assert set(got) == set(metrics) - {"device"}
        assert got["training_rmse"] == pytest.approx(metrics["training_rmse"], rel=1e-4)
        assert got["val_r2"] == pytest.approx(metrics["val_r2"], abs=0.02)


@pytest.mark.parametrize("fold_first", [False, True])
@pytest.mark.parametrize(("hidden_layers", "regression"), [(1, False), (2, False), (2, True)])
def test_the_written_out_step_has_autograds_gradients(
    hidden_layers: int, regression: bool, fold_first: bool
) -> None:
    # Every parameter's gradient from the hand-written step against autograd's through
    # PackedMLP.forward, for members of three widths, on the same weights and batch;
    # the first layer's BatchNorm from its own columns, and from the inputs' statistics.
    members = [Member(str(i), width, 0.0, 0.01, 0.0) for i, width in enumerate([8, 8, 24, 40])]
    outputs = 1 if regression else 3
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, generator=generator) * 3
    if regression:
        y = torch.randn(16, generator=generator)
    else:
        y = torch.randint(0, outputs, (16,), generator=generator)

    def pack() -> PackedMLP:
        made = PackedMLP(members, 6, outputs, hidden_layers)
        made.flat.copy_(torch.randn(made.flat.shape, generator=torch.Generator().manual_seed(1)))
        return made

    by_autograd, by_hand = pack(), pack()
    by_autograd.autograd_step(x, y, regression, None)
    onehot = None if regression else torch.nn.functional.one_hot(y, outputs).t().float()
    HandStep(by_hand, 16, regression, fold_first=fold_first)(x, y, onehot, None)
    views = zip(
        by_autograd.params,
        by_autograd._views(by_autograd.flat_grad),
        by_hand._views(by_hand.flat_grad),
        strict=True,
    )
    for spec, want, got in views:
        if spec.name.startswith("h") and spec.name.endswith(".bias"):
            assert float(got.abs().max()) == 0.0  # its true gradient; autograd's is rounding
            assert float(want.abs().max()) < 1e-5
        else:
            assert torch.allclose(got, want, atol=1e-6, rtol=1e-4), spec.name
    for name, want in by_autograd.buffer_values.items():
        assert torch.allclose(by_hand.buffer_values[name], want, atol=1e-6, rtol=1e-5), name


def test_a_folded_first_layer_trains_as_the_unfolded_one(wine: TrialPlan) -> None:
    # Thirty steps with dropout and Adam, the first layer's BatchNorm from its own
    # columns and from the inputs' statistics (as batches of 3 or more rows per input
    # train): the same losses, predictions, weights and running statistics, to rounding.
    members = [member_of(k, c) for k, c in PACK.items()]
    x = torch.as_tensor(wine.data.x_train[:64], dtype=torch.float32)
    y = torch.as_tensor(wine.data.y_train[:64]).long()
    onehot = torch.nn.functional.one_hot(y, 3).t().float()
    runs = []
    for fold_first in (False, True):
        pack = PackedMLP(members, x.shape[1], 3, 1)
        pack.flat.copy_(torch.randn(pack.flat.shape, generator=torch.Generator().manual_seed(1)))
        step, rng = HandStep(pack, 64, False, fold_first=fold_first), np.random.default_rng(5)
        outcomes = [step(x, y, onehot, rng) for _ in range(30)]
        runs.append((pack, outcomes))
    (plain, plain_steps), (folded, folded_steps) = runs
    for (loss, predicted), (loss_folded, predicted_folded) in zip(
        plain_steps, folded_steps, strict=True
    ):
        assert torch.allclose(loss_folded, loss, rtol=1e-4)
        assert torch.equal(predicted_folded, predicted)
    assert torch.allclose(folded.flat, plain.flat, atol=1e-4)
    for name, want in plain.buffer_values.items():
        assert torch.allclose(folded.buffer_values[name], want, atol=1e-4, rtol=1e-4), name


def test_a_state_handed_on_as_ray_hands_it_trains_on_exactly(wine: TrialPlan) -> None:
    # Between epochs Ray pickles the state (its members' tensors as one): the next
    # epoch's metrics and every member's weights and moments are as if it had not.
    state = PackState.new(PACK)
    for _ in range(2):
        state, _ = train_pack_epoch(state, wine)
    handed = pickle.loads(pickle.dumps(state))
    for name in ("weights", "exp_avg", "exp_avg_sq"):
        for trial_id, tensors in getattr(state, name).items():
            got = getattr(handed, name)[trial_id]
            assert list(got) == list(tensors)
            assert all(torch.equal(got[key], tensor) for key, tensor in tensors.items())
    (_, straight), (_, resumed) = train_pack_epoch(state, wine), train_pack_epoch(handed, wine)
    for trial_id in PACK:
        assert resumed[trial_id].metrics == straight[trial_id].metrics


def test_saved_state_resumes_exactly(wine: TrialPlan) -> None:
    straight = packed(PACK, wine, 3)
    state = PackState.new(PACK)
    for _ in range(2):
        state, _ = train_pack_epoch(state, wine)
    buffer = io.BytesIO()
    torch.save(state_to_payload(state), buffer)
    buffer.seek(0)
    restored = state_from_payload(torch.load(buffer, weights_only=True))
    _, resumed = train_pack_epoch(restored, wine)
    for trial_id in PACK:
        assert resumed[trial_id].metrics == straight[2][trial_id].metrics


def test_members_leave_and_the_rest_go_on(wine: TrialPlan) -> None:
    state = PackState.new(PACK)
    state, _ = train_pack_epoch(state, wine)
    smaller = state.without({"b", "d"})
    assert [m.trial_id for m in smaller.members] == ["c", "a"]  # sorted by width
    _, results = train_pack_epoch(smaller, wine)
    assert set(results) == {"a", "c"}
    full = packed(PACK, wine, 2)
    # Members without dropout do not depend on who else is in the pack.
    for trial_id in ("a", "c"):
        assert results[trial_id].metrics["training_loss"] == pytest.approx(
            full[1][trial_id].metrics["training_loss"], rel=1e-5
        )


def test_packs_merged_after_an_epoch_train_their_members_as_apart(wine: TrialPlan) -> None:
    """Two packs of one kind, merged after their first epoch (as the driver regroups
    the survivors of packs that early stopping shrank), give each member the metrics,
    weights and checkpoints it gets in its own pack."""
    first = {k: PACK[k] for k in ("a", "b")}
    second = {k: PACK[k] for k in ("c", "d")}
    apart = {**packed(first, wine, 2)[1], **packed(second, wine, 2)[1]}
    one, _ = train_pack_epoch(PackState.new(first), wine)
    two, _ = train_pack_epoch(PackState.new(second), wine)
    merged = one.merged(two)
    assert sorted(m.trial_id for m in merged.members) == ["a", "b", "c", "d"]
    _, together = train_pack_epoch(merged.without({"b"}), wine)
    assert set(together) == {"a", "c", "d"}
    # Without dropout a member's training does not depend on its pack's other members.
    for trial_id in ("a", "c"):
        got, alone_in_pack = together[trial_id], apart[trial_id]
        for name, value in alone_in_pack.metrics.items():
            assert got.metrics[name] == pytest.approx(value, rel=1e-5), name
        assert (got.payload is None) == (alone_in_pack.payload is None)
    with pytest.raises(ValueError, match="after one epoch"):
        one.merged(PackState.new(second))


def test_checkpoints_load_like_unpacked_ones(wine: TrialPlan) -> None:
    first = packed(PACK, wine, 1)[0]
    for trial_id, result in first.items():
        assert result.payload is not None  # the first epoch always improves
        bundle = ModelBundle.from_payload(result.payload)
        assert bundle.architecture["hidden_units"] == PACK[trial_id]["hidden_units"]
        labels, probabilities = bundle.predict(wine.data.x_val)
        assert probabilities is not None and len(labels) == len(wine.data.y_val)
        optimizer = torch.optim.Adam(bundle.model.parameters())
        optimizer.load_state_dict(result.payload["optimizer"])
        assert optimizer.param_groups[0]["lr"] == PACK[trial_id]["lr"]
