"""The tuned network itself: what its dropout layers do in training."""

from __future__ import annotations

import itertools

import torch

from shared.model import MLP, FastDropout


def test_each_hidden_layer_drops_units_of_its_own() -> None:
    model = MLP(n_features=6, n_outputs=3, hidden_units=64, hidden_layers=3, dropout=0.5, seed=7)
    model.train()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        if isinstance(module, FastDropout):
            module.register_forward_hook(
                lambda _module, inputs, output: seen.append((inputs[0], output))
            )
    model(torch.randn(32, 6))  # one training step's forward pass
    assert len(seen) == 3
    # ReLU zeroes some inputs: a unit shows whether it was kept only where its input
    # was not zero, so two layers are compared where neither input is.
    for (input_a, output_a), (input_b, output_b) in itertools.combinations(seen, 2):
        both = (input_a != 0) & (input_b != 0)
        assert int(both.sum()) > 100
        assert not torch.equal((output_a != 0)[both], (output_b != 0)[both])
