"""The untrained model's evaluation, made after the first training step rather than before it.

A person who presses `s` in the Train tab waits for everything before the first loss appears;
the step-0 evaluation (the untrained model's training and validation loss, the reference point
near ln V, and its sample) is over a second of that on a laptop. So a fresh run trains its first
step and shows its loss first, and then evaluates a copy of the weights it started from, taken
before that step: the same figures, in the same files, a moment later. Nothing else changes (the
evaluation draws no random numbers, so every later step computes what it did before). Under
torchrun the ranks evaluate together, so there it stays first.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class StartingWeights:
    """A copy of a model's weights, to evaluate them after the model has moved on."""

    def __init__(self, model: torch.nn.Module):
        self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """The model holds the copied weights inside the block, its own again after it (in place,
        so an optimizer's references to the parameters stay valid)."""
        current = {name: value.detach().clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(current)
