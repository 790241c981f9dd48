"""A recurrent language model: GRU or LSTM layers stacked by hand.

Shape names: B batch, T time, C width (n_embd), V vocabulary.

Each layer is a single-layer nn.GRU / nn.LSTM (batch_first) wrapped as a
pre-norm residual block, h = h + dropout(rnn(LayerNorm(h))), which keeps deep
stacks trainable (torch's built-in multi-layer RNN has neither the norm nor the
residual). The state is a list with one entry per layer: the hidden state
(1, B, C) for a GRU, the pair (h, c) for an LSTM. Feeding a sequence in one call
or token by token with the returned state gives the same logits; `decode_step`
is that token-by-token path written for sampling speed (one torch call per
layer and operation, the cell functions instead of the sequence modules).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig


class RNNBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.n_embd)
        rnn_class = nn.GRU if cfg.family == "gru" else nn.LSTM
        self.rnn = rnn_class(cfg.n_embd, cfg.n_embd, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, state=None):
        y, state = self.rnn(self.norm(x), state)
        return x + self.drop(y), state


class RNNLanguageModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = cfg
        self.family = cfg.family
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(RNNBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        # Small embedding/head weights make the first logits nearly uniform (loss ~ ln V).
        nn.init.normal_(self.embed.weight, std=0.02)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)

    @property
    def receptive_field(self) -> None:
        """None: the state carries everything read so far, however far back (see LanguageModel)."""
        return None

    def new_state(self):
        return None  # zeros, created by torch on the first call

    def forward(self, idx: torch.Tensor, state=None, last: bool = False):
        """idx (B, T) -> logits (B, T, V), new state (one entry per layer); with `last`, the
        last position's logits only, (B, 1, V)."""
        x = self.drop(self.embed(idx))
        states = state if state is not None else [None] * len(self.blocks)
        new_states = []
        for block, s in zip(self.blocks, states):
            x, s = block(x, s)
            new_states.append(s)
        if last:
            x = x[:, -1:]
        return self.head(self.norm(x)), new_states

    def decode_step(self, token: int, state) -> tuple[torch.Tensor, list]:
        """Feed one token (an int) -> logits (1, V), new state; the sampler's hot path.

        The same arithmetic as forward on a (1, 1) input (dropout is off: this is
        for inference), with torch.gru_cell / torch.lstm_cell in place of the
        sequence modules, whose per-call set-up dominates at one token."""
        if state is None:
            logits, state = self(torch.tensor([[token]], device=self.embed.weight.device))
            return logits[:, -1], state
        x = self.embed.weight[token : token + 1]  # (1, C)
        C = x.size(1)
        lstm = self.family == "lstm"
        new_states = []
        for block, s in zip(self.blocks, state):
            norm, rnn = block.norm, block.rnn
            h = torch.layer_norm(x, (C,), norm.weight, norm.bias, norm.eps)
            weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
            if lstm:
                hx, cx = torch.lstm_cell(h, (s[0][0], s[1][0]), *weights)
                new_states.append((hx.unsqueeze(0), cx.unsqueeze(0)))
            else:
                hx = torch.gru_cell(h, s[0], *weights)
                new_states.append(hx.unsqueeze(0))
            x = x + hx
        x = torch.layer_norm(x, (C,), self.norm.weight, self.norm.bias, self.norm.eps)
        return F.linear(x, self.head.weight), new_states
