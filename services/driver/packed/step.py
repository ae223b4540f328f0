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
"""

from __future__ import annotations

import numpy as np
import torch

from services.driver.packed.network import BN_EPS, BN_MOMENTUM, PackedMLP


class HandStep:
    """Training steps of one pack on batches of ``rows`` rows."""

    def __init__(self, pack: PackedMLP, rows: int, regression: bool) -> None:
        if rows < 2:
            raise ValueError("BatchNorm in training needs at least 2 rows a batch")
        self.pack, self.rows, self.regression = pack, rows, regression
        width, count = pack.total_width, len(pack.members)

        def new(*shape: int) -> torch.Tensor:
            return torch.empty(shape, device=pack.device)

        layers = range(pack.hidden_layers)
        # Per hidden layer: its input to BatchNorm, centred (then, going back, the
        # gradient with respect to it); the multiplier that is ReLU and dropout in one
        # (0, or 1 / keep); the layer's output.
        self.centred = [new(rows, width) for _ in layers]
        self.multiplier = [new(rows, width) for _ in layers]
        self.output = [new(rows, width) for _ in layers]
        self.rstd: list[torch.Tensor] = [torch.empty(0)] * pack.hidden_layers
        self.scale: list[torch.Tensor] = [torch.empty(0)] * pack.hidden_layers
        self.grad_output = new(rows, width)  # with respect to a layer's output
        # Outputs as (members, outputs, rows): MKL's batched matmul is 4-5x faster
        # making a few outputs per row so than (members, rows, outputs).
        self.logits = new(count, pack.n_outputs, rows)
        self.log_probs = new(count, pack.n_outputs, rows)
        names = [t.name for t in pack.params]
        self.weight = dict(zip(names, pack._views(pack.flat), strict=True))
        self.grad = dict(zip(names, pack._views(pack.flat_grad), strict=True))

    def _groups(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Each width group's block of a (rows, columns) tensor, as (members, rows, width)."""
        return [
            tensor[:, start:end].view(self.rows, count, width).transpose(0, 1)
            for start, end, count, width in self.pack._group_columns
        ]

    def _member_groups(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Each width group's members of a (members, ...) tensor."""
        return [tensor[first : first + count] for _, first, count in self.pack.groups]

    # -- forward ---------------------------------------------------------------------

    def _hidden(self, layer: int, x: torch.Tensor, rng: np.random.Generator | None) -> None:
        pack, w = self.pack, self.weight
        centred = self.centred[layer]
        if layer == 0:
            torch.addmm(w["h0.bias"], x, w["h0.weight"], out=centred)
        else:
            inputs = self._groups(self.output[layer - 1])
            for g, (block, part) in enumerate(zip(self._groups(centred), inputs, strict=True)):
                torch.bmm(part, w[f"h{layer}.weight.{g}"], out=block)
            centred.add_(w[f"h{layer}.bias"])
        # Not torch.var_mean: its one-pass (Welford) kernel is ~15x slower on the CPU
        # than a sum, a subtraction and a dot product.
        mean = torch.sum(centred, dim=0).div_(self.rows)
        centred.sub_(mean)
        var = torch.linalg.vecdot(centred, centred, dim=0).div_(self.rows)
        pack.buffer_values[f"bn{layer}.running_mean"].lerp_(mean, BN_MOMENTUM)
        unbiased = var * (self.rows / (self.rows - 1))
        pack.buffer_values[f"bn{layer}.running_var"].lerp_(unbiased, BN_MOMENTUM)
        rstd = (var + BN_EPS).rsqrt_()
        scale = w[f"bn{layer}.weight"] * rstd
        self.rstd[layer], self.scale[layer] = rstd, scale
        output = torch.addcmul(w[f"bn{layer}.bias"], centred, scale, out=self.output[layer])
        multiplier = self.multiplier[layer]
        if pack._drops:
            self._dropout(multiplier, rng)
            # ReLU's gate as floats, in a buffer free until the backward pass: a bool
            # tensor multiplied in is ~3x slower (it is converted first).
            gate = torch.gt(output, 0, out=self.grad_output)
            multiplier.mul_(gate)
        else:
            torch.gt(output, 0, out=multiplier)
        output.mul_(multiplier)

    def _dropout(self, out: torch.Tensor, rng: np.random.Generator | None) -> None:
        """Each column's dropout mask scaled by 1 / keep, into ``out``: on the CPU from
        the uniform numbers PackedMLP._dropout_multiplier draws (the same numbers in
        the same order, so that a pack of one draws an unpacked trial's masks)."""
        pack = self.pack
        if pack.device.type != "cpu" or rng is None:
            torch.lt(torch.rand(out.shape, device=pack.device), pack._keep_torch, out=out)
            out.mul_(pack._inv_keep_torch)
            return
        rows = self.rows
        draws = rng.random((rows, pack._draw_width), dtype=np.float32)
        target = out.numpy()
        for (start, end, count, width), offset in zip(
            pack._group_columns, pack._draw_offsets[:-1], strict=True
        ):
            np.less(
                draws[:, None, offset : offset + width],
                pack._keep[start:end].reshape(count, width),
                out=target[:, start:end].reshape(rows, count, width),
            )
        target *= pack._inv_keep

    def _logits(self) -> None:
        last = self._groups(self.output[-1])
        for g, (block, part) in enumerate(zip(self._member_groups(self.logits), last, strict=True)):
            weight = self.weight[f"out.weight.{g}"]
            torch.bmm(weight.transpose(1, 2), part.transpose(1, 2), out=block)
        self.logits.add_(self.weight["out.bias"][:, :, None])

    # -- loss ------------------------------------------------------------------------

    def _loss(self, y: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        """Each member's mean loss; leaves the loss's gradient with respect to the
        logits in ``log_probs``."""
        if self.regression:
            grad = torch.sub(self.logits, y, out=self.log_probs)
            losses = torch.linalg.vecdot(grad, grad, dim=2)[:, 0] / self.rows
            grad.mul_(2.0 / self.rows)
            return losses
        assert onehot is not None
        lse = torch.logsumexp(self.logits, dim=1, keepdim=True)
        log_probs = torch.sub(self.logits, lse, out=self.log_probs)
        losses = torch.linalg.vecdot(log_probs, onehot, dim=1).sum(dim=1)
        # d(mean cross-entropy)/d logits = (softmax - one-hot) / rows
        log_probs.exp_().sub_(onehot).mul_(1.0 / self.rows)
        return losses.mul_(-1.0 / self.rows)

    # -- backward --------------------------------------------------------------------

    def _backward_output(self) -> None:
        grad_logits = self.log_probs
        torch.sum(grad_logits, dim=2, out=self.grad["out.bias"])
        blocks = zip(
            self._groups(self.output[-1]),
            self._member_groups(grad_logits),
            self._groups(self.grad_output),
            strict=True,
        )
        for g, (part, grad_block, grad_part) in enumerate(blocks):
            weight = self.weight[f"out.weight.{g}"]
            # Made as (members, outputs, width) and copied: as fast, where the batched
            # matmul writing (members, width, outputs) is not.
            self.grad[f"out.weight.{g}"].copy_(torch.bmm(grad_block, part).transpose(1, 2))
            torch.bmm(grad_block.transpose(1, 2), weight.transpose(1, 2), out=grad_part)

    def _backward_hidden(self, layer: int, x: torch.Tensor) -> None:
        """From the gradient with respect to the layer's output (``grad_output``) to its
        parameters' gradients and, above the first layer, to the gradient with respect
        to the output of the layer beneath."""
        rows, grad = self.rows, self.grad
        grad_bn = self.grad_output.mul_(self.multiplier[layer])  # w.r.t. BatchNorm's output
        centred, rstd, scale = self.centred[layer], self.rstd[layer], self.scale[layer]
        grad_shift = torch.sum(grad_bn, dim=0, out=grad[f"bn{layer}.bias"])
        grad_scale = torch.mul(
            torch.linalg.vecdot(grad_bn, centred, dim=0), rstd, out=grad[f"bn{layer}.weight"]
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
        grad[f"h{layer}.bias"].zero_()
        if layer == 0:
            torch.mm(x.t(), grad_in, out=grad["h0.weight"])
            return
        blocks = zip(
            self._groups(self.output[layer - 1]),
            self._groups(grad_in),
            self._groups(self.grad_output),
            strict=True,
        )
        for g, (part, grad_block, grad_part) in enumerate(blocks):
            name = f"h{layer}.weight.{g}"
            torch.bmm(part.transpose(1, 2), grad_block, out=grad[name])
            torch.bmm(grad_block, self.weight[name].transpose(1, 2), out=grad_part)

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
            self._hidden(layer, x, rng)
        self._logits()
        predictions = None if self.regression else self.logits.argmax(dim=1)
        losses = self._loss(y, onehot)
        self._backward_output()
        for layer in reversed(range(self.pack.hidden_layers)):
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
