"""A pack's training, epoch by epoch: the packed twin of services.driver.training's loop.

Tune-independent and stateless between calls: a pack's whole state (members' weights,
Adam moments, best values, the batch order's and the dropout masks' generators) is a
plain ``PackState`` that goes in and comes out of each epoch, so that any warm process
can run the next epoch and a resumed job can continue from the saved state.

Members share a seed (their configs', else the job's: packs are formed by it), see the
same batches (one balanced draw per pack and epoch) from a generator seeded as an
unpacked trial's is, start from the weights an unpacked trial with the same seed starts
from, and report the same metrics under the same names.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from services.driver.packed.network import Member, PackedMLP, initial_state_dict
from services.driver.packed.step import train_epoch
from services.driver.prepared import PreparedData
from services.driver.sampling import balanced_weights, epoch_order
from services.driver.training import SEED_KEY, TrialPlan
from shared.model import checkpoint_payload, embedding_layout

# What may differ inside a pack is in Member; the rest of a config must match.
PACKED_PARAMETERS = ("lr", "weight_decay", "dropout", "hidden_units")


# (batch size, epochs, hidden layers, seed, scaler, embedding size): see pack_key.
PackKey = tuple[int, int, int, int | None, str | None, int | None]


def pack_key(config: dict[str, Any]) -> PackKey:
    """What members of one pack share: (batch size, epochs, hidden layers, seed,
    scaler, embedding size); a seed of None is the job's, a scaler of None the
    dataset's, an embedding size of None each column's own. Members draw one batch order
    and one stream of masks, from one prepared table, and have vectors of one size."""
    seed = config.get(SEED_KEY)
    return (
        int(config["batch_size"]),
        int(config["epochs"]),
        int(config.get("hidden_layers", 1)),
        None if seed is None else int(seed),
        config.get("scaler"),
        None if config.get("embedding_dim") is None else int(config["embedding_dim"]),
    )


def member_of(trial_id: str, config: dict[str, Any]) -> Member:
    return Member(
        trial_id=trial_id,
        hidden_units=int(config["hidden_units"]),
        dropout=float(config["dropout"]),
        lr=float(config["lr"]),
        weight_decay=float(config["weight_decay"]),
    )


@dataclass
class PackState:
    """Everything a pack needs to train its next epoch."""

    members: list[Member]
    batch_size: int
    epochs: int
    hidden_layers: int
    epoch: int = 0  # epochs done
    step: int = 0
    num_batches_tracked: int = 0
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    exp_avg: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    exp_avg_sq: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    best_values: dict[str, float] = field(default_factory=dict)
    order_generator: torch.Tensor | None = None
    dropout_generator: dict[str, Any] | None = None
    seed: int | None = None  # the members' seed; None: the job's
    scaler: str | None = None  # the members' scaler; None: the dataset's
    embedding_dim: int | None = None  # the members' vector size; None: each column's

    def embeddings(self, data: PreparedData) -> list[list[int]]:
        """The members' embedded columns, as MLP's ``embeddings`` takes them."""
        return embedding_layout(data.plan, self.embedding_dim)

    def seed_in(self, plan: TrialPlan) -> int:
        """The seed the members' weights, batches and masks start from."""
        return plan.seed if self.seed is None else self.seed

    @classmethod
    def new(cls, configs: dict[str, dict[str, Any]]) -> PackState:
        """A pack of trial id -> config, every config with the same pack_key."""
        keys = {pack_key(config) for config in configs.values()}
        if len(keys) != 1:
            raise ValueError(f"configurations of one pack must share {keys}")
        batch_size, epochs, hidden_layers, seed, scaler, embedding_dim = keys.pop()
        members = [member_of(trial_id, config) for trial_id, config in configs.items()]
        return cls(
            members, batch_size, epochs, hidden_layers, seed=seed, scaler=scaler,
            embedding_dim=embedding_dim,
        )  # fmt: skip

    def without(self, trial_ids: set[str]) -> PackState:
        """The pack after ``trial_ids`` left it (stopped early or failed)."""

        def keep(values: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in values.items() if k not in trial_ids}

        return dataclasses.replace(
            self,
            members=[m for m in self.members if m.trial_id not in trial_ids],
            weights=keep(self.weights),
            exp_avg=keep(self.exp_avg),
            exp_avg_sq=keep(self.exp_avg_sq),
            best_values=keep(self.best_values),
        )

    def merged(self, *others: PackState) -> PackState:
        """One pack of this one's members and others' of the same pack_key, after the
        same epoch: their batch order is one (one seed, one draw per epoch) and so is
        Adam's step count. The dropout masks' stream goes on from this pack's."""
        if any(other._kind() != self._kind() for other in others):
            raise ValueError("only packs of one pack_key, after one epoch, merge")
        every = (self, *others)
        return dataclasses.replace(
            self,
            members=[member for state in every for member in state.members],
            weights={k: v for state in every for k, v in state.weights.items()},
            exp_avg={k: v for state in every for k, v in state.exp_avg.items()},
            exp_avg_sq={k: v for state in every for k, v in state.exp_avg_sq.items()},
            best_values={k: v for state in every for k, v in state.best_values.items()},
        )

    def _kind(self) -> tuple[Any, ...]:
        """What packs that merge share: their pack_key, and the epoch and step done."""
        return (self.batch_size, self.epochs, self.hidden_layers, self.seed, self.scaler,
                self.embedding_dim, self.epoch, self.step)  # fmt: skip

    # Pickled as Ray hands the state from one epoch's task to the next: the members'
    # float tensors (800 for 40 members of one hidden layer: weights and both Adam
    # moments) as one, which took the round trip from ~135 ms to ~16. Unpickled, they
    # are views of that one tensor: read them (load_member copies them); a state to be
    # saved is made anew by each epoch (train_pack_epoch), not saved from these.

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_member_ids"] = {name: list(state[name]) for name in _MEMBER_TENSORS}
        parts: list[torch.Tensor] = []
        # (field, trial id, name, shape of a part of the one tensor, or the tensor kept
        # as it is), in the dictionaries' order.
        layout: list[tuple[str, str, str, tuple[int, ...], torch.Tensor | None]] = []
        for name in _MEMBER_TENSORS:
            for trial_id, tensors in state.pop(name).items():
                for key, tensor in tensors.items():
                    if tensor.dtype == torch.float32 and tensor.device.type == "cpu":
                        parts.append(tensor.reshape(-1))
                        layout.append((name, trial_id, key, tuple(tensor.shape), None))
                    else:
                        layout.append((name, trial_id, key, (), tensor))
        state["_member_tensors"] = (torch.cat(parts) if parts else torch.empty(0), layout)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        flat, layout = state.pop("_member_tensors")
        tensors: dict[str, dict[str, dict[str, torch.Tensor]]] = {
            name: {trial_id: {} for trial_id in trial_ids}
            for name, trial_ids in state.pop("_member_ids").items()
        }
        offset = 0
        for name, trial_id, key, shape, kept in layout:
            if kept is None:
                size = math.prod(shape)
                kept = flat[offset : offset + size].view(shape)
                offset += size
            tensors[name][trial_id][key] = kept
        self.__dict__.update(state, **tensors)


_MEMBER_TENSORS = ("weights", "exp_avg", "exp_avg_sq")


def state_to_payload(state: PackState) -> dict[str, Any]:
    """The state as tensors and plain values, to save with torch.save and load with
    ``torch.load(weights_only=True)``: nothing in it is unpickled as an object."""
    return {
        **{name: getattr(state, name) for name in _STATE_FIELDS},
        "members": [vars(member) for member in state.members],
    }


def state_from_payload(payload: dict[str, Any]) -> PackState:
    # A state saved before packs had seeds of their own trained with the job's.
    fields = {name: payload[name] for name in _STATE_FIELDS if name in payload}
    return PackState(members=[Member(**member) for member in payload["members"]], **fields)


_STATE_FIELDS = (
    "batch_size", "epochs", "hidden_layers", "epoch", "step", "num_batches_tracked",
    "weights", "exp_avg", "exp_avg_sq", "best_values", "order_generator", "dropout_generator",
    "seed", "scaler", "embedding_dim",
)  # fmt: skip


@dataclass
class EpochResult:
    """One member's epoch: its metrics, and its checkpoint payload if one is due."""

    metrics: dict[str, float]
    payload: dict[str, Any] | None


class Phases:
    """Seconds spent in each phase of a pack's epochs, summed over epochs: what the
    per-epoch profile (bench/pack_profile.py) reports."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed


def train_pack_epoch(
    state: PackState, plan: TrialPlan, device: str = "cpu", phases: Phases | None = None
) -> tuple[PackState, dict[str, EpochResult]]:
    """Train every member of the pack for one epoch; the new state and each member's
    result. A member's checkpoint goes with an epoch that improves its best metric: the
    one checkpoint an unpacked trial keeps. The pack's state resumes the rest."""
    phase = phases or Phases()
    with phase("steps"):
        pack, new_state, training = _train(state, plan, device)
    with phase("validation"):
        data = plan.data_for(state.scaler)
        validation = evaluate_pack(pack, data.x_val, data.y_val, plan)
    with phase("results"):
        results: dict[str, EpochResult] = {}
        for index, member in enumerate(pack.members):
            metrics = {
                **{f"training_{k}": v[index] for k, v in training.items()},
                **{f"val_{k}": v[index] for k, v in validation.items()},
            }
            results[member.trial_id] = _member_result(
                pack, index, metrics, state.best_values.get(member.trial_id), new_state, plan
            )
    return new_state, results


