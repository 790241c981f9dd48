"""Fixed-length training sequences cut from one token stream.

A batch is `batch_size` windows of context_length + 1 tokens at random offsets;
inputs are the first context_length tokens and targets the same window shifted
by one. The offsets of step s come from a generator seeded by (seed, s, micro-step),
so the data position of a run *is* its step number: resuming at step s
continues with exactly the batches an uninterrupted run would have seen. With
several processes, every rank draws the same global batch of
batch_size x world_size windows and takes its own slice, so ranks see different
windows and N processes of batch B train on exactly the batches one process of
batch N x B would. One gather builds the batch; inputs and targets are views of
it (no copies, no padding).

The tokens may be a narrow unsigned type mapped from the token cache (token_cache.py): the
gather reads only the windows drawn, and converts them to int64.
"""

from __future__ import annotations

import torch

from minigpt_tui.core.errors import BatchError


class TokenStream:
    def __init__(self, tokens: torch.Tensor, context_length: int, split: str = "train"):
        if tokens.numel() < context_length + 1:
            raise BatchError(
                f"The {split} text has {tokens.numel():,} tokens, fewer than one sequence of "
                f"model.context_length + 1 = {context_length + 1}; use more text or a shorter context_length."
            )
        self.tokens = tokens
        self.context_length = context_length
        self._window = torch.arange(context_length + 1)

    @property
    def n_windows(self) -> int:
        return self.tokens.numel() - self.context_length

    def windows(self, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        buf = self.tokens[offsets[:, None] + self._window].long()  # (B, T+1), one gather
        return buf[:, :-1], buf[:, 1:]

    def batch(self, step: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, micro: int = 0):
        """This rank's (inputs, targets) of one training micro-batch, a pure function of its arguments."""
        gen = torch.Generator().manual_seed(_mix(seed, step, micro))
        offsets = torch.randint(self.n_windows, (batch_size * world_size,), generator=gen)
        return self.windows(offsets[rank * batch_size : (rank + 1) * batch_size])

    def eval_batches(self, n_batches: int, batch_size: int, seed: int = 0):
        """A fixed set of validation batches (the same at every evaluation, so losses compare)."""
        gen = torch.Generator().manual_seed(_mix(seed, -1, 0))
        offsets = torch.randint(self.n_windows, (n_batches, batch_size), generator=gen)
        return [self.windows(o) for o in offsets]


def _mix(*parts: int) -> int:
    """Combine integers into one 63-bit seed (a simple, stable hash)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF
