"""A pack's training step written out: forward pass, loss and backward pass by hand.

Autograd records a graph node per operation and walks it back; at the seed grid's
sizes that bookkeeping, not the arithmetic, was most of a step (about 70 operations,
forward and backward, at 5-20 us each for 8 rows). Written out, a step is about 45
operations that write into buffers kept for the whole epoch, and every parameter's
gradient is written whole into its place in the pack's flat gradient (nothing to zero
first).

Activations are (rows, columns), as the autograd path keeps them: element-wise
operations then run along the long axis (columns; a (columns, rows) layout measured
several times slower at 8 rows), and each width group's block of columns is a strided
view (members, rows, width) that the batched matmuls read and write in place.

The arithmetic is the unpacked MLP's (Linear, BatchNorm1d in training mode, ReLU,
Dropout, cross-entropy or mean squared error): each member's gradient is the one
autograd gives it alone, to rounding, but for the bias before BatchNorm (see
``_backward_hidden``). Packs with embedded columns train through autograd
(PackedMLP.autograd_step).

With many more rows a batch than inputs, the first layer's BatchNorm is taken from the
inputs' statistics rather than from its own columns (``_hidden_folded``): its columns
are linear in the inputs, so their means and variances, and every sum over the rows
the backward pass needs, follow from the inputs' mean and (inputs, inputs) scatter
matrix. BatchNorm then folds into the layer's matmul: of the ten passes over the
(rows, columns) activations that its statistics, normalisation and backward pass took,
one is left (the sum of its output's gradient).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from services.driver.packed.network import BN_EPS, BN_MOMENTUM, PackedMLP

# Rows a batch, per input of the first layer, from which its BatchNorm is folded (see
# the module's docstring): below it, the (inputs, columns) passes the folded form makes
# cost more than the (rows, columns) passes it saves.
FOLD_ROWS_PER_INPUT = 3


class HandStep:
    """Training steps of one pack on batches of ``rows`` rows.

    Every view a step reads or writes (each width group's block of an activation, each
    weight and gradient, transposed where a matmul wants it) is made once here: at 8
    rows a step's few dozen operations are what it costs, and making ~100 views a step
    was a tenth of it."""

    def __init__(
        self, pack: PackedMLP, rows: int, regression: bool, fold_first: bool | None = None
    ) -> None:
        """``fold_first``: the first layer's BatchNorm from the inputs' statistics (see
        the module's docstring); by default where a batch has ``FOLD_ROWS_PER_INPUT``
        times as many rows as the layer has inputs."""
        if rows < 2:
            raise ValueError("BatchNorm in training needs at least 2 rows a batch")
        self.pack, self.rows, self.regression = pack, rows, regression
        width, count, layers = pack.total_width, len(pack.members), pack.hidden_layers
        inputs = pack.n_features
        if fold_first is None:
            fold_first = rows >= FOLD_ROWS_PER_INPUT * inputs
        self.fold_first = fold_first

        def new(*shape: int) -> torch.Tensor:
            return torch.empty(shape, device=pack.device)

        # Per hidden layer: its input to BatchNorm, centred (then, going back, the
        # gradient with respect to it); the multiplier that is ReLU and dropout in one
        # (0, or 1 / keep); the layer's output.
        self.centred = [
            torch.empty(0) if layer == 0 and fold_first else new(rows, width)
            for layer in range(layers)
        ]
        self.multiplier = [new(rows, width) for _ in range(layers)]
        self.output = [new(rows, width) for _ in range(layers)]
        self.grad_output = new(rows, width)  # with respect to a layer's output
        # Outputs as (members, outputs, rows): MKL's batched matmul is 4-5x faster
        # making a few outputs per row so than (members, rows, outputs).
        self.logits = new(count, pack.n_outputs, rows)
        self.shifted = new(count, pack.n_outputs, rows)  # logits less each row's largest
        self.grad_logits = new(count, pack.n_outputs, rows)
        self.rstd: list[torch.Tensor] = [torch.empty(0)] * layers
        self.scale: list[torch.Tensor] = [torch.empty(0)] * layers
        names = [t.name for t in pack.params]
        weight = dict(zip(names, pack._views(pack.flat), strict=True))
        grad = dict(zip(names, pack._views(pack.flat_grad), strict=True))
        self._layers = [self._layer_views(layer, weight, grad) for layer in range(layers)]
        self._w0, self._grad_w0 = weight["h0.weight"], grad["h0.weight"]
        # The folded first layer's (inputs, columns) scratch: the scatter matrix times
        # the weights, the weights times BatchNorm's scale, and a gradient's.
        scratch = (inputs, width) if fold_first else (0,)
        self._scatter_w, self._scaled_w0, self._grad_scratch = (new(*scratch) for _ in range(3))
        self._input_mean = torch.empty(0)
        self._out_bias = weight["out.bias"][:, :, None]
        self._grad_out_bias = grad["out.bias"]
        groups = range(len(pack.groups))
        # (members, outputs, width): the output layer's weights and their gradients.
        self._out = [weight[f"out.weight.{g}"] for g in groups]
        self._grad_out = [grad[f"out.weight.{g}"] for g in groups]
        self._logit_blocks = self._member_blocks(self.logits)
        self._grad_logit_blocks = self._member_blocks(self.grad_logits)
        self._grad_logit_blocks_t = [block.transpose(1, 2) for block in self._grad_logit_blocks]
        self._grad_output_blocks = self._blocks(self.grad_output)

    def _blocks(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Each width group's block of a (rows, columns) tensor, as (members, rows, width)."""
        return [
            tensor[:, start:end].view(self.rows, count, width).transpose(0, 1)
            for start, end, count, width in self.pack._group_columns
        ]

    def _member_blocks(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Each width group's members of a (members, ...) tensor."""
        return [tensor[first : first + count] for _, first, count in self.pack.groups]

    def _layer_views(
        self, layer: int, weight: dict[str, torch.Tensor], grad: dict[str, torch.Tensor]
    ) -> dict[str, Any]:
        """A hidden layer's parameters, buffers and blocks, as its step uses them."""
        groups = range(len(self.pack.groups))
        views: dict[str, Any] = {
            "bias": weight[f"h{layer}.bias"],
            "grad_bias": grad[f"h{layer}.bias"],
            "bn_scale": weight[f"bn{layer}.weight"],
            "bn_shift": weight[f"bn{layer}.bias"],
            "grad_bn_scale": grad[f"bn{layer}.weight"],
            "grad_bn_shift": grad[f"bn{layer}.bias"],
            "running_mean": self.pack.buffer_values[f"bn{layer}.running_mean"],
            "running_var": self.pack.buffer_values[f"bn{layer}.running_var"],
            # Beneath the first layer only: it makes its own with one matmul.
            "centred_blocks": self._blocks(self.centred[layer]) if layer else [],
            "output_blocks": self._blocks(self.output[layer]),
        }
        views["output_blocks_t"] = [block.transpose(1, 2) for block in views["output_blocks"]]
        if layer > 0:  # (members, inputs, outputs) per width, and transposed
            views["weights"] = [weight[f"h{layer}.weight.{g}"] for g in groups]
            views["weights_t"] = [w.transpose(1, 2) for w in views["weights"]]
            views["grads"] = [grad[f"h{layer}.weight.{g}"] for g in groups]
        return views

    # -- forward ---------------------------------------------------------------------

    def _hidden(self, layer: int, x: torch.Tensor, rng: np.random.Generator | None) -> None:
        views, centred, rows = self._layers[layer], self.centred[layer], self.rows
        if layer == 0:
            torch.addmm(views["bias"], x, self._w0, out=centred)
        else:
            below = self._layers[layer - 1]["output_blocks"]
            for block, part, weight in zip(
                views["centred_blocks"], below, views["weights"], strict=True
            ):
                torch.bmm(part, weight, out=block)
            centred.add_(views["bias"])
        # Not torch.var_mean: its one-pass (Welford) kernel is ~15x slower on the CPU
        # than a sum, a subtraction and a dot product.
        mean = torch.sum(centred, dim=0).div_(rows)
        centred.sub_(mean)
        var = torch.linalg.vecdot(centred, centred, dim=0).div_(rows)
        views["running_mean"].lerp_(mean, BN_MOMENTUM)
        views["running_var"].lerp_(var * (rows / (rows - 1)), BN_MOMENTUM)
        rstd = (var + BN_EPS).rsqrt_()
        scale = views["bn_scale"] * rstd
        self.rstd[layer], self.scale[layer] = rstd, scale
        torch.addcmul(views["bn_shift"], centred, scale, out=self.output[layer])
        self._activate(layer, rng)

    def _activate(self, layer: int, rng: np.random.Generator | None) -> None:
        """ReLU and dropout on the layer's BatchNorm output, in place, keeping their
        product's multiplier for the backward pass."""
        pack, output, multiplier = self.pack, self.output[layer], self.multiplier[layer]
        if pack._drops:
            # The autograd path's masks (the same numbers in the same order, so that a
            # pack of one draws an unpacked trial's), into the buffer.
            pack._dropout_multiplier((self.rows, pack.total_width), rng, out=multiplier)
            # ReLU's gate as floats, in a buffer free until the backward pass: a bool
            # tensor multiplied in is ~3x slower (it is converted first).
            gate = torch.gt(output, 0, out=self.grad_output)
            multiplier.mul_(gate)
        else:
            torch.gt(output, 0, out=multiplier)
        output.mul_(multiplier)

    def _hidden_folded(self, x: torch.Tensor, rng: np.random.Generator | None) -> None:
        """The first layer with BatchNorm's statistics from the inputs': its columns are
        ``x @ w + b``, so over the batch their means are ``mean(x) @ w + b`` and their
        variances ``w' S w / rows`` per column, S the inputs' scatter matrix (centred
        x' x). Normalised, the layer is one matmul: ``x @ (w * scale) + shift -
        (mean(x) @ w) * scale``."""
        views, rows, w = self._layers[0], self.rows, self._w0
        mu = x.mean(dim=0)
        centred_x = x - mu
        scatter_w = torch.mm(centred_x.t() @ centred_x, w, out=self._scatter_w)
        # A quadratic form, so never below zero but by rounding.
        var = torch.linalg.vecdot(w, scatter_w, dim=0).div_(rows).clamp_(min=0.0)
        mean_xw = mu @ w
        views["running_mean"].lerp_(mean_xw + views["bias"], BN_MOMENTUM)
        views["running_var"].lerp_(var * (rows / (rows - 1)), BN_MOMENTUM)
        rstd = (var + BN_EPS).rsqrt_()
        scale = views["bn_scale"] * rstd
        self.rstd[0], self.scale[0], self._input_mean = rstd, scale, mu
        shift = torch.addcmul(views["bn_shift"], mean_xw, scale, value=-1.0)
        torch.addmm(shift, x, torch.mul(w, scale, out=self._scaled_w0), out=self.output[0])
        self._activate(0, rng)

    def _logits(self) -> None:
        last = self._layers[-1]["output_blocks_t"]
        for block, part, weight in zip(self._logit_blocks, last, self._out, strict=True):
            torch.bmm(weight, part, out=block)
        self.logits.add_(self._out_bias)

    # -- loss ------------------------------------------------------------------------

    def _loss(
        self, y: torch.Tensor, onehot: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's mean loss and (classes) its predicted class per row; leaves
        the loss's gradient with respect to the logits in ``grad_logits``."""
        rows = self.rows
        if self.regression:
            grad = torch.sub(self.logits, y, out=self.grad_logits)
            losses = torch.linalg.vecdot(grad, grad, dim=2)[:, 0] / rows
            grad.mul_(2.0 / rows)
            return losses, None
        assert onehot is not None
        # Softmax by hand: torch.max gives the largest logit and its class in one pass
        # (argmax along this axis is 10-20x slower), and the softmax is the gradient's.
        top, predicted = torch.max(self.logits, dim=1, keepdim=True)
        shifted = torch.sub(self.logits, top, out=self.shifted)
        probs = torch.exp(shifted, out=self.grad_logits)
        total = probs.sum(dim=1, keepdim=True)
        # d(mean cross-entropy)/d logits = (softmax - one-hot) / rows
        probs.div_(total).sub_(onehot).mul_(1.0 / rows)
        # cross-entropy = log(sum(exp(shifted))) - shifted[target], per row
        picked = torch.linalg.vecdot(shifted, onehot, dim=1).sum(dim=1)
        losses = total.log_().sum(dim=(1, 2)).sub_(picked).div_(rows)
        return losses, predicted[:, 0]

    # -- backward --------------------------------------------------------------------

    def _backward_output(self) -> None:
        torch.sum(self.grad_logits, dim=2, out=self._grad_out_bias)
        blocks = zip(
            self._layers[-1]["output_blocks"],
            self._grad_logit_blocks,
            self._grad_logit_blocks_t,
            self._grad_output_blocks,
            self._out,
            self._grad_out,
            strict=True,
        )
        for part, grad_block, grad_block_t, grad_part, weight, grad_weight in blocks:
            torch.bmm(grad_block, part, out=grad_weight)
            torch.bmm(grad_block_t, weight, out=grad_part)

    def _backward_hidden(self, layer: int, x: torch.Tensor) -> None:
        """From the gradient with respect to the layer's output (``grad_output``) to its
        parameters' gradients and, above the first layer, to the gradient with respect
        to the output of the layer beneath."""
        views, rows = self._layers[layer], self.rows
        grad_bn = self.grad_output.mul_(self.multiplier[layer])  # w.r.t. BatchNorm's output
        centred, rstd, scale = self.centred[layer], self.rstd[layer], self.scale[layer]
        grad_shift = torch.sum(grad_bn, dim=0, out=views["grad_bn_shift"])
        grad_scale = torch.mul(
            torch.linalg.vecdot(grad_bn, centred, dim=0), rstd, out=views["grad_bn_scale"]
        )
        # BatchNorm's backward in training mode, per column:
        # dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat)), x_hat = centred * rstd
        slope = scale * rstd * grad_scale * (-1.0 / rows)
        offset = scale * grad_shift * (-1.0 / rows)
        grad_in = torch.addcmul(offset, centred, slope, out=centred)
        grad_in.addcmul_(grad_bn, scale)
        # The bias before BatchNorm has no true gradient (BatchNorm subtracts it again):
        # its gradient is set to that zero rather than to the rounding noise a sum over
        # the rows gives, which Adam would scale up into a random walk of the bias
        # (one that depends on the pack's other members, through the rounding) and of
        # BatchNorm's running mean that follows it.
        views["grad_bias"].zero_()
        if layer == 0:
            torch.mm(x.t(), grad_in, out=self._grad_w0)
            return
        blocks = zip(
            self._layers[layer - 1]["output_blocks_t"],
            views["centred_blocks"],  # now the gradient with respect to the layer's input
            self._grad_output_blocks,
            views["weights_t"],
            views["grads"],
            strict=True,
        )
        for part_t, grad_block, grad_part, weight_t, grad_weight in blocks:
            torch.bmm(part_t, grad_block, out=grad_weight)
            torch.bmm(grad_block, weight_t, out=grad_part)

    def _backward_folded(self, x: torch.Tensor) -> None:
        """The folded first layer's backward pass (see ``_hidden_folded``): with ``g``
        the gradient with respect to BatchNorm's output and ``G = x' g``, BatchNorm's
        sum of ``g`` times the centred columns is ``sum(w * (G - mean(x) sum(g)))`` per
        column, and the weights' gradient ``x' dx`` is ``G * scale + sum(x) offset' +
        S w * slope``, with ``dx = scale * g + offset + slope * centred`` as in
        ``_backward_hidden``."""
        views, rows, w = self._layers[0], self.rows, self._w0
        grad_bn = self.grad_output.mul_(self.multiplier[0])
        rstd, scale, mu = self.rstd[0], self.scale[0], self._input_mean
        grad_shift = torch.sum(grad_bn, dim=0, out=views["grad_bn_shift"])
        x_grad = torch.mm(x.t(), grad_bn, out=self._grad_w0)  # G, then the gradient
        centred_grad = torch.addr(x_grad, mu, grad_shift, alpha=-1.0, out=self._grad_scratch)
        grad_scale = torch.mul(
            torch.linalg.vecdot(w, centred_grad, dim=0), rstd, out=views["grad_bn_scale"]
        )
        slope = scale * rstd * grad_scale * (-1.0 / rows)
        offset = scale * grad_shift * (-1.0 / rows)
        x_grad.mul_(scale).addr_(mu * rows, offset).addcmul_(self._scatter_w, slope)
        views["grad_bias"].zero_()  # as in _backward_hidden

    # -- a step ----------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        onehot: torch.Tensor | None,
        rng: np.random.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step on a batch: ``x`` (rows, features), ``y`` the targets, ``onehot``
        the classes one-hot (classes, rows; None for regression). Each member's mean
        loss over the batch, and its predicted classes (members, rows)."""
        for layer in range(self.pack.hidden_layers):
            if layer == 0 and self.fold_first:
                self._hidden_folded(x, rng)
            else:
                self._hidden(layer, x, rng)
        self._logits()
        losses, predictions = self._loss(y, onehot)
        self._backward_output()
        for layer in reversed(range(self.pack.hidden_layers)):
            if layer == 0 and self.fold_first:
                self._backward_folded(x)
            else:
                self._backward_hidden(layer, x)
        self.pack.adam_step()
        return losses, predictions


def train_epoch(
    pack: PackedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    regression: bool,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch over ``order``'s rows: each member's mean loss and correct count."""
    # Full batches only (the seed's drop_last), but at least one batch on tiny data.
    n_batches = max(1, len(order) // batch_size)
    # The epoch's rows gathered once; each batch is then a view, not a gather.
    trained = order[: n_batches * batch_size]
    x_epoch, y_epoch = x[trained], y[trained]
    rows = len(trained) // n_batches
    onehot = None
    if not regression:
        classes = torch.nn.functional.one_hot(y_epoch, pack.n_outputs)
        onehot = classes.t().to(x_epoch.dtype)  # (classes, rows of the epoch)
    hand = HandStep(pack, rows, regression) if rows >= 2 and not pack.embeddings else None
    # Kept per step and summed once at the end: fewer operations in a step that is
    # mostly dispatch at small batch sizes.
    losses_seen: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    for start in range(0, n_batches * rows, rows):
        batch = slice(start, start + rows)
        if hand is not None:
            part = None if onehot is None else onehot[:, batch]
            losses, predicted = hand(x_epoch[batch], y_epoch[batch], part, rng)
        else:
            losses, predicted = pack.autograd_step(x_epoch[batch], y_epoch[batch], regression, rng)
        losses_seen.append(losses)
        if predicted is not None:
            predictions.append(predicted)
    pack.num_batches_tracked += n_batches
    # Batches are all of one size, so the mean of their means is the mean per row.
    mean_loss = torch.stack(losses_seen).mean(dim=0)
    correct = torch.zeros(len(pack.members), device=pack.device, dtype=torch.long)
    if predictions:
        correct = (torch.cat(predictions, dim=1) == y_epoch[None, :]).sum(dim=1)
    return mean_loss, correct