def _train(
    state: PackState, plan: TrialPlan, device: str
) -> tuple[PackedMLP, PackState, dict[str, list[float]]]:
    """The pack's network after one more epoch, its state but the members' (which
    _member_result adds), and each member's training metrics."""
    data = plan.data_for(state.scaler)
    regression = data.task == "regression"
    n_outputs = 1 if regression else len(data.classes)
    pack = PackedMLP(
        state.members, len(data.feature_names), n_outputs, state.hidden_layers, device,
        embeddings=state.embeddings(data),
    )  # fmt: skip
    seed = state.seed_in(plan)
    order_generator = torch.Generator().manual_seed(seed)
    dropout_rng = np.random.default_rng(seed)
    _start_or_resume(pack, state, n_outputs, seed, order_generator, dropout_rng)

    x_train = torch.from_numpy(np.array(data.x_train)).to(device)
    y_train = torch.from_numpy(np.array(data.y_train)).to(device)
    sample_weights = None
    if plan.balance and not regression:
        sample_weights = balanced_weights(data.y_train, len(data.classes))
    order = epoch_order(len(y_train), sample_weights, order_generator).to(device)
    train_loss, train_correct = train_epoch(
        pack, x_train, y_train, order, state.batch_size, regression, dropout_rng
    )
    n_trained = max(1, len(order) // state.batch_size) * state.batch_size
    training = _metrics(train_loss, train_correct, min(n_trained, len(order)), data, regression)
    new_state = PackState(
        pack.members, state.batch_size, state.epochs, state.hidden_layers, state.epoch + 1,
        pack.step, pack.num_batches_tracked,
        order_generator=order_generator.get_state(),
        dropout_generator=dict(dropout_rng.bit_generator.state),
        seed=state.seed,
        scaler=state.scaler,
        embedding_dim=state.embedding_dim,
    )  # fmt: skip
    return pack, new_state, training


def _start_or_resume(
    pack: PackedMLP,
    state: PackState,
    n_outputs: int,
    seed: int,
    order_generator: torch.Generator,
    dropout_rng: np.random.Generator,
) -> None:
    """The members' first weights (epoch 0: as an unpacked trial of theirs starts), or
    their weights, Adam moments and random streams where the last epoch left them."""
    if state.epoch == 0:
        for index, member in enumerate(pack.members):
            weights = initial_state_dict(
                pack.n_features, n_outputs, member.hidden_units, state.hidden_layers, seed,
                pack.embeddings,
            )  # fmt: skip
            pack.load_member(index, weights)
        return
    for index, member in enumerate(pack.members):
        pack.load_member(index, state.weights[member.trial_id])
        pack.load_moments(index, state.exp_avg[member.trial_id], state.exp_avg_sq[member.trial_id])
    pack.step, pack.num_batches_tracked = state.step, state.num_batches_tracked
    assert state.order_generator is not None and state.dropout_generator is not None
    order_generator.set_state(state.order_generator)
    dropout_rng.bit_generator.state = state.dropout_generator


def _member_result(
    pack: PackedMLP,
    index: int,
    metrics: dict[str, float],
    best: float | None,
    new_state: PackState,
    plan: TrialPlan,
) -> EpochResult:
    """One member's epoch: its metrics, its weights and moments kept in ``new_state``,
    and a checkpoint if the epoch improved its best value of the job's metric."""
    trial_id = pack.members[index].trial_id
    value = metrics[plan.metric]
    improved = math.isfinite(value) and (
        best is None or (value > best if plan.mode == "max" else value < best)
    )
    if improved:
        best = value
    if best is not None:
        new_state.best_values[trial_id] = best
    new_state.weights[trial_id] = pack.member_state_dict(index)
    new_state.exp_avg[trial_id], new_state.exp_avg_sq[trial_id] = pack.member_moments(index)
    payload = _payload(pack, index, new_state, plan, new_state.epoch, best) if improved else None
    return EpochResult(metrics, payload)


def _payload(
    pack: PackedMLP, index: int, state: PackState, plan: TrialPlan, epoch: int, best: Any
) -> dict[str, Any]:
    """The member's checkpoint, the same as an unpacked trial's."""
    # The plan the member trained through: the one its checkpoint must predict with.
    data, member = plan.data_for(state.scaler), pack.members[index]
    architecture = {
        "n_features": pack.n_features,
        "n_outputs": pack.n_outputs,
        "hidden_units": member.hidden_units,
        "hidden_layers": pack.hidden_layers,
        "dropout": member.dropout,
        **({"embeddings": pack.embeddings} if pack.embeddings else {}),
    }
    return checkpoint_payload(
        state.weights[member.trial_id],
        architecture,
        task=data.task,
        feature_names=list(data.columns),
        classes=data.classes,
        target_mean=data.target_mean,
        target_std=data.target_std,
        columns=data.columns,
        preprocessing=data.plan,
        target_transform=data.target_transform,
        optimizer=pack.member_optimizer_state(index),
        epoch=epoch,
        best_value=best,
    )


def evaluate_pack(
    pack: PackedMLP, x_rows: np.ndarray, y_rows: np.ndarray, plan: TrialPlan
) -> dict[str, list[float]]:
    """Every member's metrics on scaled rows, as services.driver.training.evaluate computes them."""
    data = plan.data
    regression = data.task == "regression"
    x = torch.from_numpy(np.array(x_rows)).to(pack.device)
    y = torch.from_numpy(np.array(y_rows)).to(pack.device)
    count = len(pack.members)
    loss_sum = torch.zeros(count, dtype=torch.float64, device=pack.device)
    correct = torch.zeros(count, dtype=torch.long, device=pack.device)
    for rows, outputs in pack.outputs_in_chunks(x):
        y_part = y[rows]
        if regression:
            loss_sum += ((outputs[:, :, 0] - y_part[:, None]) ** 2).sum(dim=0).double()
        else:
            loss_sum += pack.member_losses(outputs, y_part, False).double() * len(y_part)
            # torch.max's indices, not argmax: 10-20x faster along this axis, the same
            # first largest class.
            correct += (outputs.max(dim=2).indices == y_part[:, None]).sum(dim=0)
    n = len(y)
    if regression:
        squared = loss_sum.cpu().numpy()
        total = float(((y - y.mean()) ** 2).sum())
        mse = squared / n * data.target_std**2
        return {
            "loss": mse.tolist(),
            "rmse": np.sqrt(mse).tolist(),
            "r2": (1.0 - squared / total if total else np.zeros(count)).tolist(),
        }
    return {
        "loss": (loss_sum / n).cpu().tolist(),
        "accuracy": (correct.double() / n).cpu().tolist(),
    }


def _metrics(
    mean_loss: torch.Tensor, correct: torch.Tensor, seen: int, data: Any, regression: bool
) -> dict[str, list[float]]:
    losses = mean_loss.cpu().double()
    if regression:
        mse = losses * data.target_std**2
        return {"loss": mse.tolist(), "rmse": mse.sqrt().tolist()}
    return {"loss": losses.tolist(), "accuracy": (correct.cpu().double() / seen).tolist()}
