"""Packed training: many configurations of the seed's MLP trained as one computation.

The networks are tiny: a step at batch size 8 is about a millisecond of Python and
dispatch around microseconds of arithmetic. A pack trains K configurations that share
batch size, epochs, depth and task in one step, so that the dispatch is paid once:

- Hidden layers lie side by side as columns of one wide layer: the first layer is one
  matmul into sum(widths) columns; BatchNorm, ReLU and dropout act per column, which
  keeps each member's statistics and rates apart. Members of one width compare the
  same uniform numbers with their own dropout rates (a pack of one draws an unpacked
  trial's masks), which draws an eighth of the numbers in the seed grid's packs.
  Deeper layers and the output layer are one batched matmul per width (members are
  sorted by width).
- Every trainable tensor is a view into one flat parameter, so that Adam is one pass
  of torch.optim.Adam's fused kernel over all members and a scaling by each element's
  own learning rate (with its own weight decay added to the gradient before).
- Embedded columns (shared.model.CategoryEmbeddings) keep a table per column with the
  members' vectors side by side (one lookup for all members); each member's vectors go
  through its own map onto its first-layer columns, one batched matmul per width.
- The loss is the sum of the members' mean losses, so each member's gradient is the
  one it would get alone. A member that diverges (NaN) spoils only its own columns.

A member's state converts to and from the unpacked MLP's ``state_dict`` and
torch.optim.Adam's moments, so its checkpoints are the same as an unpacked trial's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.model import MLP, embedded_split

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
# Rows x hidden columns evaluated at once: bounds validation memory for wide packs.
EVAL_CELLS = 4_000_000


@dataclass(frozen=True)
class Member:
    """One configuration in a pack: the values that may differ inside a pack."""

    trial_id: str
    hidden_units: int
    dropout: float
    lr: float
    weight_decay: float


@dataclass(frozen=True)
class _Tensor:
    """A packed tensor, where each member's part of it lies, and its name in MLP."""

    name: str
    shape: tuple[int, ...]
    # "inputs": columns of dim 1 are hidden columns (the first layer's weight, kept as
    # (inputs, columns): its gradient is computed faster so than transposed);
    # "cols": rows of dim 0 are hidden columns; "group": dim 0 indexes the members of
    # one width group, each (inputs, outputs) for the batched matmul; "linear": the
    # same, each (outputs, inputs) as nn.Linear keeps it; "member": dim 0 indexes all
    # members; "slots": columns of dim 1 are ``slot`` wide per member (an embedding
    # table's vectors).
    kind: str
    mlp_name: str
    group: int = -1
    slot: int = 0


# A hidden layer's tensors: group weights, bias, BN scale, BN shift, BN mean, BN var.
_LayerTensors = tuple[
    list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]


def _width_groups(widths: list[int]) -> list[tuple[int, int, int]]:
    """(width, first member, count) for each run of equal widths, in order."""
    groups: list[tuple[int, int, int]] = []
    for index, width in enumerate(widths):
        if groups and groups[-1][0] == width:
            w, first, count = groups[-1]
            groups[-1] = (w, first, count + 1)
        else:
            groups.append((width, index, 1))
    return groups


