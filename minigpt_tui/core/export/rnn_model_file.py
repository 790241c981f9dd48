"""modeling_rnn.py, the file an RNN bundle carries: the GRU/LSTM language model in plain PyTorch.

A copy of core/models/rnn.py's arithmetic that depends on torch alone, so that anyone can load
the bundle's weights without minigpt-tui. The export's test checks that it gives our logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn


class RNNBlock(nn.Module):
    """h + rnn(LayerNorm(h)): a pre-norm residual block around a single-layer GRU or LSTM."""

    def __init__(self, family: str, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.rnn = (nn.GRU if family == "gru" else nn.LSTM)(width, width, num_layers=1, batch_first=True)

    def forward(self, x, state=None):
        y, state = self.rnn(self.norm(x), state)
        return x + y, state


class RNNLanguageModel(nn.Module):
    """tokens (B, T) -> logits (B, T, V) and the state to go on from (one entry per layer)."""

    def __init__(self, family: str, n_layer: int, n_embd: int, vocab_size: int, tie_weights: bool = True):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList(RNNBlock(family, n_embd) for _ in range(n_layer))
        self.norm = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.weight

    def forward(self, idx, state=None):
        x = self.embed(idx)
        states = state if state is not None else [None] * len(self.blocks)
        new_states = []
        for block, s in zip(self.blocks, states):
            x, s = block(x, s)
            new_states.append(s)
        return self.head(self.norm(x)), new_states


def load(folder: str | Path) -> RNNLanguageModel:
    """The bundle's model with its weights (config.json and model.safetensors beside this file)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model = RNNLanguageModel(config["family"], config["n_layer"], config["n_embd"], config["vocab_size"],
                             config["tie_weights"])
    weights = load_file(str(folder / "model.safetensors"))
    if config["tie_weights"]:
        weights["head.weight"] = weights["embed.weight"]
    model.load_state_dict(weights)
    return model.eval()