class PackedMLP:
    """K members of the seed's MLP (same depth, inputs and outputs) as one network."""

    def __init__(
        self,
        members: list[Member],
        n_features: int,
        n_outputs: int,
        hidden_layers: int,
        device: str = "cpu",
        embeddings: list[list[int]] | None = None,
    ) -> None:
        if not members:
            raise ValueError("a pack needs at least one member")
        self.members = sorted(members, key=lambda m: m.hidden_units)
        self.n_features, self.n_outputs = n_features, n_outputs
        self.hidden_layers = hidden_layers
        self.device = torch.device(device)
        # [input position, codes, vector size] per embedded column, as MLP takes it.
        self.embeddings = [list(map(int, column)) for column in embeddings or []]
        positions, others = embedded_split(n_features, self.embeddings)
        self._code_index = torch.tensor(positions, dtype=torch.long, device=self.device)
        self._other_index = torch.tensor(others, dtype=torch.long, device=self.device)
        widths = [m.hidden_units for m in self.members]
        self.col_offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        self.total_width = int(self.col_offsets[-1])
        self.groups = _width_groups(widths)
        self.params = self._param_layout()
        self.buffers = self._buffer_layout()
        self._allocate_parameters()
        self._group_columns = [
            (int(self.col_offsets[first]), int(self.col_offsets[first + count]), count, width)
            for width, first, count in self.groups
        ]
        self._group_widths = [end - start for start, end, _, _ in self._group_columns]
        # Where each width's uniform numbers lie in a step's draw (see _dropout_multiplier).
        self._draw_offsets = np.concatenate([[0], np.cumsum([w for w, _, _ in self.groups])])
        self._draw_width = int(self._draw_offsets[-1])
        self._out_weights = [self._leaves[f"out.weight.{g}"] for g in range(len(self.groups))]
        self._tables = [self._leaves[f"emb{c}"] for c in range(len(self.embeddings))]
        self._maps = (
            [self._leaves[f"proj.{g}"] for g in range(len(self.groups))] if self.embeddings else []
        )
        # Adam's moments, its step count, and scratch space for its step.
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self._update = torch.empty_like(self.flat)
        self._step_count = torch.zeros((), device=self.device)
        self.buffer_values = {
            t.name: torch.zeros(t.shape, device=self.device) for t in self.buffers
        }
        self._layers = self._layer_tensors()
        self.num_batches_tracked = 0
        self.step = 0
        self._set_member_hyperparameters(widths)
        self.training = True

    def _allocate_parameters(self) -> None:
        """Every parameter in one flat tensor, and its gradient in another. Each
        parameter is a leaf of its own over the flat storage, with its gradient pre-set
        to a view of the flat gradient: autograd adds into it in place, so the whole
        gradient is one tensor without a copy into it every step."""
        self._sizes = [math.prod(t.shape) for t in self.params]
        self.flat = torch.zeros(sum(self._sizes), device=self.device)
        self.flat_grad = torch.zeros_like(self.flat)
        self._leaves: dict[str, torch.Tensor] = {}
        for spec, view, grad in zip(
            self.params, self._views(self.flat), self._views(self.flat_grad), strict=True
        ):
            leaf = view.detach().requires_grad_()
            leaf.grad = grad
            self._leaves[spec.name] = leaf

    def _layer_tensors(self) -> list[_LayerTensors]:
        """Per hidden layer: (group weights, bias, BN scale, BN shift, BN mean, BN var)."""
        return [
            (
                [self._leaves[f"h{layer}.weight.{g}"] for g in range(len(self.groups))]
                if layer > 0
                else [],
                self._leaves[f"h{layer}.bias"],
                self._leaves[f"bn{layer}.weight"],
                self._leaves[f"bn{layer}.bias"],
                self.buffer_values[f"bn{layer}.running_mean"],
                self.buffer_values[f"bn{layer}.running_var"],
            )
            for layer in range(self.hidden_layers)
        ]

    def _set_member_hyperparameters(self, widths: list[int]) -> None:
        """Learning rate and weight decay per parameter element, and the dropout keep
        probability per hidden column, each from its member."""
        self.lr = self._per_element(lambda m: m.lr)
        self.weight_decay = self._per_element(lambda m: m.weight_decay)
        self._decays = bool(self.weight_decay.any())
        keep = np.repeat([1.0 - m.dropout for m in self.members], widths).astype(np.float32)
        self._keep = keep
        self._inv_keep = (1.0 / keep).astype(np.float32)
        self._drops = bool((keep < 1.0).any())
        self._keep_torch = torch.from_numpy(keep).to(self.device)
        self._inv_keep_torch = torch.from_numpy(self._inv_keep).to(self.device)

    # -- layout ----------------------------------------------------------------------

    def _param_layout(self) -> list[_Tensor]:
        k, w_all, c = len(self.members), self.total_width, self.n_outputs
        f = self.n_features - len(self.embeddings)
        layout = []
        for layer in range(self.hidden_layers):
            linear, norm = f"layers.{4 * layer}", f"layers.{4 * layer + 1}"
            if layer == 0:
                layout.append(_Tensor("h0.weight", (f, w_all), "inputs", f"{linear}.weight"))
            else:
                for g, (width, _, count) in enumerate(self.groups):
                    layout.append(
                        _Tensor(
                            f"h{layer}.weight.{g}", (count, width, width), "group",
                            f"{linear}.weight", g,
                        )
                    )  # fmt: skip
            layout.append(_Tensor(f"h{layer}.bias", (w_all,), "cols", f"{linear}.bias"))
            layout.append(_Tensor(f"bn{layer}.weight", (w_all,), "cols", f"{norm}.weight"))
            layout.append(_Tensor(f"bn{layer}.bias", (w_all,), "cols", f"{norm}.bias"))
        out = f"layers.{4 * self.hidden_layers}"
        for g, (width, _, count) in enumerate(self.groups):
            # (outputs, width) per member: the output layer makes its few outputs as
            # (members, outputs, rows), and MKL's batched matmul reads a weight so laid
            # out 3-7x faster than a transposed view of (width, outputs).
            layout.append(
                _Tensor(f"out.weight.{g}", (count, c, width), "linear", f"{out}.weight", g)
            )
        layout.append(_Tensor("out.bias", (k, c), "member", f"{out}.bias"))
        for index, (_, codes, size) in enumerate(self.embeddings):
            name = f"embedded.tables.{index}.weight"
            layout.append(_Tensor(f"emb{index}", (codes, k * size), "slots", name, slot=size))
        if self.embeddings:
            sizes = sum(size for _, _, size in self.embeddings)
            for g, (width, _, count) in enumerate(self.groups):
                layout.append(
                    _Tensor(f"proj.{g}", (count, sizes, width), "group", "embedded.proj.weight", g)
                )
        return layout

    def _buffer_layout(self) -> list[_Tensor]:
        layout = []
        for layer in range(self.hidden_layers):
            norm = f"layers.{4 * layer + 1}"
            for stat in ("running_mean", "running_var"):
                layout.append(
                    _Tensor(f"bn{layer}.{stat}", (self.total_width,), "cols", f"{norm}.{stat}")
                )
        return layout

    def _part(self, spec: _Tensor, tensor: torch.Tensor, index: int) -> torch.Tensor | None:
        """Member ``index``'s part of a packed tensor (a view, shaped as in the MLP), or
        None if it has none."""
        if spec.kind == "cols":
            return tensor[self.col_offsets[index] : self.col_offsets[index + 1]]
        if spec.kind == "inputs":  # transposed: the (columns, inputs) of nn.Linear
            return tensor[:, self.col_offsets[index] : self.col_offsets[index + 1]].T
        if spec.kind == "member":
            return tensor[index]
        if spec.kind == "slots":
            return tensor[:, index * spec.slot : (index + 1) * spec.slot]
        _, first, count = self.groups[spec.group]
        if not first <= index < first + count:
            return None
        if spec.kind == "linear":
            return tensor[index - first]
        # Kept as (inputs, outputs) for the batched matmul: transposed to nn.Linear's.
        return tensor[index - first].T

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [
            part.view(spec.shape)
            for part, spec in zip(flat.split(self._sizes), self.params, strict=True)
        ]

    def _per_element(self, value: Callable[[Member], float]) -> torch.Tensor:
        flat = torch.zeros(sum(self._sizes), device=self.device)
        views = self._views(flat)
        for index, member in enumerate(self.members):
            for spec, view in zip(self.params, views, strict=True):
                part = self._part(spec, view, index)
                if part is not None:
                    part.fill_(value(member))
        return flat

    # -- members in and out ----------------------------------------------------------

    def load_member(self, index: int, state_dict: dict[str, torch.Tensor]) -> None:
        """Put an MLP ``state_dict`` into member ``index``'s place."""
        with torch.no_grad():
            for spec, view in zip(self.params, self._views(self.flat), strict=True):
                part = self._part(spec, view, index)
                if part is not None:
                    part.copy_(state_dict[spec.mlp_name])
            for spec in self.buffers:
                part = self._part(spec, self.buffer_values[spec.name], index)
                assert part is not None
                part.copy_(state_dict[spec.mlp_name])

    def member_state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index`` as the unpacked MLP's ``state_dict``."""
        state: dict[str, torch.Tensor] = {}
        for spec, view in zip(self.params, self._views(self.flat), strict=True):
            part = self._part(spec, view, index)
            if part is not None:
                state[spec.mlp_name] = _copy(part)
        for spec in self.buffers:
            part = self._part(spec, self.buffer_values[spec.name], index)
            assert part is not None
            state[spec.mlp_name] = _copy(part)
        for layer in range(self.hidden_layers):
            tracked = torch.tensor(self.num_batches_tracked, dtype=torch.long)
            state[f"layers.{4 * layer + 1}.num_batches_tracked"] = tracked
        return state

    def member_moments(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Member ``index``'s Adam moments (exp_avg, exp_avg_sq) by MLP parameter name."""
        moments: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] = ({}, {})
        for moment, flat in zip(moments, (self.exp_avg, self.exp_avg_sq), strict=True):
            for spec, view in zip(self.params, self._views(flat), strict=True):
                part = self._part(spec, view, index)
                if part is not None:
                    moment[spec.mlp_name] = _copy(part)
        return moments

    def load_moments(
        self, index: int, exp_avg: dict[str, torch.Tensor], exp_avg_sq: dict[str, torch.Tensor]
    ) -> None:
        for moment, flat in ((exp_avg, self.exp_avg), (exp_avg_sq, self.exp_avg_sq)):
            for spec, view in zip(self.params, self._views(flat), strict=True):
                part = self._part(spec, view, index)
                if part is not None:
                    part.copy_(moment[spec.mlp_name])

    def member_optimizer_state(self, index: int) -> dict[str, Any]:
        """Member ``index``'s torch.optim.Adam ``state_dict``, as an unpacked trial saves it."""
        member = self.members[index]
        exp_avg, exp_avg_sq = self.member_moments(index)
        names = [name for name, _ in _mlp_parameter_names(self.hidden_layers, len(self.embeddings))]
        return {
            "state": {
                position: {
                    "step": torch.tensor(float(self.step)),
                    "exp_avg": exp_avg[name],
                    "exp_avg_sq": exp_avg_sq[name],
                }
                for position, name in enumerate(names)
            },
            "param_groups": [
                {
                    "lr": member.lr,
                    "betas": ADAM_BETAS,
                    "eps": ADAM_EPS,
                    "weight_decay": member.weight_decay,
                    "amsgrad": False,
                    "maximize": False,
                    "foreach": None,
                    "capturable": False,
                    "differentiable": False,
                    "fused": True,
                    "params": list(range(len(names))),
                }
            ],
        }

    # -- computing -------------------------------------------------------------------

    def forward(self, x: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Outputs (rows, members, outputs). ``rng`` draws dropout masks when training."""
        views = self._leaves
        if self.embeddings:
            codes = x.index_select(1, self._code_index).long()
            x = x.index_select(1, self._other_index)
        h = torch.addmm(views["h0.bias"], x, views["h0.weight"])
        if self.embeddings:
            h = h + self._embedded(codes)
        for layer, (weights, bias, scale, shift, mean, var) in enumerate(self._layers):
            if layer > 0:
                h = self._grouped(h, weights) + bias
            h = nn.functional.batch_norm(
                h, mean, var, scale, shift,
                training=self.training, momentum=BN_MOMENTUM, eps=BN_EPS,
            )  # fmt: skip
            h = torch.relu(h)
            if self.training and self._drops:
                h = h * self._dropout_multiplier(tuple(h.shape), rng)
        return self._grouped(h, self._out_weights, flatten=False) + views["out.bias"]

    def _grouped(
        self, h: torch.Tensor, weights: list[torch.Tensor], flatten: bool = True
    ) -> torch.Tensor:
        """Each member's columns of ``h`` through its own layer: one batched matmul per
        width. Hidden layers: weights (count, inputs, outputs), (rows, columns) out. The
        output layer (``flatten`` False): weights (count, outputs, inputs), (rows,
        members, outputs) out."""
        rows, parts = len(h), []
        # Split, not sliced: a slice's backward fills a zero tensor of all of h's columns
        # per group; a split's is one concatenation.
        columns = h.split(self._group_widths, dim=1) if len(self._group_widths) > 1 else (h,)
        for (_, _, count, width), weight, part in zip(
            self._group_columns, weights, columns, strict=True
        ):
            part = part.reshape(rows, count, width)
            if flatten:
                # (count, rows, inputs) @ (count, inputs, outputs) -> (count, rows, outputs)
                out = torch.bmm(part.transpose(0, 1), weight).transpose(0, 1)
                parts.append(out.reshape(rows, -1))
            else:
                # The few outputs made as (count, outputs, rows): MKL's batched matmul
                # is 4-5x faster so than as (count, rows, outputs).
                out = torch.bmm(weight, part.permute(1, 2, 0))
                parts.append(out.permute(2, 0, 1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _embedded(self, codes: torch.Tensor) -> torch.Tensor:
        """The embedded columns' share of the first hidden layer, (rows, columns): every
        member's vectors from one lookup per table, then each member's own map."""
        rows, k = len(codes), len(self.members)
        vectors = torch.cat(
            [
                table[codes[:, c]].view(rows, k, -1)  # (rows, members, vector size)
                for c, table in enumerate(self._tables)
            ],
            dim=2,
        )
        parts = []
        for (_, first, count), weight in zip(self.groups, self._maps, strict=True):
            part = vectors[:, first : first + count].transpose(0, 1)  # (count, rows, sizes)
            parts.append(torch.bmm(part, weight).transpose(0, 1).reshape(rows, -1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _dropout_multiplier(
        self,
        shape: tuple[int, ...],
        rng: np.random.Generator | None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Each column's dropout mask, scaled by 1 / keep (into ``out`` if given). On
        the CPU, NumPy's generator draws one uniform number per row and column of each
        width, which every member of that width compares with its own keep probability:
        each mask keeps its member's rate, and a pack of the seed grid draws ~1/8 of the
        numbers (drawing was ~3/4 of the mask's time, and the mask ~1/5 of a step at
        batch size 512)."""
        if out is None:
            out = torch.empty(shape, device=self.device)
        if self.device.type == "cpu" and rng is not None:
            rows = shape[0]
            draws = rng.random((rows, self._draw_width), dtype=np.float32)
            target = out.numpy()
            for (start, end, count, width), offset in zip(
                self._group_columns, self._draw_offsets[:-1], strict=True
            ):
                np.less(
                    draws[:, None, offset : offset + width],
                    self._keep[start:end].reshape(count, width),
                    out=target[:, start:end].reshape(rows, count, width),
                )
            target *= self._inv_keep
            return out
        torch.lt(torch.rand(shape, device=self.device), self._keep_torch, out=out)
        return out.mul_(self._inv_keep_torch)

    def adam_step(self) -> None:
        """torch.optim.Adam's update (L2 weight decay, no amsgrad), every element with
        its own member's learning rate and weight decay: torch.optim.Adam's fused kernel
        at a learning rate of 1 writes each element's step into a scratch tensor (one
        pass over the moments, against seven element-wise operations), which is then
        scaled by each element's learning rate."""
        self.step += 1
        with torch.no_grad():
            if self._decays:
                self.flat_grad.addcmul_(self.flat, self.weight_decay)
            self._update.zero_()
            self._step_count.fill_(self.step)
            torch._fused_adam_(
                [self._update], [self.flat_grad], [self.exp_avg], [self.exp_avg_sq], [],
                [self._step_count], lr=1.0, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False,
            )  # fmt: skip
            self.flat.addcmul_(self._update, self.lr)

    def member_losses(
        self, outputs: torch.Tensor, y: torch.Tensor, regression: bool
    ) -> torch.Tensor:
        """Each member's mean loss over the rows: (members,)."""
        if regression:
            return ((outputs[:, :, 0] - y[:, None]) ** 2).mean(dim=0)
        rows, count, _ = outputs.shape
        # (rows, classes, members) against (rows, members): one loss per row and member.
        losses = nn.functional.cross_entropy(
            outputs.transpose(1, 2), y[:, None].expand(rows, count), reduction="none"
        )
        return losses.mean(dim=0)

    def autograd_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        regression: bool,
        rng: np.random.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One training step through autograd (packs with embedded columns; see
        services.driver.packed.step for the rest): each member's mean loss over the
        batch, and its predicted classes (members, rows)."""
        self.training = True
        outputs = self.forward(x, rng)
        losses = self.member_losses(outputs, y, regression)
        self.flat_grad.zero_()
        losses.sum().backward()
        self.adam_step()
        predictions = None if regression else outputs.detach().max(dim=2).indices.t()
        return losses.detach(), predictions

    @torch.no_grad()
    def outputs_in_chunks(self, x: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        """Outputs for many rows, a bounded number of cells at a time."""
        self.training = False
        rows = max(1, EVAL_CELLS // max(1, self.total_width))
        forward = self.forward if self.embeddings else self._folded_forward()
        for start in range(0, len(x), rows):
            yield slice(start, start + rows), forward(x[start : start + rows])

    def _folded_forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The forward pass in evaluation mode with each BatchNorm folded into the
        layer before it (an affine map per column: scale the layer's weights and bias),
        so that a hidden layer is a matmul and a ReLU: two passes over its activations
        where Linear, BatchNorm and ReLU are four (validation is memory-bound)."""
        folded = []
        for layer, (weights, bias, scale, shift, mean, var) in enumerate(self._layers):
            factor = scale.detach() * torch.rsqrt(var + BN_EPS)
            offset = (bias.detach() - mean) * factor + shift.detach()
            if layer == 0:
                folded.append(([self._leaves["h0.weight"].detach() * factor], offset))
                continue
            parts = factor.split(self._group_widths)
            scaled = [
                w.detach() * part.view(count, 1, width)
                for w, part, (_, _, count, width) in zip(
                    weights, parts, self._group_columns, strict=True
                )
            ]
            folded.append((scaled, offset))
        out_weights = [w.detach() for w in self._out_weights]
        out_bias = self._leaves["out.bias"].detach()

        def forward(x: torch.Tensor) -> torch.Tensor:
            h = x
            for layer, (weights, offset) in enumerate(folded):
                if layer == 0:
                    h = torch.addmm(offset, h, weights[0])
                else:
                    h = self._grouped(h, weights).add_(offset)
                h.relu_()
            return self._grouped(h, out_weights, flatten=False) + out_bias

        return forward


def member_bytes(
    n_features: int,
    n_outputs: int,
    hidden_units: int,
    hidden_layers: int,
    batch_size: int,
    embeddings: list[list[int]] | None = None,
) -> int:
    """About the most bytes one member of a pack takes in its epoch's task (float32).

    Its parameters 9 times over: the weights, their gradient, Adam's two moments and
    the step's two scratch buffers (6), and the weights and moments of the state it came
    in with and leaves with (3). Its BatchNorm statistics. Its activations for a batch,
    about 8 tensors per hidden layer kept for the backward pass and the dropout masks,
    and for evaluation (EVAL_CELLS bounds those)."""
    layout = embeddings or []
    h, layers = hidden_units, hidden_layers
    dense = n_features - len(layout)
    parameters = (dense + 3) * h + (layers - 1) * (h + 3) * h + (h + 1) * n_outputs
    if layout:
        sizes = sum(size for _, _, size in layout)
        parameters += sum(codes * size for _, codes, size in layout) + sizes * h
    activations = 8 * batch_size * h * layers
    return 4 * (9 * parameters + 2 * h * layers + activations)


def _copy(part: torch.Tensor) -> torch.Tensor:
    """A member's part on its own: contiguous, on the CPU (as a state_dict holds it)."""
    return part.clone(memory_format=torch.contiguous_format).cpu()


def _mlp_parameter_names(hidden_layers: int, tables: int = 0) -> list[tuple[str, str]]:
    """(name, kind) of MLP's parameters in ``model.parameters()`` order."""
    names = []
    for layer in range(hidden_layers):
        for module in (4 * layer, 4 * layer + 1):
            names += [(f"layers.{module}.weight", "w"), (f"layers.{module}.bias", "b")]
    out = 4 * hidden_layers
    names += [(f"layers.{out}.weight", "w"), (f"layers.{out}.bias", "b")]
    if tables:
        names += [(f"embedded.tables.{c}.weight", "w") for c in range(tables)]
        names.append(("embedded.proj.weight", "w"))
    return names


def initial_state_dict(
    n_features: int,
    n_outputs: int,
    hidden_units: int,
    hidden_layers: int,
    seed: int,
    embeddings: list[list[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """The weights an unpacked trial starts from with the same seed."""
    torch.manual_seed(seed)
    model = MLP(
        n_features, n_outputs, hidden_units, hidden_layers, seed=seed, embeddings=embeddings
    )
    return model.state_dict()
